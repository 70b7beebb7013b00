package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// maxRawInRecord is the largest bad input kept inline as job_raw; larger or
// non-text input is kept beside the record as failed/ID.raw.
const maxRawInRecord = 1 << 20

// Claimed is a job the runner has taken into cur/. Its Record is the
// runner's to update; nothing else writes cur/ID.json while it runs.
type Claimed struct {
	Record *Record
	// Job is the parsed job; nil when BadInput says why it cannot run.
	Job      *Job
	BadInput error
	// Canceled is set when a cancel request was waiting for the job.
	Canceled bool
	// Recovered is set when the job was running when hopper stopped.
	Recovered bool
	// Resumed is set when the job came from deferred/: the runner took it
	// up before (it was deferred, or sent back in line), and said so.
	Resumed bool
}

// Claim takes a queued entry into cur/ by renaming it. It returns an error
// wrapping ErrGone if someone else took the file first. A name already used
// by any job in the spool gets a unique suffix, so no record is overwritten.
// A name that is not a valid ID is given a generated one and quarantined:
// BadInput says why, and the runner fails it without running it.
func (s *Spool) Claim(e Entry) (*Claimed, error) {
	if e.Dir == DirDeferred {
		return s.claimDeferred(e.Name)
	}
	if e.Dir != DirNew {
		return nil, fmt.Errorf("claim %s/%s: only new/ and deferred/ are claimed", e.Dir, e.Name)
	}
	stem := strings.TrimSuffix(e.Name, ".json")
	valid := PlainID(stem) || ValidID(stem) && s.ownLine(stem)
	id, source := stem, ""
	switch {
	case !valid:
		id, source = s.NewID(), e.Name
	case s.taken(stem), s.legacyLineNamed(stem) && !s.ownLine(stem):
		// A name in use, or the name of a line of a batch from before
		// LineSep on a file hopper did not write as that line: the job
		// runs under a name of its own.
		id, source = s.uniqueName(stem), e.Name
	}
	for try := 0; ; try++ {
		err := s.move(DirNew, e.Name, DirCur, id+".json")
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try == 3 {
			return nil, fmt.Errorf("claim %s: %w", e.Name, err)
		}
		if !valid {
			stem = "job"
		}
		id, source = s.uniqueName(stem), e.Name
	}
	arrived := e.Arrived
	if arrived.IsZero() {
		arrived = s.now()
	}
	c, err := s.load(id, source, arrived, true)
	if err != nil || valid {
		return c, err
	}
	if ValidID(stem) {
		return c, s.quarantine(c, badInput("the file name %q is that of a batch line, which only hopper writes ('%c' is reserved for them); it was set aside as %s", e.Name, LineSep, id))
	}
	return c, s.quarantine(c, badInput("the file name %q is not a valid job ID (a letter or digit, then up to 127 letters, digits, '.', '_' or '-'); it was set aside as %s", e.Name, id))
}

// taken reports whether a job with this ID exists in any state but new/.
func (s *Spool) taken(id string) bool {
	for _, d := range []string{DirCur, DirDeferred, DirHold, DirDone, DirFailed} {
		if s.exists(d, id+".json") {
			return true
		}
	}
	return false
}

func (s *Spool) claimDeferred(name string) (*Claimed, error) {
	if err := s.move(DirDeferred, name, DirCur, name); err != nil {
		return nil, fmt.Errorf("claim %s: %w", name, err)
	}
	id := strings.TrimSuffix(name, ".json")
	c, err := s.load(id, "", time.Time{}, false)
	if c != nil {
		c.Resumed = true
	}
	return c, err
}

