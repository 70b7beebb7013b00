package e2ereal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/internal/realollama"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// patience bounds every wait on the server or on hopper.
const patience = 2 * time.Minute

// models are the three models of every world; each has its own seed, so
// each is a different model with its own runner.
var models = []string{"m1", "m2", "m3"}

// longPrompts are prompts that the seed-1 model m1 answers at length at
// temperature 0 (2000 tokens, about two seconds) instead of soon ending with
// its end-of-text token. The first is enough on the machines tried; the
// others are there in case another CPU's arithmetic ends the first early.
var longPrompts = []string{"x", "job", "queue"}

// world is a real Ollama with the three models, behind a recording proxy.
type world struct {
	srv   *realollama.Server
	proxy *recorder
}

func newWorld(tb testing.TB) *world {
	tb.Helper()
	start := time.Now()
	srv := realollama.Start(tb, realollama.WithMaxLoadedModels(1))
	for i, m := range models {
		srv.CreateModel(tb, m, int64(i+1))
	}
	tb.Logf("ollama %s up with %v in %v", realollama.Version, models, time.Since(start).Round(time.Millisecond))
	return &world{srv: srv, proxy: newRecorder(tb, srv.URL)}
}

// loads is how many times the server has loaded a model: Ollama logs
// "loading model" once per load.
func (w *world) loads(tb testing.TB) int {
	tb.Helper()
	data, err := os.ReadFile(w.srv.Log)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Count(data, []byte(`msg="loading model"`))
}

// call sends a JSON request straight to the server.
func (w *world) call(tb testing.TB, path string, body any) (int, []byte) {
	tb.Helper()
	code, _, out := runtest.Call(tb, patience, http.MethodPost, w.srv.URL+path, body)
	return code, out
}

// resident lists the models /api/ps shows.
func (w *world) resident(tb testing.TB) []string {
	tb.Helper()
	c, ctx := client(tb, w.srv.URL)
	running, err := c.Running(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	names := []string{}
	for _, m := range running {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// installed lists the models the server at url has (/api/tags).
func installed(tb testing.TB, url string) []ollama.Model {
	tb.Helper()
	c, ctx := client(tb, url)
	models, err := c.Tags(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return models
}

// newClient is hopper's client of the server at url.

// client is hopper's client of the server at url, and a context that ends
// after patience or with the test.
func client(tb testing.TB, url string) (*ollama.Client, context.Context) {
	tb.Helper()
	return ollamatest.Client(tb, url), patient(tb)
}

// patient is a context that ends after patience or with the test.
func patient(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	tb.Cleanup(cancel)
	return ctx
}

// unloadAll unloads every model and waits until /api/ps is empty, so that a
// test starts cold.
func (w *world) unloadAll(tb testing.TB) {
	tb.Helper()
	for _, m := range w.resident(tb) {
		if code, body := w.call(tb, "/api/generate", map[string]any{"model": m, "keep_alive": 0}); code != http.StatusOK {
			tb.Fatalf("unload %s: %d %s", m, code, body)
		}
	}
	eventually(tb, "no model to be resident", func() bool { return len(w.resident(tb)) == 0 })
}

// recorder is a reverse proxy that keeps every request it forwards.
type recorder struct {
	URL  string
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, Path string
	Body         []byte
}

func newRecorder(tb testing.TB, target string) *recorder {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	r := &recorder{}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		FlushInterval: -1, // pass stream chunks on at once
		ErrorLog:      slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{req.Method, req.URL.Path, body})
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, req)
	})}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	r.URL = "http://" + ln.Addr().String()
	return r
}

// requests returns the recorded requests for path.
func (r *recorder) requests(path string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, q := range r.reqs {
		if q.Path == path {
			out = append(out, q)
		}
	}
	return out
}

// hopper is a spool with a runner (and optionally the HTTP front) running in
// process against the world's proxy.
type hopper struct {
	tb    testing.TB
	w     *world
	spool *spool.Spool
	cfg   runner.Config
	stop  func() // stops the runner; safe to call twice
}

