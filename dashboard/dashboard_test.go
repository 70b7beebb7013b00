package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/spool"
)

// patience bounds every wait in these tests; nothing sleeps.
const patience = 10 * time.Second

// world is a spool, its catalog and a dashboard over them behind a real
// HTTP server.
type world struct {
	sp  *spool.Spool
	cat *spool.Catalog
	h   *Handler
	srv *httptest.Server
}

// newWorld starts a dashboard; configure may change its config and its
// stream timing (every request reads afresh: no shared snapshot).
func newWorld(t *testing.T, configure ...func(*Config, *timing)) *world {
	t.Helper()
	sp, err := spool.Init(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	cat, err := sp.OpenCatalog(spool.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if err := cat.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Spool: sp, Catalog: cat}
	tm := defaultTiming
	tm.cacheTTL = 0
	for _, c := range configure {
		c(&cfg, &tm)
	}
	h := New(cfg)
	h.t = tm
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &world{sp: sp, cat: cat, h: h, srv: srv}
}

// submit queues a job for model with priority and returns its ID.
func (w *world) submit(t *testing.T, id, model string, priority int) string {
	t.Helper()
	body := fmt.Sprintf(`{"model": %q, "prompt": "hi", "priority": %d}`, model, priority)
	got, err := w.sp.Submit([]byte(body), spool.SubmitOptions{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// settle waits until the catalog satisfies ok.
func (w *world) settle(t *testing.T, what string, ok func(spool.Counts) bool) {
	t.Helper()
	if !runtest.Await(patience, w.cat.Changed, func() bool { return ok(w.cat.Counts()) }) {
		t.Fatalf("timed out waiting for %s; counts %v", what, w.cat.Counts().States)
	}
}

func (w *world) get(t *testing.T, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", w.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func (w *world) data(t *testing.T) Snapshot {
	t.Helper()
	resp, body := w.get(t, "/ui/data.json")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /ui/data.json: %d %s", resp.StatusCode, body)
	}
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return s
}

func count(s Snapshot, st spool.State) int {
	for _, c := range s.States {
		if c.State == st {
			return c.Count
		}
	}
	return -1
}

func TestPageShowsTheQueueByStateModelAndPriority(t *testing.T) {
	w := newWorld(t)
	w.submit(t, "a1", "llama3.2", 0)
	w.submit(t, "a2", "llama3.2", 10)
	w.submit(t, "a3", "llama3.2", 10)
	w.submit(t, "b1", "qwen3", 0)
	w.submit(t, "h1", "qwen3", 0)
	w.submit(t, "f1", "gemma3", 0)
	if err := w.sp.Hold("h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sp.Cancel("f1", "the model ran away"); err != nil {
		t.Fatal(err)
	}
	w.settle(t, "4 queued, 1 held, 1 failed", func(c spool.Counts) bool {
		return c.States[spool.StateQueued] == 4 && c.States[spool.StateHeld] == 1 && c.States[spool.StateFailed] == 1
	})

	resp, page := w.get(t, "/ui")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /ui: %d %s", resp.StatusCode, page)
	}
	for h, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: got %q, want %q", h, got, want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q: want script-src 'self' and nothing inline", csp)
	}
	for _, want := range []string{
		`data-model="llama3.2"`, `data-model="qwen3"`,
		`<li class="tile st-queued" data-state="queued"><b>4</b>`,
		`<li class="tile st-held" data-state="held"><b>1</b>`,
		`<span class="prio">10</span>: 2 · <span class="prio">0</span>: 1`,
		`data-job="f1"`, `the model ran away`,
		`data-action="release" data-id="h1"`, `data-action="retry" data-id="f1"`,
		`data-action="cancel" data-id="a1"`, `data-action="hold" data-id="a1"`,
		`<script src="ui/app.js?v=`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, " style=") {
		t.Error("the page has inline script or style, which its policy forbids")
	}

	s := w.data(t)
	var order []string
	for _, j := range s.Queued.Jobs {
		order = append(order, j.ID)
	}
	if got, want := strings.Join(order, " "), "a2 a3 a1 b1"; got != want {
		t.Errorf("queued in run order: got %s, want %s", got, want)
	}
	if p := s.Queued.Jobs[0].Position; p == nil || *p != 0 {
		t.Errorf("the first queued job's position: got %v, want 0", p)
	}
	if len(s.Failures.Jobs) != 1 || s.Failures.Jobs[0].Error == nil || s.Failures.Jobs[0].Error.Message != "the model ran away" {
		t.Errorf("failures: got %+v, want f1 with its message", s.Failures.Jobs)
	}
	if s.Models[0].Model != "llama3.2" || s.Models[0].Queued != 3 {
		t.Errorf("busiest model: got %+v, want llama3.2 with 3 queued", s.Models[0])
	}

	// The same data at the page's own address, for a client asking JSON.
	resp, body := w.get(t, "/ui", "Accept", "application/json")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" || !strings.Contains(body, `"queued"`) {
		t.Errorf("GET /ui with Accept: application/json: got %s %.80s", ct, body)
	}
}

