package httpfront_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/internal/benchtest"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/internal/spooltest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// The dashboard in a real browser: Debian's chromium, driven by chromedp,
// against a front and a runner with two targets (two fake Ollamas). The
// tests skip when chromium is not installed; .ci/run installs it.

const uiToken = "dashboard-test-token"

// browserWait bounds how long the page may take to show what a test waits
// for: the runner, the front's catalog and the event stream all take a
// moment, and the machine may be busy.
const browserWait = 30 * time.Second

// chromiumPath finds Debian's chromium, or skips the test.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it): skipping the browser test")
	return ""
}

// browser is one headless chromium with a fresh profile, and what its page
// wrote to the console.
type browser struct {
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs actions within browserWait.
func (b *browser) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v\nthe page's console:\n%s", what, err, b.consoleText())
	}
}

// until waits for a JavaScript expression to be true in the page.
func (b *browser) until(t *testing.T, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(browserWait))); err != nil {
		t.Fatalf("wait until %s: %v\nthe page's console:\n%s", what, err, b.consoleText())
	}
}

// eval evaluates a JavaScript expression in the page into out.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (b *browser) consoleText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for _, m := range b.console {
		fmt.Fprintf(&s, "  %s: %s %s:%d\n", m.Type, m.Text, m.URL, m.Line)
	}
	return s.String()
}

