package torture

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// TestCrashWhileSettingAsideKeepsARecord kills hopper serve the moment it
// has set a binary job's bytes aside as failed/ID.raw, before the record
// that explains them may be written; after a restart the bytes must have a
// record in failed/ (DESIGN §1: a crash between two steps is completed on
// the next start; STYLE: never drop bad input silently). It was a bug
// until setAside linked the bytes before it wrote the record.
func TestCrashWhileSettingAsideKeepsARecord(t *testing.T) {
	fake := ollamatest.NewServer(t, ollamatest.WithModels("m1"))
	w := newWorld(t, true, fake, "")
	watcher := watch(t, filepath.Join(w.spool, spool.DirFailed))
	serve := w.start(nil, "serve")
	writeAtomically(t, w, "binary.json", []byte("\xff\xfe\x00binary\x00"))
	raw := filepath.Base(killAt(t, watcher, serve, "ID.raw in failed/", func(path string) bool {
		return strings.HasSuffix(path, ".raw")
	}))
	id := strings.TrimSuffix(raw, ".raw")
	w.start(nil, "serve")
	waitFor(t, 10*time.Second, "a record for "+raw, func() bool {
		return exists(filepath.Join(w.spool, spool.DirFailed, id+".json"))
	})
	data, _ := os.ReadFile(filepath.Join(w.spool, spool.DirFailed, id+".json"))
	r, err := spool.ParseRecord(data)
	if err != nil || r.JobFile != raw || r.Error == nil || r.Error.Kind != spool.KindBadInput {
		t.Errorf("got %+v, %v; want a bad_input record whose job_file is %s", r, err, raw)
	}
	if got, _ := os.ReadFile(filepath.Join(w.spool, spool.DirFailed, raw)); string(got) != "\xff\xfe\x00binary\x00" {
		t.Errorf("%s holds %q, want the bytes as dropped", raw, got)
	}
	if names := w.names(spool.DirCur); len(names) > 0 {
		t.Errorf("cur/ holds %v, want it empty", names)
	}
}

// TestCrashAroundFinishDeliversTheFinalEventOnce kills hopper serve the
// moment a job's job.done event lands in the webhook outbox, which is the
// moment before the record leaves cur/ for done/ (spool.FinishAnd). After a
// restart the job's webhook must have got job.done under exactly one
// webhook-id (DESIGN §6: webhooks are spooled as files so a crash loses
// none; Standard Webhooks receivers dedupe on the id). When the kill lands
// before the move, the restart finishes the record and emits the event
// again: until final events were named by their record's finished_at, that
// was a second event (CI's torture run caught one). It tries up to 12 jobs
// until one kill lands before the move.
func TestCrashAroundFinishDeliversTheFinalEventOnce(t *testing.T) {
	fake := ollamatest.NewServer(t, ollamatest.WithModels("m1"))
	w := newWorld(t, true, fake, "")
	hooks := newSink(t)
	pendingDir := filepath.Join(w.spool, ".hopper", "outbox", "pending")
	if err := os.MkdirAll(pendingDir, 0o750); err != nil {
		t.Fatal(err)
	}
	watcher := watch(t, pendingDir)
	hits := 0
	for i := 0; i < 12 && hits == 0; i++ {
		id := fmt.Sprintf("hooked%02d", i)
		serve := w.start(nil, "serve")
		writeAtomically(t, w, id+".json", []byte(`{"model": "m1", "prompt": "x", "webhook": "`+hooks.srv.URL+`/hook"}`))
		killAt(t, watcher, serve, "job.done for "+id+" in the outbox", func(path string) bool {
			if !strings.HasPrefix(filepath.Base(path), "msg_") {
				return false
			}
			data, _ := os.ReadFile(path)
			return strings.Contains(string(data), `"type": "job.done"`) && strings.Contains(string(data), `"job": "`+id+`"`)
		})
		if exists(filepath.Join(w.spool, spool.DirCur, id+".json")) {
			hits++
		}
		serve = w.start(nil, "serve")
		rec := &spool.Record{ID: id, State: spool.StateDone}
		waitFor(t, 15*time.Second, "the job.done webhook of "+id, func() bool {
			return hooks.delivered(rec) > 0 && exists(filepath.Join(w.spool, spool.DirDone, id+".json"))
		})
		waitFor(t, 15*time.Second, "an empty outbox", func() bool {
			left, _ := filepath.Glob(filepath.Join(pendingDir, "msg_*.json"))
			return len(left) == 0
		})
		if n := hooks.delivered(rec); n != 1 {
			t.Errorf("%s: job.done arrived under %d webhook-ids, want 1 (record still in cur/ at the kill: %v)", id, n, hits > 0)
		}
		if code := serve.term(t); code != 0 {
			t.Fatalf("hopper serve exited %d on SIGTERM", code)
		}
	}
	if hits == 0 {
		t.Skip("no kill landed between the event and the move in 12 tries; each job's event arrived once all the same")
	}
}
