package spool

import (
	"context"
	"testing"
	"time"
)

// recv waits for a value on c; nothing in these tests sleeps.
func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func TestFollowRelaysEachAttemptsOutputThenReturnsTheRecord(t *testing.T) {
	s := newSpool(t)
	id := submit(t, s, job)
	c := claim(t, s, DirNew, id+".json")
	out, err := s.CreateOutput(id)
	if err != nil {
		t.Fatal(err)
	}
	write := func(data string) {
		t.Helper()
		if _, err := out.WriteString(data); err != nil {
			t.Fatal(err)
		}
	}
	lines, attempts := make(chan string, 8), make(chan struct{}, 8)
	type result struct {
		r   *Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.FollowWith(context.Background(), id, FollowOptions{
			Lines:      func(l []byte) error { lines <- string(l); return nil },
			NewAttempt: func() error { attempts <- struct{}{}; return nil },
		})
		done <- result{r, err}
	}()

	write("one\n\npar")
	if got := recv(t, lines, "first line"); got != "one" {
		t.Errorf("first line: got %q, want one", got)
	}
	write("tial\n")
	if got := recv(t, lines, "second line"); got != "partial" {
		t.Errorf("second line: got %q, want the blank line skipped and the partial line whole", got)
	}
	// The next attempt truncates the output and starts again.
	out.Close()
	if out, err = s.CreateOutput(id); err != nil {
		t.Fatal(err)
	}
	write("two\n")
	recv(t, attempts, "new attempt")
	if got := recv(t, lines, "the next attempt's line"); got != "two" {
		t.Errorf("next attempt: got %q, want two", got)
	}
	out.Close()
	finish(t, s, c.Record, StateDone, nil)
	res := recv(t, done, "end of Follow")
	if res.err != nil || res.r == nil || res.r.State != StateDone {
		t.Fatalf("FollowWith: got %+v, %v; want the done record", res.r, res.err)
	}
	select {
	case l := <-lines:
		t.Errorf("line after the end: %q", l)
	default:
	}
}

func TestWaitReturnsTheRecordOfAFinishedJob(t *testing.T) {
	s := newSpool(t)
	id := submit(t, s, job)
	c := claim(t, s, DirNew, id+".json")
	finish(t, s, c.Record, StateFailed, &JobError{Kind: KindTarget, Message: "boom"})
	r, err := s.Wait(context.Background(), id)
	if err != nil || r.State != StateFailed {
		t.Errorf("Wait: got %+v, %v; want the failed record", r, err)
	}
	if _, err := s.Wait(context.Background(), "nosuchjob"); err == nil {
		t.Error("Wait of a job that is nowhere: no error")
	}
}
