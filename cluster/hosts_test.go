package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/cluster"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// host is one hopper host of a test cluster: its spool, its node, the
// runner that hands its jobs to the cluster and the executor that runs the
// cluster's jobs on its fake target.
type host struct {
	name  string
	spool *spool.Spool
	node  *cluster.Node
	fake  *ollamatest.Server
}

// newHosts starts three hosts on loopback, each with a fake target of two
// slots.
func newHosts(t *testing.T, opts ...ollamatest.Option) []*host {
	t.Helper()
	cfgs := threeHosts(t)
	hosts := make([]*host, len(cfgs))
	for i, c := range cfgs {
		sp, err := spool.Init(filepath.Join(t.TempDir(), "spool"), spool.Options{Fsync: false})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sp.Close() })
		hosts[i] = &host{name: c.Node, spool: sp, node: start(t, c, t.TempDir()),
			fake: ollamatest.NewServer(t, append([]ollamatest.Option{ollamatest.WithModels("tiny"), ollamatest.WithParallel(2)}, opts...)...)}
	}
	nodes := make([]*cluster.Node, len(hosts))
	for i, h := range hosts {
		nodes[i] = h.node
	}
	provision(t, nodes...)
	for _, h := range hosts {
		h.run(t)
	}
	return hosts
}

func (h *host) run(t *testing.T) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("host", h.name)
	client, err := ollama.New(h.fake.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := runner.New(runner.Config{
		Spool:      h.spool,
		Targets:    []runner.TargetConfig{{Name: "cluster", Target: h.node.Relay(), Parallel: 64}},
		Settle:     20 * time.Millisecond,
		RetryBase:  10 * time.Millisecond,
		RetryMax:   50 * time.Millisecond,
		OutageBase: 10 * time.Millisecond,
		OutageMax:  200 * time.Millisecond,
		Logger:     logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, h.name+"'s runner", patience, r.Run)
	runtest.Start(t, h.name+"'s executor", patience, func(ctx context.Context) error {
		return h.node.Execute(ctx, cluster.ExecConfig{
			Targets: []runner.TargetConfig{{Name: "gpu", URL: h.fake.URL, Target: client, Parallel: 2}},
			AckWait: 2 * time.Second,
			Logger:  logger,
		})
	})
}

func (h *host) submit(t *testing.T, id, prompt string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"tiny","prompt":%q,"stream":false}`, prompt)
	if _, err := h.spool.Submit([]byte(body), spool.SubmitOptions{ID: id}); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the job to land in done/ or failed/ of h's spool.
func (h *host) wait(t *testing.T, id string) *spool.Record {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		r, err := h.spool.Get(id)
		if err == nil && r.State.Terminal() {
			return r
		}
		if err != nil && !errors.Is(err, spool.ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: job %s did not finish: %+v %v", h.name, id, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJobsDroppedOnOneHostRunOnSeveral: jobs given to host a run on the
// targets of more than one host, each once, and land in a's done/ saying
// where they ran; jobs given to c land in c's.
func TestJobsDroppedOnOneHostRunOnSeveral(t *testing.T) {
	hosts := newHosts(t, ollamatest.WithTokenDelay(5*time.Millisecond))
	a, c := hosts[0], hosts[2]
	for i := range 60 {
		a.submit(t, fmt.Sprintf("a%02d", i), fmt.Sprintf("job %d", i))
	}
	for i := range 5 {
		c.submit(t, fmt.Sprintf("c%02d", i), fmt.Sprintf("job %d", i))
	}
	ranOn := map[string]int{}
	for i := range 60 {
		r := a.wait(t, fmt.Sprintf("a%02d", i))
		if r.State != spool.StateDone || r.Attempts != 1 || r.Node == "" || r.Target != "gpu" || len(r.Response) == 0 {
			t.Fatalf("%s: %s after %d attempts on %q/%q, response %s", r.ID, r.State, r.Attempts, r.Node, r.Target, r.Response)
		}
		ranOn[r.Node]++
	}
	if len(ranOn) < 2 {
		t.Errorf("the jobs ran on %v, want at least two hosts", ranOn)
	}
	for i := range 5 {
		if r := c.wait(t, fmt.Sprintf("c%02d", i)); r.State != spool.StateDone {
			t.Errorf("%s: %s", r.ID, r.State)
		}
	}
	served := 0
	for _, h := range hosts {
		served += h.fake.RequestsTo("/api/generate")
	}
	if served != 65 {
		t.Errorf("the targets served %d requests, want 65: each job once", served)
	}
}
