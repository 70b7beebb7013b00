package httpfront_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/spool"
)

func TestRetryHoldReleaseAndPauseOverHTTP(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	id := submit(t, f.URL, `{"model":"m","prompt":"p"}`)

	resp, body := call(t, "POST", f.URL+"/jobs/"+id+"/hold", "")
	if rec := decode[spool.Record](t, body); resp.StatusCode != 200 || rec.State != spool.StateHeld {
		t.Fatalf("hold: %d %s", resp.StatusCode, body)
	}
	if !sp.Exists(spool.DirHold, id+".json") {
		t.Fatalf("held job not in hold/")
	}
	resp, body = call(t, "POST", f.URL+"/jobs/"+id+"/hold", "")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "only queued or deferred jobs can be held") {
		t.Errorf("hold twice: %d %s, want 409 saying why", resp.StatusCode, body)
	}
	resp, body = call(t, "POST", f.URL+"/jobs/"+id+"/release", "")
	if rec := decode[spool.Record](t, body); resp.StatusCode != 200 || rec.State != spool.StateQueued {
		t.Fatalf("release: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, "POST", f.URL+"/jobs/"+id+"/retry", "")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "only failed jobs can be retried") {
		t.Errorf("retry of a queued job: %d %s, want 409", resp.StatusCode, body)
	}
	call(t, "DELETE", f.URL+"/jobs/"+id, "")
	resp, body = call(t, "POST", f.URL+"/jobs/"+id+"/retry", "")
	if rec := decode[spool.Record](t, body); resp.StatusCode != 200 || rec.State != spool.StateQueued {
		t.Fatalf("retry of a canceled job: %d %s", resp.StatusCode, body)
	}
	if resp, _ := call(t, "POST", f.URL+"/jobs/nosuchjob/retry", ""); resp.StatusCode != 404 {
		t.Errorf("retry of an unknown job: %d, want 404", resp.StatusCode)
	}

	resp, body = call(t, "POST", f.URL+"/pause", "")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"paused":true}` || !sp.Paused() {
		t.Errorf("pause: %d %s (spool paused %v)", resp.StatusCode, body, sp.Paused())
	}
	resp, body = call(t, "POST", f.URL+"/resume", "")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"paused":false}` || sp.Paused() {
		t.Errorf("resume: %d %s (spool paused %v)", resp.StatusCode, body, sp.Paused())
	}
}

