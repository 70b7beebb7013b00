package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/internal/spooltest"
)

// wait is how long a test waits for the watcher before it fails.
const wait = 10 * time.Second

// watch starts a watcher on s feeding a new queue, and stops it when the
// test ends.
func watch(t *testing.T, s *Spool, o WatchOptions) *Queue {
	t.Helper()
	q := NewQueue(latest)
	w, err := s.NewWatcher(q, o)
	if err != nil {
		t.Fatal(err)
	}
	run(t, w)
	return q
}

// run runs w until the test ends.
func run(t *testing.T, w *Watcher) {
	runtest.Start(t, "the watcher", wait, w.Run)
}

// waitFor waits until cond holds, looking again each time q changes.
func waitFor(t *testing.T, q *Queue, what string, cond func() bool) {
	t.Helper()
	if !runtest.Await(wait, q.Changed, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitIndexed waits until q holds dir/name.
func waitIndexed(t *testing.T, q *Queue, dir, name string) {
	t.Helper()
	waitFor(t, q, dir+"/"+name+" to be indexed", func() bool { return q.Has(dir, name) })
}

// submitIndexed submits a job and waits until q has indexed it.
func submitIndexed(t *testing.T, s *Spool, q *Queue, body string) (id string) {
	t.Helper()
	id = submit(t, s, body)
	waitIndexed(t, q, DirNew, id+".json")
	return id
}

// barrier submits a job and waits until the watcher has indexed it. Events
// are handled in order, so every change made before has been seen by then.
func barrier(t *testing.T, s *Spool, q *Queue) {
	t.Helper()
	id := submitIndexed(t, s, q, `{"model":"barrier","prompt":"p"}`)
	q.Remove(DirNew, id+".json")
}

func noBad(t *testing.T, q *Queue) {
	t.Helper()
	if e, ok := q.Bad(); ok {
		t.Errorf("got bad entry %+v, want none", e)
	}
}

func TestWatcherIndexes(t *testing.T) {
	t.Run("jobs present at the start", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, `{"model":"m","prompt":"p","priority":3}`)
		q := watch(t, s, WatchOptions{})
		// Listed at once, read in the background.
		waitFor(t, q, "the job to be read", func() bool { _, ok := q.Oldest(3); return ok })
		e, ok := q.Oldest(3)
		if !ok || e.Name != id+".json" || e.Model != "m" || e.Dir != DirNew || e.Arrived.IsZero() || e.Unread {
			t.Errorf("got %+v, %v, want the queued job", e, ok)
		}
	})

	t.Run("jobs arriving after the watcher started", func(t *testing.T) {
		s := newSpool(t)
		q := watch(t, s, WatchOptions{})
		id := submitIndexed(t, s, q, `{"model":"m:latest","messages":[]}`)
		if e, ok := q.OldestFor(0, "m"); !ok || e.Name != id+".json" {
			t.Errorf("got %+v, %v", e, ok)
		}
	})

	t.Run("a job claimed by someone leaves the queue", func(t *testing.T) {
		s := newSpool(t)
		q := watch(t, s, WatchOptions{})
		id := submitIndexed(t, s, q, job)
		claim(t, s, DirNew, id+".json")
		barrier(t, s, q)
		if q.Has(DirNew, id+".json") {
			t.Error("the claimed job is still queued")
		}
	})

	t.Run("a retried record keeps its model and priority", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, `{"model":"m","prompt":"p","priority":4}`)
		finish(t, s, claim(t, s, DirNew, id+".json").Record, StateFailed, &JobError{Kind: KindTarget, Message: "x"})
		q := watch(t, s, WatchOptions{})
		if err := s.Retry(id); err != nil {
			t.Fatal(err)
		}
		waitIndexed(t, q, DirNew, id+".json")
		if e, ok := q.OldestFor(4, "m"); !ok || e.Name != id+".json" {
			t.Errorf("got %+v, %v", e, ok)
		}
	})

	t.Run("a job whose name is not an ID is indexed as bad", func(t *testing.T) {
		s := newSpool(t)
		q := watch(t, s, WatchOptions{})
		dropIn(t, s, "bad name.json", job, 0)
		waitIndexed(t, q, DirNew, "bad name.json")
		if e, ok := q.Bad(); !ok || e.Name != "bad name.json" {
			t.Errorf("got %+v, %v, want it bad", e, ok)
		}
	})
}

