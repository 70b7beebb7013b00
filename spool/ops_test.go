package spool

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/spooltest"
)

func TestCancel(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Spool) string // returns the ID
	}{
		{"a queued job", func(t *testing.T, s *Spool) string { return submit(t, s, job) }},
		{"a held job", func(t *testing.T, s *Spool) string {
			id := submit(t, s, job)
			if err := s.Hold(id); err != nil {
				t.Fatal(err)
			}
			return id
		}},
		{"a deferred job", func(t *testing.T, s *Spool) string {
			id := submit(t, s, job)
			c := claim(t, s, DirNew, id+".json")
			c.Record.Attempts = 1
			nb := time.Now().Add(time.Hour)
			c.Record.NotBefore = &nb
			finish(t, s, c.Record, StateDeferred, &JobError{Kind: KindTarget, Message: "HTTP 500"})
			return id
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" fails as canceled at once", func(t *testing.T) {
			s := newSpool(t)
			id := tt.setup(t, s)
			running, err := s.Cancel(id, "no longer needed")
			if err != nil || running {
				t.Fatalf("got running %v, %v, want false, nil", running, err)
			}
			r := readRec(t, s, DirFailed, id+".json")
			if r.ID != id || r.State != StateFailed || r.Error == nil || r.Error.Kind != KindCanceled || r.Error.Message != "no longer needed" || r.FinishedAt == nil {
				t.Errorf("got %+v, error %+v, want failed as canceled", r, r.Error)
			}
			if !spooltest.JSONEqual(r.Job, []byte(job)) {
				t.Errorf("got job %s, want the job", r.Job)
			}
			for _, d := range []string{DirNew, DirHold, DirDeferred, DirCur, DirTmp} {
				spooltest.WantNames(t, s, d)
			}
		})
	}

	t.Run("a running job gets a cancel request", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		claim(t, s, DirNew, id+".json")
		running, err := s.Cancel(id, "")
		if err != nil || !running {
			t.Fatalf("got running %v, %v, want true, nil", running, err)
		}
		if !s.CancelRequested(id) {
			t.Error("no cur/ID.cancel")
		}
		if got := string(spooltest.Read(t, s, DirCur, id+".cancel")); got != "canceled\n" {
			t.Errorf("got %q, want the default reason", got)
		}
	})

	t.Run("a finished job cannot be canceled", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		finish(t, s, claim(t, s, DirNew, id+".json").Record, StateDone, nil)
		if _, err := s.Cancel(id, ""); err == nil || !strings.Contains(err.Error(), "already finished") {
			t.Errorf("got %v, want an error saying it finished", err)
		}
		spooltest.WantNames(t, s, DirDone, id+".json")
	})

	t.Run("an unknown job is not found", func(t *testing.T) {
		s := newSpool(t)
		for _, id := range []string{"nope", "../done/x", ""} {
			if _, err := s.Cancel(id, ""); !errors.Is(err, ErrNotFound) {
				t.Errorf("Cancel(%q): got %v, want ErrNotFound", id, err)
			}
		}
	})

	t.Run("a cancel racing a claim either fails the job or asks the runner", func(t *testing.T) {
		s := newSpool(t)
		runner, err := Open(s.Path(), testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer runner.Close()
		for range 100 {
			id := submit(t, s, job)
			var wg sync.WaitGroup
			wg.Go(func() { _, _ = runner.Claim(Entry{Dir: DirNew, Name: id + ".json"}) })
			running, err := s.Cancel(id, "")
			wg.Wait()
			if err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			if running != s.CancelRequested(id) {
				t.Fatalf("got running %v, cancel requested %v", running, s.CancelRequested(id))
			}
			if !running {
				if r := readRec(t, s, DirFailed, id+".json"); r.Error.Kind != KindCanceled {
					t.Fatalf("got %+v, want canceled", r.Error)
				}
			}
		}
	})
}

