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

// TestDottedJobIDBreaksNoOtherJob: "report." is a valid job ID
// (spool.ValidID), but its answer key a.only.report..r0.<nonce> is not a
// valid KV key. Relay.earlier fails with ErrInvalidKey, returned as an
// UnavailableError, so the runner takes the whole Relay lane down, which
// aborts every relayed job in flight (errTargetDown); the probe brings the
// lane back, the job is taken again, and so on.
func TestDottedJobIDBreaksNoOtherJob(t *testing.T) {
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
		Spool:      sp,
		Targets:    []runner.TargetConfig{{Name: "cluster", Target: n.Relay(), Parallel: 8}},
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
	runtest.Start(t, "runner", patience, r.Run)
	runtest.Start(t, "executor", patience, func(ctx context.Context) error {
		return n.Execute(ctx, cluster.ExecConfig{
			Targets: []runner.TargetConfig{{Name: "gpu", URL: fake.URL, Target: client, Parallel: 2}},
			AckWait: 2 * time.Second,
			Logger:  logger,
		})
	})
	if !spool.ValidID("report.") {
		t.Skip("report. is not a valid ID here")
	}
	if _, err := sp.Submit([]byte(`{"model":"tiny","prompt":"long one","stream":false}`), spool.SubmitOptions{ID: "long"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for fake.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the long job never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := sp.Submit([]byte(`{"model":"tiny","prompt":"dotted","stream":false}`), spool.SubmitOptions{ID: "report."}); err != nil {
		t.Fatal(err)
	}
	for {
		rec, err := sp.Get("long")
		if err == nil && rec.State.Terminal() {
			if rec.State != spool.StateDone || fake.RequestsTo("/api/generate") > 2 {
				t.Errorf("long: %s after %d attempts; the target served %d requests", rec.State, rec.Attempts, fake.RequestsTo("/api/generate"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the long job never ended (state %v, attempts %v): the job \"report.\" keeps taking the cluster lane down; target served %d requests",
				stateOf(rec), attemptsOf(rec), fake.RequestsTo("/api/generate"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		rec, err := sp.Get("report.")
		if err == nil && rec.State.Terminal() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("\"report.\" never ended: %v %v", stateOf(rec), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
