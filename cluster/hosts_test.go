package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/cluster"
	"github.com/hopper-dev/hopper/internal/runtest"
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

// slowAnswers make each answer of a fake target take about a second: 40
// tokens, 25ms apart.
var slowAnswers = []ollamatest.Option{ollamatest.WithTokens(40), ollamatest.WithTokenDelay(25 * time.Millisecond)}

// newHosts starts three hosts on loopback, each with a fake target of two
// slots.
func newHosts(t testing.TB, opts ...ollamatest.Option) []*host {
	t.Helper()
	cfgs := threeHosts(t)
	hosts := make([]*host, len(cfgs))
	nodes := make([]*cluster.Node, len(cfgs))
	for i, c := range cfgs {
		nodes[i] = start(t, c, t.TempDir())
		hosts[i] = newHost(t, nodes[i], opts...)
	}
	provision(t, nodes...)
	for _, h := range hosts {
		h.run(t)
	}
	return hosts
}

// soloHost is a cluster of one host, provisioned, with nothing running yet.
func soloHost(t testing.TB, opts ...ollamatest.Option) *host {
	t.Helper()
	h := newHost(t, start(t, cluster.Config{Name: "solo", Node: "only"}, t.TempDir()), opts...)
	provision(t, h.node)
	return h
}

// newHost is a host on node n: a spool and a fake target of two slots
// serving the model tiny.
func newHost(t testing.TB, n *cluster.Node, opts ...ollamatest.Option) *host {
	t.Helper()
	sp, err := spool.Init(filepath.Join(t.TempDir(), "spool"), spool.Options{Fsync: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return &host{name: n.Name(), spool: sp, node: n,
		fake: ollamatest.NewServer(t, append([]ollamatest.Option{ollamatest.WithModels("tiny"), ollamatest.WithParallel(2)}, opts...)...)}
}

// run starts the host's runner and its executor (target "gpu").
func (h *host) run(t testing.TB) {
	t.Helper()
	h.runRunner(t, nil)
	h.runExecutor(t, "gpu")
}

func (h *host) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("host", h.name)
}

// runRunner starts the runner that hands the host's jobs to the cluster,
// its settings changed by configure (if not nil).
func (h *host) runRunner(t testing.TB, configure func(*runner.Config)) {
	t.Helper()
	cfg := runner.Config{
		Spool:      h.spool,
		Targets:    []runner.TargetConfig{{Name: "cluster", Target: h.node.Relay(), Parallel: 64}},
		Settle:     20 * time.Millisecond,
		RetryBase:  10 * time.Millisecond,
		RetryMax:   50 * time.Millisecond,
		OutageBase: 10 * time.Millisecond,
		OutageMax:  200 * time.Millisecond,
		Logger:     h.logger(),
	}
	if configure != nil {
		configure(&cfg)
	}
	r, err := runner.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, h.name+"'s runner", patience, r.Run)
}

// runExecutor starts an executor running the cluster's jobs on the host's
// fake target, named target; stop stops it gracefully.
func (h *host) runExecutor(t testing.TB, target string) (stop func()) {
	t.Helper()
	client := h.fake.Client()
	return runtest.Start(t, h.name+"'s executor", patience, func(ctx context.Context) error {
		return h.node.Execute(ctx, cluster.ExecConfig{
			Targets: []runner.TargetConfig{{Name: target, URL: h.fake.URL, Target: client, Parallel: 2}},
			AckWait: 2 * time.Second,
			Logger:  h.logger(),
		})
	})
}

