package spool

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/spooltest"
)

// batchLine is one line of a batch file: the watcher only looks at names.
const batchLine = `{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "llama3.2"}}` + "\n"

func TestWatcherQueuesBatchFiles(t *testing.T) {
	t.Run("a quiet batch file found at start is a batch, not a job", func(t *testing.T) {
		s := newSpool(t)
		dropIn(t, s, "old.jsonl", batchLine, time.Hour)
		dropIn(t, s, ".hidden.jsonl", batchLine, time.Hour)
		q := watch(t, s, WatchOptions{Settle: time.Hour})
		e, ok := q.NextBatch()
		if !ok || e.Dir != DirNew || e.Name != "old.jsonl" || e.Arrived.IsZero() {
			t.Errorf("got %+v, %v, want new/old.jsonl", e, ok)
		}
		if q.Len() != 0 {
			t.Errorf("%d jobs indexed, want none", q.Len())
		}
		q.Remove(DirNew, "old.jsonl")
		if e, ok := q.NextBatch(); ok {
			t.Errorf("got %+v after Remove", e)
		}
	})

	t.Run("a batch file arriving is queued once it has been quiet for the settle time", func(t *testing.T) {
		s := newSpool(t)
		const settle = 300 * time.Millisecond
		q := watch(t, s, WatchOptions{Settle: settle})
		f, err := os.Create(filepath.Join(s.Path(), DirNew, "live.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		// Written in two parts, as cat >> would.
		if _, err := f.WriteString(batchLine); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		barrier(t, s, q)
		if _, ok := q.NextBatch(); ok && time.Since(written) < settle {
			t.Error("queued while still being written")
		}
		if _, err := f.WriteString(batchLine); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		for {
			if e, ok := q.NextBatch(); ok {
				if e.Name != "live.jsonl" {
					t.Errorf("got %+v", e)
				}
				break
			}
			select {
			case <-q.BatchChanged():
			case <-deadline.C:
				t.Fatal("timed out waiting for the batch")
			}
		}
		if got := string(spooltest.Read(t, s, DirNew, "live.jsonl")); got != batchLine+batchLine {
			t.Errorf("got %q", got)
		}
	})
}
