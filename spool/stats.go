package spool

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// Stats counts the spool's jobs by directory.
type Stats struct {
	Queued, Running, Deferred, Held, Done, Failed int
	// Ignored counts what sits in new/ under a job's name but is not a
	// regular file (a symlink, FIFO or directory): hopper never runs it.
	Ignored int
	// OldestQueued is when the oldest job in new/ arrived; zero if none.
	OldestQueued time.Time
	Paused       bool
}

// Stats reads the spool's directories. It reads only directory entries and
// their metadata, never job contents.
func (s *Spool) Stats() (Stats, error) {
	st := Stats{Paused: s.Paused()}
	counts := map[string]*int{DirNew: &st.Queued, DirCur: &st.Running, DirDeferred: &st.Deferred,
		DirHold: &st.Held, DirDone: &st.Done, DirFailed: &st.Failed}
	for dir, n := range counts {
		entries, err := fs.ReadDir(s.root.FS(), dir)
		if err != nil {
			return st, fmt.Errorf("stats %s/: %w", dir, err)
		}
		for _, e := range entries {
			if !Candidate(e.Name()) {
				continue
			}
			if !e.Type().IsRegular() {
				if dir == DirNew {
					st.Ignored++
				}
				continue
			}
			*n++
			if dir != DirNew {
				continue
			}
			if fi, err := e.Info(); err == nil {
				if t := ctime(fi); st.OldestQueued.IsZero() || t.Before(st.OldestQueued) {
					st.OldestQueued = t
				}
			}
		}
	}
	return st, nil
}

// OutputLines counts the lines of a running job's cur/ID.out: the stream
// chunks received so far (about one token each).
func (s *Spool) OutputLines(id string) int {
	f, err := s.root.Open(DirCur + "/" + id + ".out")
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	buf := make([]byte, 32<<10)
	for {
		m, err := f.Read(buf)
		n += bytes.Count(buf[:m], []byte{'\n'})
		if err == io.EOF || err != nil {
			return n
		}
	}
}