func (h *host) submit(t testing.TB, id, prompt string) {
	t.Helper()
	body := fmt.Sprintf(`{"model":"tiny","prompt":%q,"stream":false}`, prompt)
	if _, err := h.spool.Submit([]byte(body), spool.SubmitOptions{ID: id}); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the job to land in done/ or failed/ of h's spool.
func (h *host) wait(t testing.TB, id string) *spool.Record {
	t.Helper()
	return h.until(t, id, "finish", func(r *spool.Record) bool { return r.State.Terminal() })
}

// until waits for job id's record in h's spool to satisfy ok, and returns
// it; what says what is awaited, for the failure.
func (h *host) until(t testing.TB, id, what string, ok func(*spool.Record) bool) *spool.Record {
	t.Helper()
	var r *spool.Record
	var err error
	if !runtest.Poll(patience, 10*time.Millisecond, func() bool {
		r, err = h.spool.Get(id)
		return err == nil && ok(r)
	}) {
		t.Fatalf("%s: job %s did not %s: %+v %v", h.name, id, what, r, err)
	}
	return r
}

// serving waits until h's target serves a request; what names it for the
// failure.
func (h *host) serving(t testing.TB, what string) {
	t.Helper()
	waitFor(t, what, func() bool { return h.fake.InFlight() > 0 })
}

// waitFor waits for cond, or fails the test saying what it waited for.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !runtest.Poll(patience, 10*time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
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

// served counts the requests the hosts' targets got whose body holds text.
func served(hosts []*host, text string) int {
	n := 0
	for _, h := range hosts {
		for _, r := range h.fake.Requests() {
			if strings.Contains(string(r.Body), text) {
				n++
			}
		}
	}
	return n
}

// TestCancelHoldReleaseAndRetryFromTheOrigin: the origin's verbs reach a
// job wherever it is: a job waiting in the cluster's stream is held back
// into hold/ (no host runs it) and released; a running job is canceled on
// the host that runs it; a failed job retried runs again.
func TestCancelHoldReleaseAndRetryFromTheOrigin(t *testing.T) {
	hosts := newHosts(t, slowAnswers...)
	a := hosts[0]
	// Six slots in all: eight long jobs keep every one busy for a while.
	for i := range 8 {
		a.submit(t, fmt.Sprintf("busy%d", i), fmt.Sprintf("busy %d", i))
	}
	a.submit(t, "waiting", "the waiting one")
	a.until(t, "waiting", "get handed on", func(r *spool.Record) bool {
		return r.State == spool.StateQueued && r.StartedAt != nil // handed on, not taken up
	})
	if err := a.spool.Hold("waiting"); err != nil {
		t.Fatal(err)
	}
	if r := a.until(t, "waiting", "get held", func(r *spool.Record) bool { return r.State == spool.StateHeld }); r.Attempts != 0 {
		t.Errorf("held with %d attempts, want 0", r.Attempts)
	}
	for i := range 8 {
		a.wait(t, fmt.Sprintf("busy%d", i))
	}
	// A host may have taken the job up in the instant before the hold
	// reached it: the request was then aborted, uncharged, or its answer
	// came anyway and the released job takes it without running again.
	before := served(hosts, "the waiting one")
	if before > 1 {
		t.Errorf("a host ran the held job %d times", before)
	}
	if err := a.spool.Release("waiting"); err != nil {
		t.Fatal(err)
	}
	if r := a.wait(t, "waiting"); r.State != spool.StateDone || r.Attempts != 1 || served(hosts, "the waiting one") != 1 && served(hosts, "the waiting one") != before+1 {
		t.Errorf("released: %s after %d attempts, run %d times (%d before the release)", r.State, r.Attempts, served(hosts, "the waiting one"), before)
	}

	a.submit(t, "doomed", "the doomed one")
	a.until(t, "doomed", "run", func(r *spool.Record) bool { return r.State == spool.StateWorking && r.Node != "" })
	if _, err := a.spool.Cancel("doomed", ""); err != nil {
		t.Fatal(err)
	}
	if r := a.wait(t, "doomed"); r.State != spool.StateFailed || r.Error == nil || r.Error.Kind != spool.KindCanceled {
		t.Errorf("canceled: %s %+v", r.State, r.Error)
	}
	for _, h := range hosts {
		// The host hears of the cancel a moment after the origin recorded it.
		waitFor(t, h.name+"'s target to end the canceled request", func() bool { return h.fake.InFlight() == 0 })
	}

	for _, h := range hosts {
		h.fake.FailNext(1, 400, "the target refused it")
	}
	a.submit(t, "refused", "the refused one")
	if r := a.wait(t, "refused"); r.State != spool.StateFailed || r.Error == nil || r.Error.Status != 400 {
		t.Fatalf("refused: %s %+v", r.State, r.Error)
	}
	for _, h := range hosts {
		h.fake.FailNext(0, 0, "")
	}
	if err := a.spool.Retry("refused"); err != nil {
		t.Fatal(err)
	}
	if r := a.wait(t, "refused"); r.State != spool.StateDone || len(r.History) != 1 {
		t.Errorf("retried: %s, history %+v", r.State, r.History)
	}
}
