package spool

import (
	"crypto/hmac"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// A batch (package batch, DESIGN §10) becomes one job per line, named
// NAME~000001, NAME~000002, …: LineSep is reserved for those names, so the
// spool tells a line from a person's job by its name alone, and Claim
// runs a file dropped under such a name only if hopper wrote it as that
// line (LineKey). The spool knows no more of batches than that, and which
// files in new/ are batches (BatchCandidate).

// legacySep separated a line's number in batches counted before LineSep
// was reserved.
const legacySep = "."

// LineOf splits a batch line's job ID into its batch and its line number:
// "tickets~000042" → "tickets", 42. ok is false when the ID does not end
// in LineSep and six or more digits.
func LineOf(id string) (batch string, line int, ok bool) { return lineOf(id, LineSep) }

// lineOf is LineOf with the separator sep; LegacyLineOf reads the IDs of
// lines of batches counted before LineSep was reserved (tickets.000042),
// which only the batch's record, or the line's key, tells from a person's
// job of that name.
func lineOf(id string, sep byte) (batch string, line int, ok bool) {
	i := strings.LastIndexByte(id, sep)
	if i <= 0 || len(id)-i-1 < 6 {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n <= 0 || id[i+1] == '+' {
		return "", 0, false
	}
	return id[:i], n, true
}

// LegacyLineOf is LineOf for the lines of a batch counted before LineSep
// was reserved (tickets.000042): only the batch's record, or the line's
// key, tells such an ID from a person's job of that name.
func LegacyLineOf(id string) (string, int, bool) { return lineOf(id, legacySep[0]) }

// isLine reports whether a job is the batch line its ID names, as hopper
// wrote it: a job named like a line but not carrying its key is a user's job.
func (s *Spool) isLine(id string, j *Job) bool {
	_, _, ok := LineOf(id)
	if _, _, legacy := LegacyLineOf(id); !(ok || legacy) || j == nil || j.BatchKey == "" {
		return false
	}
	return hmac.Equal([]byte(j.BatchKey), []byte(s.LineKey(id)))
}

// ownLine reports whether new/ID.json is the batch line hopper wrote.
func (s *Spool) ownLine(id string) bool {
	data, _, regular, err := s.readJobFile(DirNew, id+".json")
	if err != nil || !regular {
		return false
	}
	j, err := ParseJob(data, s.opts.MaxJobSize)
	return err == nil && s.isLine(id, j)
}

// legacyLineNamed reports whether a name in new/ is that of a line of a
// batch counted before LineSep was reserved that has not ended: such a
// file is claimed under its own name only when it is that line (isLine).
// A name like a line of any other batch is a job's like any other.
func (s *Spool) legacyLineNamed(stem string) bool {
	name, _, ok := LegacyLineOf(stem)
	if !ok || !s.exists(DirBatches, name+".json") {
		return false
	}
	data, err := s.root.ReadFile(DirBatches + "/" + name + ".json")
	var probe struct {
		State   string `json:"state"`
		LineSep string `json:"line_sep"`
	}
	if err != nil || json.Unmarshal(data, &probe) != nil {
		return false
	}
	switch probe.State {
	case "validating", "completed", "failed", "cancelled":
		return false // not counted yet (its lines will take LineSep), or ended
	}
	return probe.LineSep == "" || probe.LineSep == legacySep
}

// BatchCandidate reports whether a name in new/ is a batch file: not
// dot-named, ending in .jsonl.
func BatchCandidate(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".jsonl") && len(name) > len(".jsonl")
}

// CancelQueued fails the jobs of ids that are still in new/ as
// canceled, with reason: each is claimed by rename as a runner claims, its
// record written in cur/ and moved to failed/, without an fsync each; one
// sync of the filesystem ends the lot. It returns the IDs it canceled; the
// others were claimed first or were never queued.
func (s *Spool) CancelQueued(ids []string, reason string) ([]string, error) {
	var done []string
	var errs []error
	for _, id := range ids {
		if err := s.move(DirNew, id+".json", DirCur, id+".json"); err != nil {
			if !errors.Is(err, ErrGone) {
				errs = append(errs, err)
			}
			continue
		}
		c, err := s.load(id, "", s.changeTime(DirCur, id+".json"), true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		now := s.now()
		c.Record.State, c.Record.FinishedAt = StateFailed, &now
		c.Record.Error = &JobError{Kind: KindCanceled, Message: reason}
		data, err := c.Record.Marshal()
		if err == nil {
			err = s.writeFile(DirCur, id+".json", data, false, true)
		}
		if err == nil && s.ended != nil {
			s.ended(c.Record, StateQueued)
		}
		if err == nil {
			err = s.move(DirCur, id+".json", DirFailed, id+".json")
		}
		if err != nil {
			errs = append(errs, err) // left in cur/: recovery moves it on
			continue
		}
		done = append(done, id)
	}
	if s.opts.Fsync && len(done) > 0 {
		errs = append(errs, s.syncAll())
	}
	return done, errors.Join(errs...)
}
