package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// TestADropInJobWhoseClientIsGoneDoesNotRunAgain: serve (with its front) is
// killed while a drop-in request streams; after the restart its job is not
// run again for nobody: it fails as canceled, and the target saw it once.
func TestADropInJobWhoseClientIsGoneDoesNotRunAgain(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokenDelay(50*time.Millisecond))
	addr := runtest.FreeAddr(t)
	srv := w.serve("--http", addr)
	waitFor(t, "the front", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	go func() {
		resp, err := http.Post("http://"+addr+"/api/generate", "application/json",
			strings.NewReader(`{"model":"m1","prompt":"`+strings.Repeat("word ", 200)+`"}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the generation to start", func() bool { return w.fake.InFlight() > 0 })
	srv.stop(t, syscall.SIGKILL)
	w.serve()
	var id string
	waitFor(t, "the job to end", func() bool {
		entries, _ := os.ReadDir(filepath.Join(w.spool, "failed"))
		for _, e := range entries {
			id = strings.TrimSuffix(e.Name(), ".json")
			return true
		}
		return false
	})
	r := w.record("failed", id)
	if r.Error == nil || r.Error.Kind != spool.KindCanceled || !strings.Contains(r.Error.Message, "gone") {
		t.Errorf("got %+v, want canceled: its client is gone", r.Error)
	}
	if n := len(w.fake.Requests()); n == 0 {
		t.Fatal("no request")
	}
	if gens := w.fake.RequestsTo("/api/generate"); gens != 1 {
		t.Errorf("the target got %d generations, want the one before the kill", gens)
	}
}