func TestListJobsPagesWithACursor(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	want := map[string]bool{}
	for i := range 7 {
		want[submit(t, f.URL, fmt.Sprintf(`{"model":"m","prompt":"%d"}`, i))] = true
	}
	type list struct {
		Jobs  []spool.Record `json:"jobs"`
		Total int            `json:"total"`
		Next  string         `json:"next"`
	}
	seen := map[string]bool{}
	after, pages := "", 0
	for {
		resp, body := call(t, "GET", f.URL+"/jobs?limit=3&after="+url.QueryEscape(after), "")
		l := decode[list](t, body)
		if resp.StatusCode != 200 || l.Total != 7 {
			t.Fatalf("page %d: %d total %d: %s", pages, resp.StatusCode, l.Total, body)
		}
		for _, r := range l.Jobs {
			if seen[r.ID] {
				t.Errorf("%s listed twice", r.ID)
			}
			seen[r.ID] = true
		}
		pages++
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	if pages != 3 || len(seen) != 7 {
		t.Errorf("%d pages, %d jobs; want 3 pages of all 7", pages, len(seen))
	}
	resp, body := call(t, "GET", f.URL+"/jobs?after=nosuchjob", "")
	if resp.StatusCode != 400 || !strings.Contains(string(body), "start again without it") {
		t.Errorf("unknown cursor: %d %s", resp.StatusCode, body)
	}
}

func TestAQueuedJobSaysItsPosition(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	first := submit(t, f.URL, `{"model":"m","prompt":"first"}`)
	second := submit(t, f.URL, `{"model":"m","prompt":"second"}`)
	urgent := submit(t, f.URL, `{"model":"m","prompt":"urgent","priority":9}`)
	for id, want := range map[string]int{urgent: 0, first: 1, second: 2} {
		_, body := call(t, "GET", f.URL+"/jobs/"+id, "")
		rec := decode[spool.Record](t, body)
		if rec.Position == nil || *rec.Position != want {
			t.Errorf("%s: position %v, want %d: %s", id, rec.Position, want, body)
		}
	}

	// A streaming drop-in request behind them gets its headers at once,
	// with its place in the queue, long before any output.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// (Drop-in requests get drop_in_priority, ahead of batch work by
	// default; this one asks for the same priority as the rest.)
	resp := send(t, ctx, "POST", f.URL+"/api/generate", `{"model":"m","prompt":"hi"}`, "X-Hopper-Priority", "0")
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Hopper-Queue-Position") != "3" || resp.Header.Get("X-Hopper-Job-Id") == "" {
		t.Fatalf("drop-in: %d, position %q, job %q", resp.StatusCode, resp.Header.Get("X-Hopper-Queue-Position"), resp.Header.Get("X-Hopper-Job-Id"))
	}
	// /v1 streams get a comment while they wait; OpenAI's clients skip it.
	resp2 := send(t, ctx, "POST", f.URL+"/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "X-Hopper-Priority", "0")
	defer resp2.Body.Close()
	line, err := bufio.NewReader(resp2.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, ":") || resp2.Header.Get("X-Hopper-Queue-Position") != "4" {
		t.Errorf("/v1 stream while waiting: first line %q (%v), position %q", line, err, resp2.Header.Get("X-Hopper-Queue-Position"))
	}
}

func TestDashboardSessionCookieAndCSRF(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) { c.Tokens = []string{"sesame"} })
	_, body := call(t, "POST", f.URL+"/jobs", `{"model":"m","prompt":"p"}`, "Authorization", "Bearer sesame")
	id := decode[spool.Record](t, body).ID

	// No token: the sign-in page, no job data.
	resp, body := call(t, "GET", f.URL+"/ui", "")
	if resp.StatusCode != 401 || strings.Contains(string(body), id) || !strings.Contains(string(body), "/ui?token=") {
		t.Fatalf("no token: %d %s", resp.StatusCode, body)
	}
	resp, _ = call(t, "GET", f.URL+"/ui?token=wrong", "")
	if resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}

	// The token buys a cookie and a redirect that drops it from the URL.
	resp, _ = call(t, "GET", f.URL+"/ui?token=sesame&x=1", "")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(loc, "sesame") || !strings.HasPrefix(loc, "/ui") {
		t.Fatalf("sign-in: %d Location %q", resp.StatusCode, loc)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "hopper_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || strings.Contains(session.Value, "sesame") {
		t.Fatalf("session cookie = %+v", session)
	}
	cookie := "hopper_session=" + session.Value
	if resp, body := call(t, "GET", f.URL+"/jobs/"+id, "", "Cookie", cookie); resp.StatusCode != 200 {
		t.Fatalf("GET with the cookie: %d %s", resp.StatusCode, body)
	}
	if resp, _ := call(t, "GET", f.URL+"/jobs/"+id, "", "Cookie", "hopper_session=forged"); resp.StatusCode != 401 {
		t.Errorf("GET with a forged cookie: %d, want 401", resp.StatusCode)
	}
	// Changes need the CSRF header as well as the cookie.
	if resp, body := call(t, "DELETE", f.URL+"/jobs/"+id, "", "Cookie", cookie); resp.StatusCode != 403 || !strings.Contains(string(body), "X-Hopper-CSRF") {
		t.Fatalf("DELETE without CSRF: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", f.URL+"/ui", nil)
	req.AddCookie(session)
	csrf := f.srv.CSRF(req)
	if csrf == "" {
		t.Fatal("no CSRF value for a cookie session")
	}
	wrong := "0" + csrf[1:]
	if wrong == csrf {
		wrong = "1" + csrf[1:]
	}
	if resp, body := call(t, "DELETE", f.URL+"/jobs/"+id, "", "Cookie", cookie, "X-Hopper-CSRF", wrong); resp.StatusCode != 403 {
		t.Errorf("DELETE with a wrong CSRF value: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, "DELETE", f.URL+"/jobs/"+id, "", "Cookie", cookie, "X-Hopper-CSRF", csrf); resp.StatusCode != 200 {
		t.Errorf("DELETE with cookie and CSRF: %d %s", resp.StatusCode, body)
	}
}