// checkConsole fails the test if the page threw or broke its security
// policy.
func (b *browser) checkConsole(t *testing.T) {
	t.Helper()
	if text := b.consoleText(); text != "" {
		t.Logf("the page's console:\n%s", text)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.Type == chromedp.ConsoleException || strings.Contains(m.Text, "Content Security Policy") {
			t.Errorf("the page's console: %s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line)
		}
	}
}

// uiWorld is a spool served by a front with a token and run by a runner
// with two targets, each a fake Ollama.
type uiWorld struct {
	*front
	fakes map[string]*ollamatest.Server
	cat   *spool.Catalog // the test's own view of the spool
}

// startUIWorld queues jobs (so the runner finds them all at once), then
// starts the fakes, the runner and the front. Both targets may run only
// the models named (so a job for another fails at once, without waiting
// for a target to be free to say it lacks the model).
func startUIWorld(t *testing.T, jobs []string, models []string, fakeOpts ...ollamatest.Option) *uiWorld {
	t.Helper()
	sp := newSpool(t)
	for _, j := range jobs {
		id, body, _ := strings.Cut(j, " ")
		if _, err := sp.Submit([]byte(body), spool.SubmitOptions{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	w := &uiWorld{fakes: map[string]*ollamatest.Server{}}
	cfg := runner.Config{Spool: sp, Settle: 20 * time.Millisecond, ShutdownGrace: 100 * time.Millisecond,
		RetryBase: time.Hour, RetryMax: time.Hour, Refresh: time.Second}
	for _, name := range []string{"gpu-a", "gpu-b"} {
		f := ollamatest.NewServer(t, append(fakeOpts, ollamatest.WithModels(models...))...)
		w.fakes[name] = f
		cfg.Targets = append(cfg.Targets, runner.TargetConfig{Name: name, URL: f.URL, Target: f.Client(), Parallel: 1, Models: models})
	}
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	w.cat, err = sp.OpenCatalog(spool.CatalogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cat.Close() })
	w.front = startFront(t, sp, func(c *httpfront.Config) { c.Tokens = []string{uiToken} })
	return w
}

// settle waits until the spool's catalog satisfies ok.
func (w *uiWorld) settle(t *testing.T, what string, ok func(spool.Counts) bool) {
	t.Helper()
	if !runtest.Await(browserWait, w.cat.Changed, func() bool { return ok(w.cat.Counts()) }) {
		t.Fatalf("timed out waiting for %s; counts %v", what, w.cat.Counts().States)
	}
}

func uiChat(model, prompt string, priority int) string {
	return fmt.Sprintf(`{"model": %q, "messages": [{"role": "user", "content": %q}], "priority": %d}`, model, prompt, priority)
}

// pageFacts is what a person reads off the page.
type pageFacts struct {
	Targets  []string   `json:"targets"`
	Running  []jobFacts `json:"running"`
	Queued   []jobFacts `json:"queued"`
	Failures []jobFacts `json:"failures"`
	Models   []string   `json:"models"`
	Jobs     int        `json:"jobs"`
}

type jobFacts struct {
	ID     string `json:"id"`
	Model  string `json:"model"`
	Error  string `json:"error"`
	Tokens string `json:"tokens"`
	Out    string `json:"out"`
}

const readPage = `(() => {
  const jobs = (sel) => Array.from(document.querySelectorAll(sel)).map((e) => ({
    id: e.dataset.job,
    model: (e.querySelector('.model') || {}).textContent || '',
    error: (e.querySelector('.error') || {}).textContent || '',
    tokens: (e.querySelector('.tokens') || {}).textContent || '',
    out: (e.querySelector('.out') || {}).textContent || '',
  }));
  return {
    targets: Array.from(document.querySelectorAll('[data-target] .name')).map((e) => e.textContent),
    running: jobs('[data-part="running"] [data-job]'),
    queued: jobs('[data-part="queued"] [data-job]'),
    failures: jobs('[data-part="failures"] [data-job]'),
    models: Array.from(document.querySelectorAll('[data-part="models"] [data-model] .model')).map((e) => e.textContent),
    jobs: document.querySelectorAll('[data-job]').length,
  };
})()`

func modelsOf(jobs []jobFacts) []string {
	var out []string
	for _, j := range jobs {
		if !slices.Contains(out, j.Model) {
			out = append(out, j.Model)
		}
	}
	slices.Sort(out)
	return out
}

func TestUIWithoutTheTokenShowsNoJobs(t *testing.T) {
	sp := newSpool(t)
	if _, err := sp.Submit([]byte(uiChat("llama3.2", "secret question", 0)), spool.SubmitOptions{ID: "private-job"}); err != nil {
		t.Fatal(err)
	}
	f := startFront(t, sp, func(c *httpfront.Config) { c.Tokens = []string{uiToken} })
	b := newBrowser(t)

	for _, path := range []string{"/ui", "/ui/data.json", "/ui/events", "/ui?token=wrong"} {
		b.do(t, "open "+path, chromedp.Navigate(f.URL+path))
		body := eval[string](t, b, `document.documentElement.outerHTML`)
		if strings.Contains(body, "private-job") || strings.Contains(body, "llama3.2") {
			t.Errorf("%s without the token shows job data:\n%s", path, body)
		}
		if path != "/ui/events" && path != "/ui/data.json" && !strings.Contains(body, "/ui?token=") {
			t.Errorf("%s without the token does not show the sign-in page:\n%s", path, body)
		}
	}
	// The same with the token: the job is there.
	b.do(t, "sign in", chromedp.Navigate(f.URL+"/ui?token="+uiToken))
	b.until(t, "the queued job shows", `document.querySelector('[data-part="queued"] [data-job="private-job"]') !== null`)
	if loc := eval[string](t, b, `location.href`); strings.Contains(loc, "token") {
		t.Errorf("after sign-in the address still holds the token: %s", loc)
	}
	b.checkConsole(t)
}

func TestUI(t *testing.T) {
	chromiumPath(t)
	// Slow replies: a job runs for about a minute, so the first two jobs
	// keep both targets busy and the others wait in the queue.
	w := startUIWorld(t, []string{
		"ask-llama-1 " + uiChat("llama3.2", "Why is the sky blue?", 0),
		"ask-qwen-1 " + uiChat("qwen3", "Name three rivers.", 0),
		"ask-llama-2 " + uiChat("llama3.2", "Why is the sea salty?", 0),
		"ask-qwen-2 " + uiChat("qwen3", "Name three lakes.", 0),
		"ask-llama-3 " + uiChat("llama3.2", "Why do cats purr?", 0),
		"ask-missing " + uiChat("no-such-model", "Anyone?", 0),
	}, []string{"llama3.2", "qwen3"}, ollamatest.WithTokenDelay(100*time.Millisecond), ollamatest.WithTokens(600))
	w.settle(t, "two running, one failed", func(c spool.Counts) bool {
		return c.States[spool.StateWorking]+c.States[spool.StateLoading] == 2 && c.States[spool.StateFailed] == 1
	})
	b := newBrowser(t)
	b.do(t, "sign in", chromedp.Navigate(w.URL+"/ui?token="+uiToken))

	t.Run("ShowsBothTargetsQueuedAndRunningJobsByModelAndAFailureWithItsError", func(t *testing.T) {
		b.until(t, "both targets, two running, three queued, one failure",
			`document.querySelectorAll('[data-target]').length === 2 &&
			 document.querySelectorAll('[data-part="running"] [data-job]').length === 2 &&
			 document.querySelectorAll('[data-part="queued"] [data-job]').length === 3 &&
			 document.querySelectorAll('[data-part="failures"] [data-job]').length === 1`)
		p := eval[pageFacts](t, b, readPage)
		if got := strings.Join(p.Targets, " "); got != "gpu-a gpu-b" {
			t.Errorf("targets: got %s, want gpu-a gpu-b", got)
		}
		if got := modelsOf(p.Running); !slices.Equal(got, []string{"llama3.2", "qwen3"}) {
			t.Errorf("running models: got %v, want llama3.2 and qwen3 (one on each target)", got)
		}
		if got := modelsOf(p.Queued); !slices.Equal(got, []string{"llama3.2", "qwen3"}) {
			t.Errorf("queued models: got %v, want llama3.2 and qwen3", got)
		}
		if !slices.Contains(p.Models, "llama3.2") || !slices.Contains(p.Models, "qwen3") {
			t.Errorf("the queue by model lists %v, want llama3.2 and qwen3", p.Models)
		}
		f := p.Failures[0]
		if f.ID != "ask-missing" || !strings.Contains(f.Error, `no target may run model "no-such-model`) {
			t.Errorf("failure: got %+v, want ask-missing with the runner's message", f)
		}
	})

	t.Run("TokensArriveForARunningJob", func(t *testing.T) {
		b.until(t, "a running job with 3 tokens or more",
			`Array.from(document.querySelectorAll('[data-part="running"] .tokens')).some((e) => parseInt(e.textContent) >= 3)`)
		first := eval[pageFacts](t, b, readPage).Running
		job := first[0]
		for _, j := range first {
			if atoi(j.Tokens) > atoi(job.Tokens) {
				job = j
			}
		}
		n := atoi(job.Tokens)
		b.until(t, "more tokens for "+job.ID, fmt.Sprintf(
			`parseInt(document.querySelector('[data-tokens=%q]').textContent) >= %d && document.querySelector('[data-out=%q]').textContent.length > 0`,
			job.ID, n+3, job.ID))
		out := eval[string](t, b, fmt.Sprintf(`document.querySelector('[data-out=%q]').textContent`, job.ID))
		if strings.TrimSpace(out) == "" {
			t.Errorf("no live text for %s", job.ID)
		}
	})

	t.Run("CancelMovesAQueuedJobToFailed", func(t *testing.T) {
		const id = "ask-llama-3"
		b.until(t, id+" is queued with a cancel button", fmt.Sprintf(`document.querySelector('[data-part="queued"] [data-job=%q] button[data-action="cancel"]') !== null`, id))
		b.do(t, "click cancel", chromedp.Click(chromedp.CSS(fmt.Sprintf(`[data-part="queued"] [data-job=%q] button[data-action="cancel"]`, id))))
		b.until(t, "the page says it is canceled and lists it among the failures", fmt.Sprintf(
			`document.getElementById('flash').textContent.includes('Canceled %s') && document.querySelector('[data-part="failures"] [data-job=%q]') !== null`, id, id))
		rec := spooltest.ReadAs(t, w.sp, spool.DirFailed, id+".json", spool.ParseRecord)
		if rec.State != spool.StateFailed || rec.Error == nil || rec.Error.Kind != spool.KindCanceled {
			t.Errorf("failed/%s.json: state %s, error %+v; want failed, canceled", id, rec.State, rec.Error)
		}
		if w.sp.Exists(spool.DirNew, id+".json") {
			t.Errorf("new/%s.json is still there", id)
		}
	})

	t.Run("HoldAndReleaseAQueuedJob", func(t *testing.T) {
		const id = "ask-qwen-2"
		sel := func(part, action string) string {
			return fmt.Sprintf(`[data-part=%q] [data-job=%q] button[data-action=%q]`, part, id, action)
		}
		b.until(t, id+" is queued", fmt.Sprintf(`document.querySelector(%q) !== null`, sel("queued", "hold")))
		b.do(t, "click hold", chromedp.Click(chromedp.CSS(sel("queued", "hold"))))
		b.until(t, id+" is held", fmt.Sprintf(`document.querySelector(%q) !== null`, sel("held", "release")))
		if !w.sp.Exists(spool.DirHold, id+".json") {
			t.Errorf("after hold, no hold/%s.json", id)
		}
		b.do(t, "click release", chromedp.Click(chromedp.CSS(sel("held", "release"))))
		b.until(t, id+" is queued again", fmt.Sprintf(`document.querySelector(%q) !== null`, sel("queued", "hold")))
	})

	t.Run("PauseAndResume", func(t *testing.T) {
		b.until(t, "the pause button", `document.querySelector('#pause[data-action="pause"]') !== null`)
		b.do(t, "click pause", chromedp.Click(chromedp.ID("pause")))
		b.until(t, "paused", `document.getElementById('spool-state').textContent === 'paused' && document.getElementById('pause').dataset.action === 'resume'`)
		if !w.sp.Paused() {
			t.Error("the spool is not paused")
		}
		b.do(t, "click resume", chromedp.Click(chromedp.ID("pause")))
		b.until(t, "running", `document.getElementById('spool-state').textContent === 'running' && !document.getElementById('pause').disabled`)
		if w.sp.Paused() {
			t.Error("the spool is still paused")
		}
	})

	t.Run("ARequestWithoutTheCSRFHeaderIsRefused", func(t *testing.T) {
		status := eval[int](t, b, `fetch('pause', {method: 'POST'}).then((r) => r.status)`)
		if status != http.StatusForbidden {
			t.Errorf("POST /pause with the cookie and no CSRF header: got %d, want 403", status)
		}
		if w.sp.Paused() {
			t.Error("the spool was paused without the CSRF header")
		}
	})

	t.Run("ReadableOnAPhone", func(t *testing.T) {
		b.do(t, "a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		b.until(t, "the page laid out", `document.querySelectorAll('[data-target]').length === 2`)
		if w := eval[int](t, b, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("on a 390px wide phone the page is %dpx wide: it scrolls sideways", w)
		}
		b.do(t, "back to a desktop's screen", chromedp.EmulateReset())
	})

	b.checkConsole(t)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// TestUIScreenshot takes the README's screenshot when HOPPER_UI_SCREENSHOT
// names where to write it:
//
//	HOPPER_UI_SCREENSHOT=$PWD/docs/dashboard.png go test -run UIScreenshot ./httpfront/
func TestUIScreenshot(t *testing.T) {
	out := os.Getenv("HOPPER_UI_SCREENSHOT")
	if out == "" {
		t.Skip("set HOPPER_UI_SCREENSHOT=path.png to take the dashboard's screenshot")
	}
	chromiumPath(t)
	var jobs []string
	models := []string{"llama3.2", "qwen3", "gemma3"}
	for i := range 9 {
		jobs = append(jobs, fmt.Sprintf("warmup-%d %s", i, uiChat(models[i%3], "Say hello.", 0)))
	}
	w := startUIWorld(t, jobs, models, ollamatest.WithTokens(24),
		ollamatest.WithLoadDelay(300*time.Millisecond))
	w.settle(t, "the first jobs done", func(c spool.Counts) bool { return c.States[spool.StateDone] == 9 })

	// One job fails an attempt and waits to retry; one asks for a model no
	// target has.
	for _, f := range w.fakes {
		f.FailNext(1, 500, "")
	}
	submit := func(id, body string) {
		t.Helper()
		if _, err := w.sp.Submit([]byte(body), spool.SubmitOptions{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	submit("retry-me", uiChat("llama3.2", "Try again later.", 0))
	submit("bad-model", uiChat("llama4:400b", "Too big?", 0))
	w.settle(t, "one deferred, one failed", func(c spool.Counts) bool {
		return c.States[spool.StateDeferred] >= 1 && c.States[spool.StateFailed] >= 1
	})
	for _, f := range w.fakes {
		f.SlowTokens(400 * time.Millisecond)
	}
	for i := range 14 {
		prio := 0
		if i%4 == 0 {
			prio = 100
		}
		submit(fmt.Sprintf("night-%02d", i), uiChat(models[i%3], "Summarize this ticket.", prio))
	}
	lines := strings.Repeat(uiChat("qwen3", "Classify this review.", 0)+"\n", 6)
	if _, err := batch.New(w.sp).Submit(strings.NewReader(lines), batch.Options{Name: "reviews"}); err != nil {
		t.Fatal(err)
	}
	w.settle(t, "two running", func(c spool.Counts) bool {
		return c.States[spool.StateWorking]+c.States[spool.StateLoading] == 2
	})
	if err := w.sp.Hold("night-13"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sp.Cancel("night-12", "canceled from the dashboard"); err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t)
	b.do(t, "sign in", chromedp.Navigate(w.URL+"/ui?token="+uiToken), chromedp.EmulateViewport(1280, 900))
	b.until(t, "live tokens and charts", `document.getElementById('live').textContent === 'live' &&
		Array.from(document.querySelectorAll('[data-part="running"] .out')).every((e) => e.textContent.length > 60) &&
		document.querySelectorAll('#chart-throughput rect').length > 0`)
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
	if phone := os.Getenv("HOPPER_UI_SCREENSHOT_PHONE"); phone != "" {
		b.do(t, "a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(phone, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.checkConsole(t)
}

// BenchmarkUI100k serves the dashboard with 100,000 jobs queued: the page,
// its data, and the first snapshot of its event stream, against GET
// /healthz in the same run as the baseline. The dashboard shares a
// snapshot between requests for up to a second while no job changes, so
// most requests of the plain cases render a shared snapshot; the -cold
// cases wait that second out before each request, so each builds one
// (BenchmarkSnapshot100k in dashboard/ times the build alone).
//
//	go test -run '^$' -bench UI100k -benchtime 30x ./httpfront/
func BenchmarkUI100k(b *testing.B) {
	sp, err := spool.Init(b.TempDir(), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	const n = 100_000
	benchtest.Queue(b, sp.Path(), n)
	_, hs := serve(b, httpfront.Config{Spool: sp, Target: "http://127.0.0.1:1"})
	client := &http.Client{}
	get := func(b *testing.B, path string, until string) time.Duration {
		start := time.Now()
		resp, err := client.Get(hs.URL + path)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if until == "" {
			io.Copy(io.Discard, resp.Body)
			return time.Since(start)
		}
		rd := bufio.NewReaderSize(resp.Body, 1<<16)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				b.Fatalf("%s: no %q: %v", path, until, err)
			}
			if strings.HasPrefix(line, until) {
				return time.Since(start)
			}
		}
	}
	// Wait for the front's catalog to have read every job.
	ready := func() bool {
		return strings.Contains(string(readAll(b, client, hs.URL+"/ui/data.json")), `"ready":true`)
	}
	if !runtest.Poll(5*time.Minute, 100*time.Millisecond, ready) {
		b.Fatal("the front's catalog never finished reading the spool")
	}
	if data := readAll(b, client, hs.URL+"/ui/data.json"); !strings.Contains(string(data), fmt.Sprintf(`{"state":"queued","count":%d}`, n)) {
		b.Fatalf("the dashboard does not count %d queued: %.300s", n, data)
	}
	for _, c := range []struct {
		name, path, until string
		cold              bool
	}{
		{"baseline=healthz", "/healthz", "", false},
		{"page", "/ui", "", false},
		{"data.json", "/ui/data.json", "", false},
		{"events-first-snapshot", "/ui/events", "data: ", false},
		{"page-cold", "/ui", "", true},
		{"events-first-snapshot-cold", "/ui/events", "data: ", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var ds []time.Duration
			for b.Loop() {
				if c.cold {
					// Past the shared snapshot's second: this request
					// builds one.
					b.StopTimer()
					time.Sleep(1100 * time.Millisecond)
					b.StartTimer()
				}
				ds = append(ds, get(b, c.path, c.until))
			}
			benchtest.Latencies(b, ds, time.Nanosecond)
		})
	}
}

func readAll(b *testing.B, client *http.Client, url string) []byte {
	resp, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	return readBody(b, resp)
}
