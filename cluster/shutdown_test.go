package cluster_test

import (
	"context"
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

// TestStoppedExecutorChargesNoAttempt: a host whose executor stops
// (hopper shuts down gracefully) while it runs a job hands the job back
// (Nak) and another executor runs it. On one host a shutdown uncharges the
// attempt ("not the job's fault"); on the cluster the second delivery makes
// answer.Deliveries 2, so RelayResult.Lost is 1 and the origin charges an
// attempt the job never lost to a crash.
func TestStoppedExecutorChargesNoAttempt(t *testing.T) {
	n := start(t, cluster.Config{Name: "solo", Node: "only"}, t.TempDir())
	provision(t, n)
	fake := ollamatest.NewServer(t, ollamatest.WithModels("tiny"), ollamatest.WithParallel(2),
		ollamatest.WithTokens(40), ollamatest.WithTokenDelay(25*time.Millisecond))
	sp, err := spool.Init(filepath.Join(t.TempDir(), "spool"), spool.Options{Fsync: false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	client, err := ollama.New(fake.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := runner.New(runner.Config{
		Spool:       sp,
		Targets:     []runner.TargetConfig{{Name: "cluster", Target: n.Relay(), Parallel: 8}},
		MaxAttempts: 3,
		Settle:      20 * time.Millisecond,
		RetryBase:   10 * time.Millisecond,
		RetryMax:    50 * time.Millisecond,
		OutageBase:  10 * time.Millisecond,
		OutageMax:   200 * time.Millisecond,
		Logger:      logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, "runner", patience, r.Run)
	exec := func(name string) func() {
		return runtest.Start(t, name, patience, func(ctx context.Context) error {
			return n.Execute(ctx, cluster.ExecConfig{
				Targets: []runner.TargetConfig{{Name: name, URL: fake.URL, Target: client, Parallel: 2}},
				AckWait: 2 * time.Second,
				Logger:  logger,
			})
		})
	}
	stopFirst := exec("first")
	if _, err := sp.Submit([]byte(`{"model":"tiny","prompt":"long one","stream":false}`), spool.SubmitOptions{ID: "j1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(patience)
	for fake.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the job never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopFirst() // a graceful stop of the host that runs it
	exec("second")
	for {
		rec, err := sp.Get("j1")
		if err == nil && rec.State.Terminal() {
			if rec.State != spool.StateDone || rec.Attempts != 1 {
				t.Errorf("ended %s on %q after %d attempts, want done after 1 (a graceful stop is not the job's fault); the target served %d requests",
					rec.State, rec.Target, rec.Attempts, fake.RequestsTo("/api/generate"))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never ended: %+v %v", rec, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