// dropIn writes name outside new/ with mtime age ago, then renames it in.
func dropIn(t *testing.T, s *Spool, name, data string, ago time.Duration) {
	t.Helper()
	staged := filepath.Join(s.Path(), DirState, "staged")
	writeFile(t, staged, data)
	when := time.Now().Add(-ago)
	if err := os.Chtimes(staged, when, when); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(staged, filepath.Join(s.Path(), DirNew, name)); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherWaitsForWriters(t *testing.T) {
	first, second := `{"model":"m",`, `"prompt":"p"}`

	t.Run("an rsync temp file is ignored until renamed into place", func(t *testing.T) {
		s := newSpool(t)
		q := watch(t, s, WatchOptions{})
		tmp := filepath.Join(s.Path(), DirNew, ".job.json.a1B2c3")
		writeFile(t, tmp, first)
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(tmp, old, old); err != nil {
			t.Fatal(err)
		}
		barrier(t, s, q)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(second)
		f.Close()
		barrier(t, s, q)
		if q.Len() != 0 {
			t.Fatalf("got %d entries, want the temp file ignored", q.Len())
		}
		noBad(t, q)
		if err := os.Rename(tmp, filepath.Join(s.Path(), DirNew, "job.json")); err != nil {
			t.Fatal(err)
		}
		waitIndexed(t, q, DirNew, "job.json")
		noBad(t, q)
	})

	t.Run("a half-written file is pending while recent and indexed once complete", func(t *testing.T) {
		s := newSpool(t)
		q := watch(t, s, WatchOptions{Settle: 2 * time.Second})
		path := filepath.Join(s.Path(), DirNew, "half.json")
		writeFile(t, path, first)
		barrier(t, s, q)
		if q.Has(DirNew, "half.json") {
			t.Fatal("a file still being written was indexed")
		}
		noBad(t, q)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(second)
		f.Close()
		waitIndexed(t, q, DirNew, "half.json")
		noBad(t, q)
		if e, ok := q.OldestFor(0, "m"); !ok || e.Name != "half.json" {
			t.Errorf("got %+v, %v, want half.json", e, ok)
		}
	})

	t.Run("a half-written file quiet past the settle time is bad at the start", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, DirNew, "half.json", []byte(first))
		spooltest.Age(t, s, DirNew, "half.json", time.Hour)
		q := watch(t, s, WatchOptions{Settle: time.Minute})
		waitFor(t, q, "half.json to be read", func() bool { _, ok := q.Bad(); return ok })
		if e, ok := q.Bad(); !ok || e.Name != "half.json" {
			t.Errorf("got %+v, %v, want half.json bad", e, ok)
		}
	})

	t.Run("a recent half-written file is pending at the start", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, DirNew, "half.json", []byte(first))
		q := watch(t, s, WatchOptions{Settle: time.Minute})
		// Reading it removes its entry without a Changed signal: poll.
		deadline := time.Now().Add(wait)
		for q.Len() != 0 && time.Now().Before(deadline) {
			<-time.After(time.Millisecond)
		}
		if q.Len() != 0 {
			t.Errorf("got %d entries, want none", q.Len())
		}
		noBad(t, q)
	})

	t.Run("a half-written file that arrives already quiet is bad", func(t *testing.T) {
		s := newSpool(t)
		q := watch(t, s, WatchOptions{Settle: time.Minute})
		dropIn(t, s, "half.json", first, time.Hour)
		waitIndexed(t, q, DirNew, "half.json")
		if e, ok := q.Bad(); !ok || e.Name != "half.json" {
			t.Errorf("got %+v, %v, want half.json bad", e, ok)
		}
	})

	t.Run("a bad file rewritten in place is looked at again", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, DirNew, "fixed.json", []byte(first))
		spooltest.Age(t, s, DirNew, "fixed.json", time.Hour)
		q := watch(t, s, WatchOptions{Settle: 100 * time.Millisecond})
		waitFor(t, q, "fixed.json to be read", func() bool { _, ok := q.Bad(); return ok })
		spooltest.Put(t, s, DirNew, "fixed.json", []byte(first+second))
		waitFor(t, q, "the fixed file", func() bool {
			_, bad := q.Bad()
			return !bad && q.Has(DirNew, "fixed.json")
		})
	})
}

