package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver collects verified webhook deliveries; refuse makes it answer 503.
type receiver struct {
	mu     sync.Mutex
	events map[string][]string // job ID → event types in arrival order
	ids    map[string]bool     // webhook-id values seen
	bad    int
	refuse bool
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{events: map[string][]string{}, ids: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.refuse {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			rc.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev struct {
			Type string
			Data struct{ ID string }
		}
		json.Unmarshal(body, &ev)
		if !rc.ids[r.Header.Get("webhook-id")] {
			rc.ids[r.Header.Get("webhook-id")] = true
			rc.events[ev.Data.ID] = append(rc.events[ev.Data.ID], ev.Type)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

func (rc *receiver) of(id string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.events[id]...)
}

func (rc *receiver) setRefuse(v bool) {
	rc.mu.Lock()
	rc.refuse = v
	rc.mu.Unlock()
}

func finished(events []string) bool {
	return len(events) > 0 && (events[len(events)-1] == "job.done" || events[len(events)-1] == "job.failed")
}

// logHook writes a hook script, hooks/NAME, that appends a line to a log
// on every run: the job's ID, its state, its record's path and the first n
// bytes of the event on its standard input. It returns the hooks directory
// and a function that waits until the script has run the given number of
// times, and returns the log.
func (w *world) logHook(name string, n int) (dir string, ran func(times int) string) {
	w.t.Helper()
	dir, log := filepath.Join(w.dir, "hooks"), logFile(filepath.Join(w.dir, "hook.log"))
	script := fmt.Sprintf("#!/bin/sh\necho \"$HOPPER_JOB_ID $HOPPER_STATE $HOPPER_RECORD $(head -c %d)\" >> %s\n", n, string(log))
	writeFile(w.t, filepath.Join(dir, name), script, 0o750)
	return dir, func(times int) string {
		w.t.Helper()
		waitFor(w.t, fmt.Sprintf("hook %s to run %d times", name, times), func() bool { return strings.Count(log.String(), "\n") == times })
		return log.String()
	}
}

func TestServeDeliversSignedWebhooksInOrderAndRunsHookScripts(t *testing.T) {
	rc, srv := newReceiver(t)
	w := newWorld(t)
	hookDir, hookRan := w.logHook("done", 15)
	w.config(fmt.Sprintf("hooks:\n  dir: %s\n  secret: %s\n  webhooks:\n    - url: %s/all\n", hookDir, testSecret, srv.URL))
	w.serve()
	for i := range 3 {
		w.drop(fmt.Sprintf("j%d", i), chatJob("m1", "x"))
	}
	for i := range 3 {
		id := fmt.Sprintf("j%d", i)
		waitFor(t, "all events of "+id, func() bool { return finished(rc.of(id)) })
		ev := rc.of(id)
		if ev[0] != "job.queued" || ev[len(ev)-1] != "job.done" || len(ev) < 3 {
			t.Errorf("%s: got events %v, want job.queued ... job.done in order", id, ev)
		}
	}
	data := hookRan(3) // for every job
	if !strings.Contains(data, "j0 done "+filepath.Join(w.spool, "done", "j0.json")+` {"type":"job.do`) {
		t.Errorf("hook log %q lacks the job's ID, state, record path and event on stdin", data)
	}
	if rc.bad != 0 {
		t.Errorf("%d deliveries failed signature verification", rc.bad)
	}
}

func TestServeSIGKILLWithUndeliveredEventsDeliversThemAfterRestart(t *testing.T) {
	rc, srv := newReceiver(t)
	rc.setRefuse(true)
	w := newWorld(t)
	w.config(fmt.Sprintf("hooks:\n  secret: %s\n", testSecret))
	s := w.serve()
	w.drop("k", fmt.Sprintf(`{"model":"m1","prompt":"x","webhook":%q}`, srv.URL+"/job"))
	waitFor(t, "the job to finish", func() bool { return fileExists(filepath.Join(w.spool, "done", "k.json")) })
	s.kill(t)
	if got := rc.of("k"); len(got) != 0 {
		t.Fatalf("events delivered while refused: %v", got)
	}
	rc.setRefuse(false)
	w.serve()
	waitFor(t, "the events after restart", func() bool { return finished(rc.of("k")) })
	if ev := rc.of("k"); ev[0] != "job.queued" {
		t.Errorf("got %v, want every event from job.queued on, in order", ev)
	}
}

func TestServeRefusesHTTPSubmittedWebhooksToLoopback(t *testing.T) {
	rc, srv := newReceiver(t)
	w := newWorld(t, ollamatest.WithModels("m1"))
	w.config(fmt.Sprintf("hooks:\n  secret: %s\n", testSecret))
	_, base := w.startFront("serve")
	body := fmt.Sprintf(`{"model":"m1","prompt":"x","webhook":%q}`, srv.URL+"/ssrf")
	resp, err := http.Post(base+"/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Refused at submit, not accepted to fail later: nothing is queued.
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(answer), "hooks.allow") {
		t.Errorf("got %d %s, want 400 naming hooks.allow", resp.StatusCode, answer)
	}
	if n := w.count("new") + w.count("cur") + w.count("done") + w.count("failed"); n != 0 {
		t.Errorf("%d jobs in the spool after a refused submit", n)
	}
	rc.mu.Lock()
	got := len(rc.events)
	rc.mu.Unlock()
	if got != 0 {
		t.Errorf("an HTTP-submitted job's webhook reached loopback: %v", rc.events)
	}
}

func TestCancelingAQueuedJobEmitsItsFailedEvent(t *testing.T) {
	rc, srv := newReceiver(t)
	w := newWorld(t)
	w.config(fmt.Sprintf("hooks:\n  secret: %s\n", testSecret))
	w.hopper("pause")
	w.serve()
	id := strings.TrimSpace(w.hopper("submit", "--webhook", srv.URL+"/job", "-m", "m1", "-p", "never"))
	w.hopper("cancel", id)
	waitFor(t, "the failed event", func() bool { return finished(rc.of(id)) })
	if ev := rc.of(id); len(ev) != 1 || ev[0] != "job.failed" {
		t.Errorf("got events %v, want job.failed", ev)
	}
}
