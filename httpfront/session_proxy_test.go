package httpfront_test

// Review tests: each one demonstrates a problem found in review and fails
// until it is fixed.

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hopper-dev/hopper/httpfront"
)

// The dashboard's session cookie is a bearer credential for every front
// on the spool (30 days, no server-side expiry). Authorization is
// stripped before a request is passed to a target, but the Cookie header
// is not: any browser request to a proxied route (/api/tags, /api/ps,
// /api/show, /v1/models, pull/create/…) hands hopper_session, and
// X-Hopper-CSRF with it, to every Ollama target, which may be another host
// reached over plain http.
func TestSessionCookieNeverReachesTheTargets(t *testing.T) {
	var mu sync.Mutex
	var gotCookie, gotCSRF []string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotCookie = append(gotCookie, r.URL.Path+": "+r.Header.Get("Cookie"))
		gotCSRF = append(gotCSRF, r.Header.Get("X-Hopper-CSRF"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"models":[]}`)
	}))
	defer target.Close()
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) {
		c.Tokens = []string{"sesame"}
		c.Target = target.URL
	})
	resp, _ := call(t, "GET", f.URL+"/ui?token=sesame", "")
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "hopper_session" {
			cookie = "hopper_session=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatal("no session cookie")
	}
	if resp, body := call(t, "GET", f.URL+"/api/tags", "", "Cookie", cookie); resp.StatusCode != 200 {
		t.Fatalf("GET /api/tags with the cookie: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", f.URL, nil)
	req.Header.Set("Cookie", cookie)
	csrf := f.srv.CSRF(req)
	if resp, body := call(t, "POST", f.URL+"/api/show", `{"model":"m"}`, "Cookie", cookie, "X-Hopper-CSRF", csrf); resp.StatusCode != 200 {
		t.Fatalf("POST /api/show with the cookie: %d %s", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range gotCookie {
		if strings.Contains(c, "hopper_session") {
			t.Errorf("the target received the session cookie: %s", c)
		}
		if gotCSRF[i] != "" {
			t.Errorf("the target received X-Hopper-CSRF: %s", gotCSRF[i])
		}
	}
}

// A streaming load request (empty prompt: Ollama answers one object with
// done_reason "load") that waits behind another job gets no early status
// line (the CLI needs Ollama's status), and its answer writes the header
// once.
func TestAWaitingLoadRequestWritesItsHeaderOnce(t *testing.T) {
	sp := newSpool(t)
	srv, err := httpfront.New(httpfront.Config{Spool: sp, Target: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var logs bytes.Buffer
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), "", 0)
	ts.Start()
	t.Cleanup(func() { ts.Close(); srv.Close() })

	ahead := submit(t, ts.URL, `{"model":"m","prompt":"ahead"}`) // pos > 0: headers go at once
	runner := newFakeRunner(t, sp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type answer struct {
		resp *http.Response
		body []byte
	}
	got := make(chan answer, 1)
	go func() {
		resp := send(t, ctx, "POST", ts.URL+"/api/generate", `{"model":"m","prompt":""}`, "X-Hopper-Priority", "0")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{resp, body}
	}()
	// A load request waits for its answer before any header: its status is
	// Ollama's (the ollama CLI offers a pull on its 404), even though a job
	// is ahead of it.
	for {
		j := runner.next()
		if j.id() == ahead {
			continue // leave it claimed
		}
		j.start()
		j.done(`{"model":"m","created_at":"2026-01-01T00:00:00Z","response":"","done":true,"done_reason":"load"}`)
		break
	}
	a := receive(t, got, "the load request's answer")
	// (Its X-Hopper-Queue-Position may be absent: the runner can claim the
	// job before the front places it.)
	if a.resp.StatusCode != 200 || a.resp.Header.Get("Content-Type") != "application/json; charset=utf-8" || !strings.Contains(string(a.body), `"done_reason":"load"`) {
		t.Errorf("load answer: %d %q: %s", a.resp.StatusCode, a.resp.Header.Get("Content-Type"), a.body)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if strings.Contains(logs.String(), "superfluous") {
		t.Errorf("WriteHeader called twice (Content-Type %q, body %s): %s", a.resp.Header.Get("Content-Type"), a.body, logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