func TestRetry(t *testing.T) {
	t.Run("a failed job runs again as a new round keeping its history", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		c := claim(t, s, DirNew, id+".json")
		started := time.Now().Add(-time.Second).UTC().Truncate(time.Second)
		c.Record.Attempts, c.Record.StartedAt, c.Record.Target = 3, &started, "http://gpu:11434"
		finish(t, s, c.Record, StateFailed, &JobError{Kind: KindTarget, Message: "HTTP 500: out of memory", Status: 500})

		if err := s.Retry(id); err != nil {
			t.Fatal(err)
		}
		spooltest.WantNames(t, s, DirFailed)
		spooltest.WantNames(t, s, DirNew, id+".json")

		c = claim(t, s, DirNew, id+".json")
		r := c.Record
		if c.BadInput != nil || r.ID != id || r.Attempts != 0 || r.Error != nil || r.Target != "" || r.StartedAt != nil {
			t.Errorf("got %+v (bad input %v), want a fresh round under the same ID", r, c.BadInput)
		}
		if len(r.History) != 1 || r.History[0].Attempts != 3 || r.History[0].Error.Message != "HTTP 500: out of memory" ||
			!r.History[0].StartedAt.Equal(started) || r.History[0].FinishedAt == nil {
			t.Errorf("got history %+v, want the failed round", r.History)
		}
		if !spooltest.JSONEqual(r.Job, []byte(job)) || r.Model != "llama3.2" {
			t.Errorf("got job %s and model %q", r.Job, r.Model)
		}

		// A second failure and retry keeps both rounds.
		r.Attempts = 1
		finish(t, s, r, StateFailed, &JobError{Kind: KindTimeout, Message: "over 30m"})
		if err := s.Retry(id); err != nil {
			t.Fatal(err)
		}
		if h := claim(t, s, DirNew, id+".json").Record.History; len(h) != 2 || h[1].Error.Kind != KindTimeout {
			t.Errorf("got history %+v, want two rounds", h)
		}
	})

	t.Run("only failed jobs are retried", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		if err := s.Retry(id); err == nil {
			t.Error("retried a queued job")
		}
		if err := s.Retry("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	})

	t.Run("a failed job that was never JSON is not retried", func(t *testing.T) {
		s := newSpool(t)
		raw := "\xff"
		for _, e := range []*JobError{{Kind: KindBadInput, Message: "not UTF-8"}, nil} {
			r := &Record{ID: "x", State: StateFailed, JobFile: "x.raw", JobRaw: &raw, Error: e}
			data, _ := r.Marshal()
			spooltest.Put(t, s, DirFailed, "x.json", data)
			if err := s.Retry("x"); err == nil || !strings.Contains(err.Error(), "submit it again") {
				t.Errorf("got %v, want an error saying to fix and submit it", err)
			}
			spooltest.WantNames(t, s, DirFailed, "x.json")
		}
	})
}

func TestHoldAndRelease(t *testing.T) {
	t.Run("a held job is parked and released back to the queue", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		if err := s.Hold(id); err != nil {
			t.Fatal(err)
		}
		spooltest.WantNames(t, s, DirNew)
		if r, err := s.Get(id); err != nil || r.State != StateHeld || r.Model != "llama3.2" {
			t.Errorf("got %+v, %v, want held", r, err)
		}
		if err := s.Release(id); err != nil {
			t.Fatal(err)
		}
		spooltest.WantNames(t, s, DirHold)
		if r, err := s.Get(id); err != nil || r.State != StateQueued {
			t.Errorf("got %+v, %v, want queued", r, err)
		}
	})

	t.Run("a deferred job can be held and keeps its record", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		c := claim(t, s, DirNew, id+".json")
		c.Record.Attempts = 2
		finish(t, s, c.Record, StateDeferred, &JobError{Kind: KindTarget, Message: "HTTP 500"})
		if err := s.Hold(id); err != nil {
			t.Fatal(err)
		}
		r, err := s.Get(id)
		if err != nil || r.State != StateHeld || r.Attempts != 2 {
			t.Errorf("got %+v, %v, want held with 2 attempts", r, err)
		}
	})

	t.Run("only queued and deferred jobs are held", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		claim(t, s, DirNew, id+".json")
		if err := s.Hold(id); err == nil {
			t.Error("held a running job")
		}
	})

	t.Run("only held jobs are released", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		if err := s.Release(id); err == nil || !strings.Contains(err.Error(), "not held") {
			t.Errorf("got %v, want not held", err)
		}
		if err := s.Release("nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
	})

	t.Run("release refuses a path for an ID", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, DirFailed, "x.json", record(t, StateFailed, 1))
		for _, id := range []string{"../failed/x", "../../x", "hold/../x"} {
			if err := s.Release(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Release(%q): got %v, want ErrNotFound", id, err)
			}
		}
		spooltest.WantNames(t, s, DirFailed, "x.json")
		spooltest.WantNames(t, s, DirNew)
	})
}

