package spool

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"
)

// pollMin and pollMax bound how often Wait and Follow look at the spool.
const (
	pollMin = 5 * time.Millisecond
	pollMax = 200 * time.Millisecond
)

// Wait returns job id's record once it is done or failed, or ctx's error.
// It reads files only, so it works from any process.
func (s *Spool) Wait(ctx context.Context, id string) (*Record, error) {
	delay := pollMin
	for {
		if r, err := s.finished(id); r != nil || err != nil {
			return r, err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, pollMax)
	}
}

// finished returns the record if the job is done or failed, nil if it is
// not yet, and ErrNotFound if it is nowhere.
func (s *Spool) finished(id string) (*Record, error) {
	for _, d := range []string{DirDone, DirFailed} {
		r, err := s.readRecord(d, id+".json")
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if _, err := s.Find(id); err != nil {
		// It may have moved between the two looks.
		for _, d := range []string{DirDone, DirFailed} {
			if r, err := s.readRecord(d, id+".json"); err == nil {
				return r, nil
			}
		}
		return nil, err
	}
	return nil, nil
}

// Follow calls fn with each line of job id's live output (cur/ID.out) as
// it is written, from the first, until the job finishes; then it returns
// the final record. A job that finishes before Follow sees any output
// returns its record without calling fn.
func (s *Spool) Follow(ctx context.Context, id string, fn func(line []byte) error) (*Record, error) {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var rd *bufio.Reader
	var partial []byte
	delay := pollMin
	drain := func() error {
		for {
			line, err := rd.ReadBytes('\n')
			if len(line) > 0 {
				if line[len(line)-1] != '\n' {
					partial = append(partial, line...)
					return nil
				}
				if len(partial) > 0 {
					line = append(partial, line...)
					partial = nil
				}
				if err := fn(bytes.TrimRight(line, "\r\n")); err != nil {
					return err
				}
				delay = pollMin
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	for {
		if f == nil {
			of, err := s.root.Open(DirCur + "/" + id + ".out")
			if err == nil {
				f, rd = of, bufio.NewReaderSize(of, 64<<10)
			}
		}
		// Look for the end before reading, so the last lines written before
		// it are still read below.
		r, err := s.finished(id)
		if err != nil {
			return nil, err
		}
		if f != nil {
			if err := drain(); err != nil {
				return nil, err
			}
		}
		if r != nil {
			return r, nil
		}
		if f != nil && !s.exists(DirCur, id+".out") {
			// The attempt ended (deferred, or about to finish): read what
			// is left, then look for the next attempt's output.
			if err := drain(); err != nil {
				return nil, err
			}
			f.Close()
			f, partial = nil, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		delay = min(delay*2, pollMax)
	}
}
