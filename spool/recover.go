package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
)

// TmpMaxAge is how old a file in tmp/ must be before Recover removes it, as
// maildir's 36 hours.
const TmpMaxAge = 36 * time.Hour

// Recovery is what Recover found and did.
type Recovery struct {
	Finished   []*Record  // final (or deferred) records moved on from cur/, without running again
	Rerun      []*Claimed // jobs that were running, to run again first
	TmpRemoved int
}

// Recover completes what a crash interrupted. Call it holding the runner
// lock, before claiming anything: records in cur/ whose state is final are
// moved on without running again; other jobs in cur/ are returned to run
// again first; stray output files and tmp/ files older than TmpMaxAge are
// removed.
func (s *Spool) Recover() (*Recovery, error) { return s.RecoverAnd(nil) }

// RecoverAnd is Recover, calling recorded (if not nil) for each final
// record left in cur/ before it moves on, as FinishAnd does: a crash before
// the move leaves the record in cur/ for the next start, so whatever
// recorded does (emit the job's final event) is done at least once.
func (s *Spool) RecoverAnd(recorded func(*Record)) (*Recovery, error) {
	rec := &Recovery{}
	entries, err := fs.ReadDir(s.root.FS(), DirCur)
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	ids := map[string]bool{}
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(id, ".") {
			ids[id] = true
		}
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, ".json")
		if !ok {
			stem := name[:len(name)-len(extOf(name))]
			if ids[stem] {
				continue
			}
			if extOf(name) == ".cancel" && s.exists(DirDeferred, stem+".json") {
				continue // a cancel request for a job back in line: its next claim carries it out
			}
			_ = s.removeAt(DirCur, name) // output of a finished job
			continue
		}
		if r, err := s.readRecord(DirCur, name); err == nil && (r.State.Terminal() || r.State == StateDeferred) {
			if recorded != nil {
				recorded(r)
			}
			if err := s.moveSync(DirCur, name, dirOf(r.State), name); err != nil {
				errs = append(errs, err)
				continue
			}
			s.removeRunFiles(id)
			rec.Finished = append(rec.Finished, r)
			continue
		}
		c, err := s.load(id, "", s.changeTime(DirCur, name), false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.Recovered = true
		s.AttemptMarked(c.Record) // an attempt that began without a rewrite
		c.Canceled = s.CancelRequested(id)
		rec.Rerun = append(rec.Rerun, c)
	}
	n, err := s.cleanTmp(s.now().Add(-TmpMaxAge))
	rec.TmpRemoved = n
	errs = append(errs, err)
	return rec, errors.Join(errs...)
}

func extOf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

// cleanTmp removes tmp/ files last modified before cutoff.
func (s *Spool) cleanTmp(cutoff time.Time) (int, error) {
	return s.removeOlder(DirTmp, cutoff, func(string) bool { return true })
}

// changeTime is a file's ctime: for a file in new/ the moment it arrived,
// since rename(2) sets it. Zero if it cannot be read.
func (s *Spool) changeTime(dir, name string) time.Time {
	fi, err := s.root.Lstat(dir + "/" + name)
	if err != nil {
		return time.Time{}
	}
	return ctime(fi)
}

func ctime(fi fs.FileInfo) time.Time {
	if t, ok := statCtime(fi.Sys()); ok {
		return t
	}
	return fi.ModTime()
}
