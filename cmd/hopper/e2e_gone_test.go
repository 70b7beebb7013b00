package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// TestADropInJobWhoseClientIsGoneDoesNotRunAgain: serve (with its front) is
// killed while a drop-in request streams; after the restart its job is not
// run again for nobody: it fails as canceled, and the target saw it once.
func TestADropInJobWhoseClientIsGoneDoesNotRunAgain(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokenDelay(50*time.Millisecond))
	srv, base := w.startFront("serve")
	go func() {
		resp, err := http.Post(base+"/api/generate", "application/json",
			strings.NewReader(`{"model":"m1","prompt":"`+strings.Repeat("word ", 200)+`"}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the generation to start", func() bool { return w.fake.InFlight() > 0 })
	srv.kill(t)
	w.serve()
	var failed []*spool.Record
	waitFor(t, "the job to end", func() bool {
		failed = w.records("failed")
		return len(failed) > 0
	})
	r := failed[0]
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