func TestPageEscapesWhatJobsSay(t *testing.T) {
	w := newWorld(t)
	const evil = `<img src=x onerror="alert(1)">`
	w.submit(t, "x1", evil, 0)
	w.submit(t, "x2", "m", 0)
	if _, err := w.sp.Cancel("x2", evil); err != nil {
		t.Fatal(err)
	}
	w.settle(t, "one queued, one failed", func(c spool.Counts) bool {
		return c.States[spool.StateQueued] == 1 && c.States[spool.StateFailed] == 1
	})
	_, page := w.get(t, "/ui")
	if strings.Contains(page, "<img") {
		t.Errorf("the page carries a job's markup unescaped:\n%s", page)
	}
	if !strings.Contains(page, "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;") {
		t.Error("the page does not show the job's model and error as text")
	}
}

func TestPageListsAtMostFiftyQueuedJobsInRunOrder(t *testing.T) {
	w := newWorld(t)
	for i := range 120 {
		w.submit(t, fmt.Sprintf("j%03d", i), fmt.Sprintf("m%d", i%2), (i%3)*5)
	}
	w.settle(t, "120 queued", func(c spool.Counts) bool { return c.States[spool.StateQueued] == 120 })
	s := w.data(t)
	if s.Queued.Total != 120 || len(s.Queued.Jobs) != maxQueued {
		t.Fatalf("queued: got %d of %d, want %d of 120", len(s.Queued.Jobs), s.Queued.Total, maxQueued)
	}
	for i, j := range s.Queued.Jobs {
		want, ok := w.cat.Position(j.ID)
		if !ok || j.Position == nil || *j.Position != want {
			t.Errorf("%s: position %v, want the catalog's %d", j.ID, j.Position, want)
		}
		if i > 0 && *s.Queued.Jobs[i-1].Position >= *j.Position {
			t.Errorf("queued jobs %d and %d out of run order", i-1, i)
		}
	}
	_, page := w.get(t, "/ui")
	if !strings.Contains(page, "The next 50 of 120 queued, in run order") {
		t.Error("the page does not say it shows 50 of 120")
	}
}