// load reads cur/ID.json, a job file or a record, into a Claimed. A record
// that came from new/ (fresh) starts a new round; one the runner left
// (deferred, or running at a crash) carries on.
func (s *Spool) load(id, source string, arrived time.Time, fresh bool) (*Claimed, error) {
	data, tooBig, regular, err := s.readJobFile(DirCur, id+".json")
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", id, err)
	}
	rec := &Record{ID: id, State: StateQueued, Source: source, SubmittedAt: arrived}
	c := &Claimed{Record: rec}
	name := source
	if name == "" {
		name = id + ".json"
	}
	switch {
	case !regular:
		return c, s.setAside(c, badInput("%s is not a regular file", name))
	case tooBig:
		return c, s.setAside(c, badInput("the job is over the limit of %d bytes (max_job_size)", s.opts.MaxJobSize))
	}
	body := trimBOM(data)
	if isRecord(body) {
		if old, err := ParseRecord(body); err == nil {
			s.resume(c, old, fresh)
			return c, nil
		}
	}
	c.Job, c.BadInput = ParseJob(data, s.opts.MaxJobSize)
	switch {
	case json.Valid(body):
		rec.Job = json.RawMessage(body)
	case !utf8.Valid(data):
		return c, s.setAside(c, badInput("the job is not valid JSON: it is not UTF-8 text"))
	case len(data) > maxRawInRecord:
		return c, s.setAside(c, c.BadInput)
	default:
		raw := string(data)
		rec.JobRaw = &raw
	}
	if !fresh && rec.Source == "" {
		rec.Source = sourceOf(id) // claimed under a new name, then a crash
	}
	fillFromJob(rec, c.Job)
	return c, nil
}

// resume continues a record: one moved back into new/ (fresh) starts a new
// round, keeping its history; one the runner left keeps its counts.
func (s *Spool) resume(c *Claimed, old *Record, fresh bool) {
	rec := c.Record
	if !fresh {
		id, arrived := rec.ID, rec.SubmittedAt
		*rec = *old
		rec.ID = id
		if rec.SubmittedAt.IsZero() {
			rec.SubmittedAt = arrived
		}
	} else {
		rec.Job, rec.JobRaw, rec.JobFile = old.Job, old.JobRaw, old.JobFile
		if rec.Source == "" {
			rec.Source = old.Source
		}
		rec.History = old.History
		if old.Attempts > 0 || old.Error != nil {
			rec.History = append(rec.History, Round{Attempts: old.Attempts, Error: old.Error, StartedAt: old.StartedAt, FinishedAt: old.FinishedAt})
		}
		if !old.SubmittedAt.IsZero() && rec.SubmittedAt.IsZero() {
			rec.SubmittedAt = old.SubmittedAt
		}
	}
	if rec.SubmittedAt.IsZero() {
		rec.SubmittedAt = s.now()
	}
	if !fresh && rec.Error != nil && rec.Error.Kind == KindBadInput {
		c.BadInput = badInput("%s", rec.Error.Message) // quarantined at claim
		return
	}
	if len(rec.Job) == 0 {
		c.BadInput = badInput("the record has no JSON job to run")
		return
	}
	c.Job, c.BadInput = ParseJob(rec.Job, s.opts.MaxJobSize)
	fillFromJob(rec, c.Job)
}

func fillFromJob(rec *Record, j *Job) {
	if j == nil {
		return
	}
	rec.Endpoint, rec.Model, rec.Priority, rec.Function = j.Endpoint, j.Model, j.Priority, j.Function
}

// setAside moves cur/ID.json, bad input that cannot go inline, to
// failed/ID.raw so its bytes survive as they were, and quarantines the job.
func (s *Spool) setAside(c *Claimed, why error) error {
	rec := c.Record
	rec.JobFile = rec.ID + ".raw"
	// Link, then replace cur/ID.json with the record: the bytes have a name
	// at every moment, and a crash between the two steps leaves cur/ID.json
	// as it was, to be set aside again (the link then exists already).
	err := s.link(DirCur, rec.ID+".json", DirFailed, rec.JobFile)
	switch {
	case err == nil || errors.Is(err, fs.ErrExist):
		if s.opts.Fsync {
			if err := s.syncDir(DirFailed); err != nil {
				return fmt.Errorf("set aside %s: %w", rec.ID, err)
			}
		}
	default: // cannot be linked (a directory): move it
		if err := s.moveSync(DirCur, rec.ID+".json", DirFailed, rec.JobFile); err != nil {
			return fmt.Errorf("set aside %s: %w", rec.ID, err)
		}
	}
	return s.quarantine(c, why)
}

