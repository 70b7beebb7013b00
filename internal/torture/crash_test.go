package torture

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

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
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Add(filepath.Join(w.spool, spool.DirFailed)); err != nil {
		t.Fatal(err)
	}
	serve := w.start(nil, "serve")
	writeAtomically(t, w, "binary.json", []byte("\xff\xfe\x00binary\x00"))
	var raw string
	deadline := time.After(time.Minute)
	for raw == "" {
		select {
		case ev := <-watcher.Events:
			if strings.HasSuffix(ev.Name, ".raw") {
				serve.kill()
				raw = filepath.Base(ev.Name)
			}
		case <-deadline:
			t.Fatal("no ID.raw in failed/ within a minute")
		}
	}
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

// TestCrashAfterFinishKeepsTheWebhook kills hopper serve the moment a
// job's record lands in done/, before the job.done event may be in the
// webhook outbox; after a restart the job's webhook must still get it
// (DESIGN §6: webhooks are spooled as files so a crash loses none).
func TestCrashAfterFinishKeepsTheWebhook(t *testing.T) {
	fake := ollamatest.NewServer(t, ollamatest.WithModels("m1"))
	w := newWorld(t, true, fake, "")
	hooks := newSink(t)
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Add(filepath.Join(w.spool, spool.DirDone)); err != nil {
		t.Fatal(err)
	}
	serve := w.start(nil, "serve")
	writeAtomically(t, w, "hooked.json", []byte(`{"model": "m1", "prompt": "x", "webhook": "`+hooks.srv.URL+`/hook"}`))
	deadline := time.After(time.Minute)
	for done := false; !done; {
		select {
		case ev := <-watcher.Events:
			if filepath.Base(ev.Name) == "hooked.json" {
				serve.kill()
				done = true
			}
		case <-deadline:
			t.Fatal("no done/hooked.json within a minute")
		}
	}
	pending, _ := filepath.Glob(filepath.Join(w.spool, ".hopper", "outbox", "pending", "msg_*.json"))
	rec := &spool.Record{ID: "hooked", State: spool.StateDone}
	if len(pending) > 0 || hooks.delivered(rec) > 0 {
		t.Skip("the kill came after the event was recorded; run again")
	}
	w.start(nil, "serve")
	waitFor(t, 15*time.Second, "the job.done webhook", func() bool { return hooks.delivered(rec) > 0 })
}