func TestPageShowsTheRunnersTargets(t *testing.T) {
	w := newWorld(t)
	_, page := w.get(t, "/ui")
	if !strings.Contains(page, "No runner has published its targets") {
		t.Error("with no runner, the page does not say so")
	}
	down := time.Now().Add(-time.Minute)
	err := w.sp.PublishTargets(&spool.Targets{UpdatedAt: time.Now(), Targets: []spool.TargetStatus{
		{Name: "gpu1", URL: "http://gpu1:11434", Up: true, Slots: 4, InFlight: 3, LoadKey: "llama3.2", Resident: []string{"llama3.2:latest"}},
		{Name: "gpu2", URL: "http://gpu2:11434", Error: "connection refused", DownSince: &down, Slots: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := w.data(t)
	if len(s.Targets.List) != 2 || s.Targets.List[0].Health != "unknown" {
		t.Errorf("targets with no runner holding the lock: got %+v, want two of unknown health", s.Targets.List)
	}
	lock, err := w.sp.Lock("gpu1 http://gpu1:11434", "gpu2 http://gpu2:11434")
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	s = w.data(t)
	if got := []string{s.Targets.List[0].Health, s.Targets.List[1].Health}; got[0] != "up" || got[1] != "down" {
		t.Errorf("health: got %v, want [up down]", got)
	}
	_, page = w.get(t, "/ui")
	for _, want := range []string{`data-target="gpu1"`, `data-target="gpu2"`, `3 of 4 in use`, `llama3.2:latest`, `connection refused`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

func TestPageCarriesTheCSRFValue(t *testing.T) {
	w := newWorld(t, func(c *Config, _ *timing) {
		c.CSRF = func(*http.Request) string { return "v1.abc" }
	})
	_, page := w.get(t, "/ui")
	if !strings.Contains(page, `<meta name="csrf" content="v1.abc">`) {
		t.Error("the page does not carry the CSRF value")
	}
}

func TestAssetsAreServedWithTheirVersion(t *testing.T) {
	w := newWorld(t)
	v := w.h.assets["app.js"].version
	resp, body := w.get(t, "/ui/app.js?v="+v)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.Contains(body, "EventSource") {
		t.Errorf("GET app.js: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	resp, _ = w.get(t, "/ui/app.js?v=old")
	if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("an old version: Cache-Control %q, want no-cache", cc)
	}
	req, _ := http.NewRequest("GET", w.srv.URL+"/ui/", nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "../ui" {
		t.Errorf("GET /ui/: %d to %q, want 308 to ../ui", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = w.get(t, "/ui/nothing.js")
	if resp.StatusCode != 404 {
		t.Errorf("an unknown file: %d, want 404", resp.StatusCode)
	}
	if strings.Contains(body, "innerHTML") {
		t.Error("app.js uses innerHTML")
	}
}

// events reads a Server-Sent Events stream.
type events struct {
	resp   *http.Response
	rd     *bufio.Reader
	cancel context.CancelFunc
}

type event struct {
	name, data string
}

func (w *world) events(t *testing.T) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", w.srv.URL+"/ui/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /ui/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	e := &events{resp: resp, rd: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return e
}

// next returns the next event (comments count as events named ":").
func (e *events) next(t *testing.T) event {
	t.Helper()
	type result struct {
		ev  event
		err error
	}
	c := make(chan result, 1)
	go func() {
		var ev event
		for {
			line, err := e.rd.ReadString('\n')
			if err != nil {
				c <- result{err: err}
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					c <- result{ev: ev}
					return
				}
			case strings.HasPrefix(line, ":"):
				c <- result{ev: event{name: ":"}}
				return
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("reading the event stream: %v", r.err)
		}
		return r.ev
	case <-time.After(patience):
		e.cancel()
		t.Fatal("timed out waiting for an event")
		panic("unreachable")
	}
}

// until returns the first event named name whose data satisfies ok.
func (e *events) until(t *testing.T, name string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		ev := e.next(t)
		if ev.name == name && ok(ev.data) {
			return ev.data
		}
	}
	t.Fatalf("no %s event came that fits", name)
	return ""
}

func TestEventsSendASnapshotWhenJobsChange(t *testing.T) {
	w := newWorld(t, func(_ *Config, tm *timing) { tm.minGap = 10 * time.Millisecond })
	es := w.events(t)
	first := es.until(t, "snapshot", func(string) bool { return true })
	var s Snapshot
	if err := json.Unmarshal([]byte(first), &s); err != nil || count(s, spool.StateQueued) != 0 {
		t.Fatalf("first snapshot: %v, %s", err, first)
	}
	w.submit(t, "late", "m", 0)
	es.until(t, "snapshot", func(d string) bool { return strings.Contains(d, `"id":"late"`) })
}

func TestEventsSendAtMostOneSnapshotPerGap(t *testing.T) {
	const gap = 200 * time.Millisecond
	w := newWorld(t, func(_ *Config, tm *timing) { tm.minGap = gap })
	es := w.events(t)
	es.until(t, "snapshot", func(string) bool { return true })
	last := time.Now()
	for i := range 5 {
		w.submit(t, fmt.Sprintf("burst%d", i), "m", 0)
	}
	for {
		data := es.until(t, "snapshot", func(string) bool { return true })
		if since := time.Since(last); since < gap/2 {
			t.Fatalf("two snapshots %s apart, want at least %s", since, gap)
		}
		last = time.Now()
		if strings.Contains(data, `"id":"burst4"`) && strings.Contains(data, `"id":"burst0"`) {
			return
		}
	}
}

func TestEventsHeartbeat(t *testing.T) {
	w := newWorld(t, func(_ *Config, tm *timing) {
		tm.heartbeat = 20 * time.Millisecond
		tm.refresh = time.Hour
	})
	es := w.events(t)
	es.until(t, "snapshot", func(string) bool { return true })
	if ev := es.next(t); ev.name != ":" {
		t.Errorf("got event %q, want a heartbeat comment", ev.name)
	}
}

func TestEventsCarryLiveTokens(t *testing.T) {
	w := newWorld(t, func(_ *Config, tm *timing) {
		tm.minGap = 10 * time.Millisecond
		tm.flush = 10 * time.Millisecond
	})
	w.submit(t, "run1", "m", 0)
	c, err := w.sp.Claim(spool.Entry{Dir: spool.DirNew, Name: "run1.json"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.Record.State, c.Record.StartedAt, c.Record.Target = spool.StateWorking, &now, "gpu1"
	if err := w.sp.Update(c.Record); err != nil {
		t.Fatal(err)
	}
	out, err := w.sp.CreateOutput("run1")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w.settle(t, "one working", func(c spool.Counts) bool { return c.States[spool.StateWorking] == 1 })

	es := w.events(t)
	es.until(t, "snapshot", func(d string) bool { return strings.Contains(d, `"id":"run1"`) })
	for _, tok := range []string{"Why", " the", " sky <b>"} {
		if _, err := fmt.Fprintf(out, `{"model":"m","message":{"role":"assistant","content":%q},"done":false}`+"\n", tok); err != nil {
			t.Fatal(err)
		}
	}
	data := es.until(t, "tokens", func(d string) bool { return strings.Contains(d, `"tokens":3`) })
	var got struct{ Jobs []tokens }
	if err := json.Unmarshal([]byte(data), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Jobs) != 1 || got.Jobs[0].ID != "run1" || got.Jobs[0].Text != "Why the sky <b>" {
		t.Errorf("tokens: got %+v, want run1 with 3 tokens saying %q", got.Jobs, "Why the sky <b>")
	}
}

func TestEventsEndWhenTheFrontShutsDown(t *testing.T) {
	done := make(chan struct{})
	w := newWorld(t, func(c *Config, _ *timing) { c.Done = done })
	es := w.events(t)
	es.until(t, "snapshot", func(string) bool { return true })
	close(done)
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, es.rd)
		ended <- err
	}()
	select {
	case err := <-ended:
		if err != nil {
			t.Errorf("the stream ended with %v, want a clean end", err)
		}
	case <-time.After(patience):
		t.Fatal("the stream did not end")
	}
}

func TestChartsBucketTheLastHour(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	at := func(minAgo float64) *time.Time {
		t := now.Add(-time.Duration(minAgo * float64(time.Minute)))
		return &t
	}
	sum := func(state spool.State, submitted, started, finished float64, loaded bool) spool.Summary {
		s := spool.Summary{State: state, SubmittedAt: *at(submitted), FinishedAt: at(finished), Loaded: loaded}
		if started >= 0 {
			s.StartedAt = at(started)
		}
		return s
	}
	c := charts([]spool.Summary{
		sum(spool.StateDone, 59.9, 59.8, 59.5, true), // bucket 0, waited 6s, loaded
		sum(spool.StateDone, 10, 9.5, 0.5, false),    // bucket 59, waited 30s
		sum(spool.StateDone, 10, 9, 0.2, false),      // bucket 59, waited 60s
		sum(spool.StateFailed, 10, 8, 0.1, true),     // bucket 59, waited 120s, loaded
		sum(spool.StateFailed, 20, -1, 30.5, false),  // bucket 29, never started
		sum(spool.StateDone, 90, 70, 0.3, false),     // started before the hour: counted
	}, now)
	if len(c.Done) != 60 || c.StepSeconds != 60 || !c.Start.Equal(now.Add(-time.Hour)) {
		t.Fatalf("shape: %d buckets of %ds from %s", len(c.Done), c.StepSeconds, c.Start)
	}
	if c.Done[0] != 1 || c.Done[59] != 3 || c.Failed[59] != 1 || c.Failed[29] != 1 {
		t.Errorf("done/failed: got done[0]=%d done[59]=%d failed[59]=%d failed[29]=%d, want 1 3 1 1",
			c.Done[0], c.Done[59], c.Failed[59], c.Failed[29])
	}
	if c.TotalDone != 4 || c.TotalFailed != 2 || c.TotalLoads != 2 {
		t.Errorf("totals: got %d done %d failed %d loads, want 4 2 2", c.TotalDone, c.TotalFailed, c.TotalLoads)
	}
	if c.Loads[0] != 1 || c.Loads[52] != 1 {
		t.Errorf("loads by start: got loads[0]=%d loads[52]=%d, want 1 1", c.Loads[0], c.Loads[52])
	}
	if c.WaitP50[29] != nil {
		t.Errorf("a bucket where nothing started has a wait: %v", *c.WaitP50[29])
	}
	if p, m := c.WaitP50[59], c.WaitMax[59]; p == nil || m == nil || *p != 60 || *m != 1200 {
		t.Errorf("wait in the last bucket: got %v/%v, want median 60s, longest 1200s", p, m)
	}
}