// quarantine marks a claimed job as bad input that must not run, and writes
// that into cur/ID.json at once: a crash before the runner fails it must
// neither run it (an invalid name) nor lose it (bytes set aside in failed/).
func (s *Spool) quarantine(c *Claimed, why error) error {
	if c.BadInput != nil && c.BadInput.Error() != why.Error() {
		why = badInput("%s; %s", why, c.BadInput)
	}
	c.BadInput, c.Job = why, nil
	c.Record.Error = &JobError{Kind: KindBadInput, Message: why.Error()}
	data, err := c.Record.Marshal()
	if err != nil {
		return err
	}
	if err := s.writeFile(DirCur, c.Record.ID+".json", data, s.opts.Fsync, true); err != nil {
		return fmt.Errorf("quarantine %s: %w", c.Record.ID, err)
	}
	return nil
}

// readJobFile reads dir/name if it is a regular file, without reading more
// than the size limit. It works on the directory's descriptor because
// os.Root follows a symlink that stays inside the spool even with
// O_NOFOLLOW: a symlink, FIFO, device or directory is never opened, and
// regular is false.
func (s *Spool) readJobFile(dir, name string) (data []byte, tooBig, regular bool, err error) {
	d, ok := s.dirs[dir]
	if !ok || !plainName(name) {
		return nil, false, false, fmt.Errorf("read %s/%s: not a file in a spool directory", dir, name)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, false, false, &fs.PathError{Op: "stat", Path: dir + "/" + name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, false, false, nil
	}
	fd, err := unix.Openat(int(d.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, false, false, nil // replaced by a symlink since
	}
	if err != nil {
		return nil, false, false, &fs.PathError{Op: "open", Path: dir + "/" + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), s.path+"/"+dir+"/"+name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, false, err
	}
	if !fi.Mode().IsRegular() {
		return nil, false, false, nil // replaced since
	}
	if fi.Size() > s.opts.MaxJobSize {
		return nil, true, true, nil
	}
	data, err = io.ReadAll(io.LimitReader(f, s.opts.MaxJobSize+1))
	if err != nil {
		return nil, false, true, err
	}
	if int64(len(data)) > s.opts.MaxJobSize {
		return nil, true, true, nil
	}
	return data, false, true, nil
}

// Update rewrites cur/ID.json atomically, without fsync: an intermediate
// state a crash may lose.
func (s *Spool) Update(r *Record) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := s.writeFile(DirCur, r.ID+".json", data, false, true); err != nil {
		return fmt.Errorf("update %s: %w", r.ID, err)
	}
	return nil
}

// Finish ends a claimed job: cur/ID.json is rewritten with the record's
// state (done, failed or deferred) and fsynced, then renamed into that
// state's directory, and the job's ID.out and ID.cancel are removed.
func (s *Spool) Finish(r *Record) error { return s.FinishAnd(r, nil) }

// FinishAnd is Finish, calling recorded (if not nil) between the two steps:
// once the final record is durable in cur/, before it moves. A crash before
// recorded ran leaves the record in cur/, where Recover finds it (and
// reports it in Recovery.Finished) — so whatever recorded does, such as
// emitting the job's final event, is done at least once.
func (s *Spool) FinishAnd(r *Record, recorded func()) error {
	dir := dirOf(r.State)
	if dir != DirDone && dir != DirFailed && dir != DirDeferred {
		return fmt.Errorf("finish %s: state %q is not final", r.ID, r.State)
	}
	if err := s.recordAndMove(r, "finish", dir, recorded); err != nil {
		return err
	}
	s.removeRunFiles(r.ID)
	return nil
}

// recordAndMove writes r over cur/ID.json, calls recorded if it is not nil,
// and moves the record to dir; verb names the operation in errors.
func (s *Spool) recordAndMove(r *Record, verb, dir string, recorded func()) error {
	data, err := r.Marshal()
	if err != nil {
		return err
	}
	name := r.ID + ".json"
	if err := s.writeFile(DirCur, name, data, s.opts.Fsync, true); err != nil {
		return fmt.Errorf("%s %s: %w", verb, r.ID, err)
	}
	if recorded != nil {
		recorded()
	}
	if err := s.moveSync(DirCur, name, dir, name); err != nil {
		return fmt.Errorf("%s %s: %w", verb, r.ID, err)
	}
	return nil
}

// AttemptMarked applies to a record read from cur/ what cur/ID.out says: the
// runner creates ID.out when it starts an attempt, and rewrites the record
// before that only when the attempt must load its model. A record in cur/
// still saying queued or deferred (or a bare job file) beside an ID.out
// stands for a job whose attempt has begun: working, one attempt more,
// started when ID.out was made. It reports whether it changed rec.
func (s *Spool) AttemptMarked(rec *Record) bool {
	if rec.State != StateQueued && rec.State != StateDeferred {
		return false
	}
	st, err := s.statAt(DirCur, rec.ID+".out")
	if err != nil {
		return false
	}
	started := time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec))
	rec.State, rec.StartedAt, rec.NotBefore = StateWorking, &started, nil
	rec.Attempts++
	return true
}

