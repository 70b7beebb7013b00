package spool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// pollMin and pollMax bound how often Wait and Follow look at the spool
// when nothing wakes them.
const (
	pollMin = 5 * time.Millisecond
	pollMax = 200 * time.Millisecond
)

// FollowOptions say what FollowWith relays and how it waits.
type FollowOptions struct {
	// Lines receives each line of the job's live output (cur/ID.out) as
	// it is written, from the first; blank lines are skipped. An error
	// from it ends FollowWith. Nil: only wait for the end.
	Lines func(line []byte) error
	// NewAttempt, if set, is called when an attempt's output ends without
	// the job finishing (the runner deferred it to run again, or
	// restarted it); an error from it ends FollowWith. The next attempt's
	// output is relayed in turn.
	NewAttempt func() error
	// Wake, if set, is a wake-up: a value on it means the job's files may
	// have changed (a watcher on the spool sends it). FollowWith then
	// looks each time it receives and every Poll. Without it FollowWith
	// polls, every 5 ms at first, backing off to every Poll.
	Wake <-chan struct{}
	// Poll is the longest time between two looks; default 200 ms.
	Poll time.Duration
}

// Wait returns job id's record once it is done or failed, or ctx's error.
// It reads files only, so it works from any process.
func (s *Spool) Wait(ctx context.Context, id string) (*Record, error) {
	return s.FollowWith(ctx, id, FollowOptions{})
}

// Follow calls fn with each line of job id's live output (cur/ID.out) as
// it is written, from the first, until the job finishes; then it returns
// the final record. A job that finishes before Follow sees any output
// returns its record without calling fn.
func (s *Spool) Follow(ctx context.Context, id string, fn func(line []byte) error) (*Record, error) {
	return s.FollowWith(ctx, id, FollowOptions{Lines: fn})
}

// FollowWith waits for job id to finish and returns its record, relaying
// its live output as o says. It returns an error wrapping ErrNotFound if
// the job disappears, and ctx's error when ctx ends. It reads files only,
// so it works from any process.
func (s *Spool) FollowWith(ctx context.Context, id string, o FollowOptions) (*Record, error) {
	poll := o.Poll
	if poll <= 0 {
		poll = pollMax
	}
	first := poll
	if o.Wake == nil {
		first = min(pollMin, poll)
	}
	delay := first
	t := &tail{s: s, name: DirCur + "/" + id + ".out", fn: o.Lines}
	defer t.close()
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		if o.Lines != nil && t.f == nil {
			t.open()
		}
		// Look for the end before reading, so the last lines written
		// before it are still read below.
		rec, err := s.Finished(id)
		if err != nil {
			return nil, err
		}
		if t.f != nil {
			n, err := t.drain()
			if err != nil {
				return nil, err
			}
			if n > 0 {
				delay = first
			}
		}
		if rec != nil {
			return rec, nil
		}
		if t.f != nil && t.ended() {
			if _, err := t.drain(); err != nil {
				return nil, err
			}
			t.close()
			// The job may have finished since the look above: its output
			// goes only after its record has landed.
			if rec, err := s.Finished(id); rec != nil || err != nil {
				return rec, err
			}
			if o.NewAttempt != nil {
				if err := o.NewAttempt(); err != nil {
					return nil, err
				}
			}
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-o.Wake:
		case <-timer.C:
		}
		if o.Wake == nil {
			delay = min(delay*2, poll)
		}
	}
}

// Finished returns job id's record if it is done or failed, nil if it is
// not yet, and an error wrapping ErrNotFound if it is nowhere.
func (s *Spool) Finished(id string) (*Record, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%q is not a job ID: %w", id, ErrNotFound)
	}
	look := func() (*Record, error) {
		for _, d := range []string{DirDone, DirFailed} {
			r, err := s.readRecord(d, id+".json")
			if err == nil || !errors.Is(err, fs.ErrNotExist) {
				return r, err
			}
		}
		return nil, nil
	}
	if r, err := look(); r != nil || err != nil {
		return r, err
	}
	if _, err := s.Find(id); err != nil {
		// It may have moved between the two looks.
		if r, lerr := look(); r != nil || lerr != nil {
			return r, lerr
		}
		return nil, err
	}
	return nil, nil
}

// tail reads a job's output file line by line as it grows.
type tail struct {
	s       *Spool
	name    string // relative to the spool
	fn      func([]byte) error
	f       *os.File
	rd      *bufio.Reader
	partial []byte
	read    int64 // bytes of f consumed
}

func (t *tail) open() {
	f, err := t.s.root.Open(t.name)
	if err != nil {
		return
	}
	t.f, t.rd, t.partial, t.read = f, bufio.NewReaderSize(f, 64<<10), nil, 0
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// drain delivers every complete line written so far, and returns how many
// bytes it read.
func (t *tail) drain() (n int64, err error) {
	defer func() { t.read += n }()
	for {
		line, err := t.rd.ReadBytes('\n')
		n += int64(len(line))
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				t.partial = append(t.partial, line...)
				return n, nil
			}
			if len(t.partial) > 0 {
				line = append(t.partial, line...)
				t.partial = nil
			}
			if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
				if err := t.fn(line); err != nil {
					return n, err
				}
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// ended reports whether the open file is no longer the job's output: it
// was removed, replaced by the next attempt's, or truncated for it.
func (t *tail) ended() bool {
	cur, err := t.s.root.Lstat(t.name)
	if err != nil {
		return true
	}
	open, err := t.f.Stat()
	if err != nil {
		return true
	}
	return !os.SameFile(cur, open) || open.Size() < t.read
}
