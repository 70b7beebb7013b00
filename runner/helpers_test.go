package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// harness runs a Runner on a spool under t.TempDir() against a fake Ollama.
type harness struct {
	t    *testing.T
	s    *spool.Spool
	fake *ollamatest.Server
	stop context.CancelFunc
	done chan error
	cfg  runner.Config
}

func newHarness(t *testing.T, configure func(*runner.Config), opts ...ollamatest.Option) *harness {
	t.Helper()
	opts = append([]ollamatest.Option{ollamatest.WithModels("m1", "m2", "m3")}, opts...)
	fake := ollamatest.NewServer(t, opts...)
	cfg := testConfig(t)
	cfg.Target, cfg.TargetName = fake.Client(), fake.URL
	if configure != nil {
		configure(&cfg)
	}
	return &harness{t: t, s: cfg.Spool, fake: fake, cfg: cfg}
}

// lanesHarness is a runner driving several fake targets.
type lanesHarness struct {
	*harness
	fakes map[string]*ollamatest.Server
}

// newLanes starts one fake per name with opts, and a runner with one lane
// of `parallel` slots on each.
func newLanes(t *testing.T, names []string, parallel int, configure func(*runner.Config), opts func(name string) []ollamatest.Option) *lanesHarness {
	t.Helper()
	cfg := testConfig(t)
	lh := &lanesHarness{fakes: map[string]*ollamatest.Server{}}
	for _, name := range names {
		fake := ollamatest.NewServer(t, opts(name)...)
		lh.fakes[name] = fake
		cfg.Targets = append(cfg.Targets, runner.TargetConfig{Name: name, URL: fake.URL, Target: fake.Client(), Parallel: parallel})
	}
	if configure != nil {
		configure(&cfg)
	}
	lh.harness = &harness{t: t, s: cfg.Spool, cfg: cfg}
	return lh
}

// untagged hides a client's Tags, so its lane does not know what the
// target has installed until the target says "not found".
type untagged struct{ runner.Target }

// newSpool makes a spool under dir with options o; it closes when the test
// ends.
func newSpool(tb testing.TB, dir string, o spool.Options) *spool.Spool {
	tb.Helper()
	s, err := spool.Init(filepath.Join(dir, "spool"), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// testConfig is a runner on a fresh spool with the short waits of these
// tests; the spool closes when the test ends.
func testConfig(t *testing.T) runner.Config {
	t.Helper()
	return runner.Config{
		Spool:      newSpool(t, t.TempDir(), spool.Options{Fsync: false}),
		Settle:     50 * time.Millisecond,
		RetryBase:  10 * time.Millisecond,
		RetryMax:   50 * time.Millisecond,
		OutageBase: 10 * time.Millisecond,
		OutageMax:  50 * time.Millisecond,
	}
}

// start runs the runner until the test ends.
func (h *harness) start() {
	h.t.Helper()
	r, err := runner.New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- r.Run(ctx) }()
	h.t.Cleanup(h.shutdown)
}

// shutdown stops the runner and waits for it; safe to call twice.
func (h *harness) shutdown() {
	if h.stop == nil {
		return
	}
	h.stop()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		h.t.Error("the runner did not stop within 30s")
	}
	h.stop = nil
}

// drop writes a job file into new/ the way rsync does: a dot-named temp file,
// then a rename.
func (h *harness) drop(name, body string) {
	h.t.Helper()
	if err := spool.WriteFileAtomic(h.path(spool.DirNew, name+".json"), []byte(body), 0o640); err != nil {
		h.t.Fatal(err)
	}
}

// path joins elem to the spool's directory.
func (h *harness) path(elem ...string) string {
	return filepath.Join(append([]string{h.s.Path()}, elem...)...)
}

// wait returns job id's final record.
func (h *harness) wait(id string) *spool.Record {
	h.t.Helper()
	r, err := waitFor(h.s, id, 30*time.Second)
	if err != nil {
		h.t.Fatalf("wait for %s: %v", id, err)
	}
	return r
}

// waitFor returns job id's final record, or the error of waiting for it
// for d.
func waitFor(s *spool.Spool, id string, d time.Duration) (*spool.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Wait(ctx, id)
}

// wantBadInput drops job as id and checks that it fails as bad input, its
// error naming mention; it returns the record.
func (h *harness) wantBadInput(id, job, mention string) *spool.Record {
	h.t.Helper()
	h.drop(id, job)
	r := h.wait(id)
	if r.State != spool.StateFailed || r.Error == nil || r.Error.Kind != spool.KindBadInput || !strings.Contains(r.Error.Message, mention) {
		h.t.Errorf("%s: got %s, error %+v; want failed as bad input naming %s", id, r.State, r.Error, mention)
	}
	return r
}

// eventually polls cond until it holds or 30s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !runtest.Poll(30*time.Second, 5*time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func content(t *testing.T, r *spool.Record) string {
	t.Helper()
	var resp struct {
		Message struct{ Content string } `json:"message"`
	}
	if err := json.Unmarshal(r.Response, &resp); err != nil {
		t.Fatalf("response of %s: %v (%s)", r.ID, err, r.Response)
	}
	return resp.Message.Content
}

func chat(model, text string) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}]}`, model, text)
}