func TestWatcherIgnores(t *testing.T) {
	// Each case makes one thing in new/; none of them is indexed, and none
	// outside the spool is read: the outside job would index, and the FIFOs
	// would block a reader.
	secret := `{"model":"secret","prompt":"p"}`
	cases := []struct {
		name string
		make func(t *testing.T, s *Spool, outside string)
	}{
		{"a dot-named file", func(t *testing.T, s *Spool, _ string) { spooltest.Put(t, s, DirNew, ".hidden.json", []byte(job)) }},
		{"a file not named .json", func(t *testing.T, s *Spool, _ string) { spooltest.Put(t, s, DirNew, "notes.txt", []byte(job)) }},
		{"a partial download", func(t *testing.T, s *Spool, _ string) { spooltest.Put(t, s, DirNew, "job.json.part", []byte(job)) }},
		{"a file named only .json", func(t *testing.T, s *Spool, _ string) { spooltest.Put(t, s, DirNew, ".json", []byte(job)) }},
		{"a symlink to a job outside the spool", func(t *testing.T, s *Spool, outside string) {
			mustSymlink(t, filepath.Join(outside, "job.json"), filepath.Join(s.Path(), DirNew, "out.json"))
		}},
		{"a symlink to a FIFO outside the spool", func(t *testing.T, s *Spool, outside string) {
			mustSymlink(t, filepath.Join(outside, "fifo"), filepath.Join(s.Path(), DirNew, "fifo-link.json"))
		}},
		{"a symlink to a record inside the spool", func(t *testing.T, s *Spool, _ string) {
			mustSymlink(t, "../done/secret.json", filepath.Join(s.Path(), DirNew, "in.json"))
		}},
		{"a symlink to a directory", func(t *testing.T, s *Spool, outside string) {
			mustSymlink(t, outside, filepath.Join(s.Path(), DirNew, "dir-link.json"))
		}},
		{"a FIFO", func(t *testing.T, s *Spool, _ string) { mustMkfifo(t, filepath.Join(s.Path(), DirNew, "fifo.json")) }},
		{"a directory", func(t *testing.T, s *Spool, _ string) {
			if err := os.Mkdir(filepath.Join(s.Path(), DirNew, "x.json"), 0o750); err != nil {
				t.Fatal(err)
			}
		}},
	}
	setup := func(t *testing.T) (*Spool, string) {
		s := newSpool(t)
		outside := t.TempDir()
		writeFile(t, filepath.Join(outside, "job.json"), secret)
		mustMkfifo(t, filepath.Join(outside, "fifo"))
		spooltest.Put(t, s, DirDone, "secret.json", []byte(secret))
		return s, outside
	}
	for _, tt := range cases {
		t.Run(tt.name+" present at the start", func(t *testing.T) {
			s, outside := setup(t)
			tt.make(t, s, outside)
			q := watchWithin(t, s)
			if q.Len() != 0 {
				t.Errorf("got %d entries, want none", q.Len())
			}
		})
		t.Run(tt.name+" arriving later", func(t *testing.T) {
			s, outside := setup(t)
			q := watch(t, s, WatchOptions{Settle: time.Millisecond})
			tt.make(t, s, outside)
			barrier(t, s, q)
			if q.Len() != 0 {
				t.Errorf("got %d entries, want none", q.Len())
			}
			noBad(t, q)
		})
	}
}

// watchWithin starts a watcher, failing the test if its initial scan blocks.
func watchWithin(t *testing.T, s *Spool) *Queue {
	t.Helper()
	q := NewQueue(latest)
	type result struct {
		w   *Watcher
		err error
	}
	ch := make(chan result, 1)
	go func() {
		w, err := s.NewWatcher(q, WatchOptions{Settle: time.Millisecond})
		ch <- result{w, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		run(t, r.w)
		return q
	case <-time.After(wait):
		t.Fatal("the initial scan blocked")
		return nil
	}
}

func TestWatcherDeferred(t *testing.T) {
	s := newSpool(t)
	q := watch(t, s, WatchOptions{})
	id := submitIndexed(t, s, q, `{"model":"m","prompt":"p","priority":2}`)
	c, err := s.Claim(Entry{Dir: DirNew, Name: id + ".json"})
	if err != nil {
		t.Fatal(err)
	}
	nb := time.Now().Add(time.Hour)
	c.Record.NotBefore, c.Record.Attempts = &nb, 1
	finish(t, s, c.Record, StateDeferred, &JobError{Kind: KindTarget, Message: "HTTP 500"})
	waitIndexed(t, q, DirDeferred, id+".json")
	if q.Has(DirNew, id+".json") {
		t.Error("the claimed job is still queued")
	}
	if _, ok := q.TopPriority(); ok {
		t.Fatal("the deferred record is claimable before not_before")
	}
	if next := q.Promote(time.Now()); !next.Equal(nb) {
		t.Errorf("got next %v, want %v", next, nb)
	}
	if _, ok := q.TopPriority(); ok {
		t.Fatal("promoted before not_before")
	}
	q.Promote(nb.Add(time.Second))
	e, ok := q.OldestFor(2, "m")
	if !ok || e.Dir != DirDeferred {
		t.Fatalf("got %+v, %v, want the deferred record", e, ok)
	}
	c, err = s.Claim(e)
	if err != nil {
		t.Fatal(err)
	}
	if c.Record.Attempts != 1 || c.Record.State != StateDeferred || c.Job == nil {
		t.Errorf("got %+v, want the deferred record with its attempt", c.Record)
	}
	barrier(t, s, q)
	if q.Has(DirDeferred, id+".json") {
		t.Error("the claimed record is still indexed")
	}
}

// A job whose event was lost (or that could not be looked at when it came)
// is found by the periodic rescan, not stranded until a restart.
func TestWatcherRescanFindsWhatItMissed(t *testing.T) {
	s := newSpool(t)
	q := watch(t, s, WatchOptions{Rescan: 20 * time.Millisecond})
	id := submitIndexed(t, s, q, `{"model":"m","prompt":"p"}`)
	q.Remove(DirNew, id+".json") // as if its event had never come
	waitIndexed(t, q, DirNew, id+".json")
}

// A job written in place, as cp writes it (create, then write), is taken
// as soon as it parses, not after the settle time.
func TestWatcherTakesAJobWrittenInPlaceAsSoonAsItParses(t *testing.T) {
	s := newSpool(t)
	q := watch(t, s, WatchOptions{Settle: time.Hour})
	path := filepath.Join(s.Path(), DirNew, "copied.json")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	barrier(t, s, q) // the create has been seen: the empty file is pending
	if _, err := f.WriteString(`{"model":"m","prompt":"p"}`); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, q, DirNew, "copied.json")
	noBad(t, q)
}