func (w *world) hopper(tb testing.TB, configure func(*runner.Config)) *hopper {
	tb.Helper()
	cfg := runnerConfig(tb)
	cfg.Target, cfg.TargetName = ollamatest.Client(tb, w.proxy.URL), w.srv.URL
	if configure != nil {
		configure(&cfg)
	}
	return &hopper{tb: tb, w: w, spool: cfg.Spool, cfg: cfg}
}

// startHopper starts a world and a hopper on it with the defaults, running
// until the test ends.
func startHopper(t *testing.T) *hopper {
	t.Helper()
	h := newWorld(t).hopper(t, nil)
	h.start()
	return h
}

// runnerConfig is a runner on a fresh spool, with the short waits these
// tests use and its log in the test's output; the spool closes when the
// test ends.
func runnerConfig(tb testing.TB) runner.Config {
	tb.Helper()
	s, err := spool.Init(filepath.Join(tb.TempDir(), "spool"), spool.Options{Fsync: false})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return runner.Config{
		Spool:      s,
		Settle:     50 * time.Millisecond,
		RetryBase:  50 * time.Millisecond,
		RetryMax:   200 * time.Millisecond,
		OutageBase: 50 * time.Millisecond,
		OutageMax:  200 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(output(tb), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// output is where hopper's logs go: the test's output, shown on failure or
// with -v. Benchmarks keep them out of the numbers' way.
func output(tb testing.TB) io.Writer {
	if _, bench := tb.(*testing.B); bench {
		return io.Discard
	}
	return tb.Output()
}

// start runs the runner until stop or the end of the test.
func (h *hopper) start() {
	h.tb.Helper()
	r, err := runner.New(h.cfg)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.stop = runtest.Start(h.tb, "the runner", patience, r.Run)
}

// front starts the HTTP front on the spool and returns its base URL. It
// proxies the read-only endpoints straight to the server.
func (h *hopper) front() string {
	h.tb.Helper()
	f, err := httpfront.New(httpfront.Config{
		Spool:  h.spool,
		Target: h.w.proxy.URL,
		Logger: slog.New(slog.NewTextHandler(output(h.tb), nil)),
	})
	if err != nil {
		h.tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.tb.Fatal(err)
	}
	runtest.Start(h.tb, "the front", patience, func(ctx context.Context) error { return f.Serve(ctx, ln) })
	return "http://" + ln.Addr().String()
}

// drop writes a job file the way rsync does: a dot-named temp file, then a
// rename into new/. The name is the job's ID.
func (h *hopper) drop(name string, job any) {
	h.tb.Helper()
	data, err := json.Marshal(job)
	if err != nil {
		h.tb.Fatal(err)
	}
	if err := spool.WriteFileAtomic(filepath.Join(h.spool.Path(), spool.DirNew, name+".json"), data, 0o640); err != nil {
		h.tb.Fatal(err)
	}
}

// wait returns job id's final record.
func (h *hopper) wait(id string) *spool.Record {
	h.tb.Helper()
	r, err := h.spool.Wait(patient(h.tb), id)
	if err != nil {
		h.tb.Fatalf("wait for %s: %v", id, err)
	}
	return r
}

// eventually polls cond until it holds, failing the test after patience.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	// Polling files and the server: nothing to wait on.
	if !runtest.Poll(patience, 10*time.Millisecond, cond) {
		tb.Fatalf("timed out waiting for %s", what)
	}
}

// decodeResponse is what the tests read from a record's response.
func decodeResponse(tb testing.TB, r *spool.Record) realollama.Answer {
	tb.Helper()
	return runtest.Decode[realollama.Answer](tb, r.Response)
}

func chatJob(model, text string, extra ...any) map[string]any {
	job := map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": text}}}
	for i := 0; i+1 < len(extra); i += 2 {
		job[extra[i].(string)] = extra[i+1]
	}
	return job
}

func describe(r *spool.Record) string {
	if r.Error != nil {
		return fmt.Sprintf("%s %s (%s: %s)", r.ID, r.State, r.Error.Kind, r.Error.Message)
	}
	return fmt.Sprintf("%s %s", r.ID, r.State)
}