func TestPrune(t *testing.T) {
	s := newSpool(t)
	spooltest.Put(t, s, DirDone, "old.json", record(t, StateDone, 1))
	spooltest.Age(t, s, DirDone, "old.json", 10*24*time.Hour)
	spooltest.Put(t, s, DirDone, "new.json", record(t, StateDone, 1))
	spooltest.Put(t, s, DirFailed, "bad.json", record(t, StateFailed, 1))
	spooltest.Put(t, s, DirFailed, "bad.raw", []byte("\xff"))
	spooltest.Age(t, s, DirFailed, "bad.json", 10*24*time.Hour)
	spooltest.Age(t, s, DirFailed, "bad.raw", 10*24*time.Hour)
	spooltest.Put(t, s, DirFailed, "orphan.raw", []byte("\xff"))
	spooltest.Age(t, s, DirFailed, "orphan.raw", 10*24*time.Hour)
	// Bad input set aside a moment ago: its record is still in cur/.
	spooltest.Put(t, s, DirFailed, "running.raw", []byte("\xff"))
	spooltest.Age(t, s, DirFailed, "running.raw", 10*24*time.Hour)
	spooltest.Put(t, s, DirCur, "running.json", record(t, StateQueued, 0))
	cutoff := time.Now().Add(-7 * 24 * time.Hour)

	if _, err := s.Prune(cutoff, nil, StateQueued); err == nil {
		t.Error("pruned queued jobs")
	}
	n, err := s.Prune(cutoff, nil, StateDone)
	if err != nil || n != 1 {
		t.Fatalf("got %d, %v, want 1", n, err)
	}
	spooltest.WantNames(t, s, DirDone, "new.json")
	spooltest.WantNames(t, s, DirFailed, "bad.json", "bad.raw", "orphan.raw", "running.raw")

	n, err = s.Prune(cutoff, nil)
	if err != nil || n != 1 {
		t.Fatalf("got %d, %v, want 1", n, err)
	}
	spooltest.WantNames(t, s, DirDone, "new.json")
	spooltest.WantNames(t, s, DirFailed, "running.raw")
}

func TestListAndGet(t *testing.T) {
	s := newSpool(t)
	mk := func(model string) string {
		return submit(t, s, `{"model":"`+model+`","prompt":"p","priority":2}`)
	}
	done := mk("done")
	finish(t, s, claim(t, s, DirNew, done+".json").Record, StateDone, nil)
	failed := mk("failed")
	finish(t, s, claim(t, s, DirNew, failed+".json").Record, StateFailed, &JobError{Kind: KindTarget, Message: "x"})
	deferred := mk("deferred")
	finish(t, s, claim(t, s, DirNew, deferred+".json").Record, StateDeferred, nil)
	held := mk("held")
	if err := s.Hold(held); err != nil {
		t.Fatal(err)
	}
	working := mk("working")
	c := claim(t, s, DirNew, working+".json")
	c.Record.State = StateWorking
	if err := s.Update(c.Record); err != nil {
		t.Fatal(err)
	}
	q1 := mk("q1")
	q2 := mk("q2")

	type row struct {
		id string
		st State
	}
	list := func(states ...State) []row {
		t.Helper()
		recs, err := s.List(states...)
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for _, r := range recs {
			out = append(out, row{r.ID, r.State})
		}
		return out
	}
	tests := []struct {
		name   string
		states []State
		want   []row
	}{
		{"every state, by directory then age", nil, []row{
			{working, StateWorking}, {q1, StateQueued}, {q2, StateQueued},
			{deferred, StateDeferred}, {held, StateHeld}, {done, StateDone}, {failed, StateFailed}}},
		{"queued only", []State{StateQueued}, []row{{q1, StateQueued}, {q2, StateQueued}}},
		{"finished only", []State{StateDone, StateFailed}, []row{{done, StateDone}, {failed, StateFailed}}},
		{"running", []State{StateWorking}, []row{{working, StateWorking}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := list(tt.states...); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("get describes a queued job from its file", func(t *testing.T) {
		r, err := s.Get(q1)
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != q1 || r.State != StateQueued || r.Model != "q1" || r.Endpoint != "generate" || r.Priority != 2 || r.SubmittedAt.IsZero() {
			t.Errorf("got %+v", r)
		}
		var j map[string]any
		if err := json.Unmarshal(r.Job, &j); err != nil || j["model"] != "q1" {
			t.Errorf("got job %s, want the job file", r.Job)
		}
	})

	t.Run("get reads a record", func(t *testing.T) {
		r, err := s.Get(failed)
		if err != nil || r.State != StateFailed || r.Error.Message != "x" {
			t.Errorf("got %+v, %v", r, err)
		}
	})

	t.Run("a job claimed a moment ago, not yet a record, is described and listed", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		claim(t, s, DirNew, id+".json")
		r, err := s.Get(id)
		if err != nil || r.ID != id || r.Model != "llama3.2" {
			t.Errorf("got %+v, %v", r, err)
		}
		recs, err := s.List(StateWorking)
		if err != nil || len(recs) != 1 || recs[0].ID != id {
			t.Errorf("got %v, %v, want the claimed job", recs, err)
		}
	})

	t.Run("get of an unknown job is not found", func(t *testing.T) {
		for _, id := range []string{"nope", "bad name", "../cur/" + working} {
			if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q): got %v, want ErrNotFound", id, err)
			}
		}
	})

	t.Run("find names the directory", func(t *testing.T) {
		for id, want := range map[string]string{q1: DirNew, working: DirCur, held: DirHold, deferred: DirDeferred, done: DirDone, failed: DirFailed} {
			if got, err := s.Find(id); err != nil || got != want {
				t.Errorf("Find(%s): got %q, %v, want %q", id, got, err, want)
			}
		}
	})
}
