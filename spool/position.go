package spool

import (
	"io/fs"
	"time"
)

// Place sets a queued record's Position and EstimatedStart by reading the
// spool: every queued job, and the times of the records that finished
// lately. It is what `hopper show` prints; a front answers the same from
// its Catalog without the reading.
func (s *Spool) Place(r *Record, now time.Time) error {
	if r.State != StateQueued {
		return nil
	}
	queued, err := s.List(StateQueued)
	if err != nil {
		return err
	}
	pos := 0
	for _, q := range queued {
		if q.ID != r.ID && RunsBefore(q.Priority, q.SubmittedAt, q.ID, r.Priority, r.SubmittedAt, r.ID) {
			pos++
		}
	}
	r.Position = &pos
	if t, ok := estimateStart(pos, s.finishRate(now), now); ok {
		r.EstimatedStart = &t
	}
	return nil
}

// finishRate is how many jobs a second finished over the last rateWindow,
// judged by the times their records were last written.
func (s *Spool) finishRate(now time.Time) float64 {
	since := now.Add(-rateWindow)
	n := 0
	for _, d := range []string{DirDone, DirFailed} {
		entries, err := fs.ReadDir(s.root.FS(), d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !Candidate(e.Name()) {
				continue
			}
			if fi, err := e.Info(); err == nil && fi.ModTime().After(since) {
				n++
			}
		}
	}
	return float64(n) / rateWindow.Seconds()
}