// Requeue returns a claimed job to the queue without ending it, for when
// the target went away under it: the record, with the state queued and no
// not_before, moves from cur/ to deferred/, where the watcher indexes it as
// claimable at once in its old place in line (its submitted_at). Claiming
// it again carries its record on: attempts, history and all.
func (s *Spool) Requeue(r *Record) error {
	r.State, r.NotBefore = StateQueued, nil
	if err := s.recordAndMove(r, "requeue", DirDeferred, nil); err != nil {
		return err
	}
	// A cancel request (cur/ID.cancel) stays: whoever claims the job next
	// finds it and fails the job as canceled.
	_ = s.removeAt(DirCur, r.ID+".out")
	return nil
}

func (s *Spool) removeRunFiles(id string) {
	_ = s.removeAt(DirCur, id+".out")
	_ = s.removeAt(DirCur, id+".cancel")
	_ = s.removeAt(DirCur, id+".hold")
}

// HoldRequested reports whether cur/ID.hold exists (see Hold).
func (s *Spool) HoldRequested(id string) bool { return s.exists(DirCur, id+".hold") }

// HoldClaimed parks a claimed job that has not started in hold/, as Hold
// does a queued one: the runner's answer to a hold request.
func (s *Spool) HoldClaimed(r *Record) error {
	r.State, r.NotBefore = StateHeld, nil
	if err := s.recordAndMove(r, "hold", DirHold, nil); err != nil {
		return err
	}
	s.removeRunFiles(r.ID)
	return nil
}

// DropOutput removes cur/ID.out: the attempt it marks is over without a
// final record (aborted at shutdown, the job left queued in cur/).
func (s *Spool) DropOutput(id string) { _ = s.removeAt(DirCur, id+".out") }

// CreateOutput creates (or truncates) cur/ID.out for the job's live output.
// Its existence marks an attempt as begun (AttemptMarked).
func (s *Spool) CreateOutput(id string) (*os.File, error) {
	return s.openAt(DirCur, id+".out", os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND)
}

// CancelRequested reports whether cur/ID.cancel exists.
func (s *Spool) CancelRequested(id string) bool { return s.exists(DirCur, id+".cancel") }
