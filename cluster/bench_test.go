package cluster_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// benchJobs is how many jobs one round of BenchmarkThroughput runs; each
// takes about 100 ms on a fake target of two slots.
const benchJobs = 60

func benchTarget() []ollamatest.Option {
	return []ollamatest.Option{ollamatest.WithModels("tiny"), ollamatest.WithParallel(2),
		ollamatest.WithTokens(20), ollamatest.WithTokenDelay(5 * time.Millisecond)}
}

// oneHost is a host without a cluster: its runner's lanes drive n fake
// targets of two slots.
func oneHost(b *testing.B, n int) *host {
	b.Helper()
	sp, err := spool.Init(filepath.Join(b.TempDir(), "spool"), spool.Options{Fsync: false})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	cfg := runner.Config{Spool: sp, Settle: 20 * time.Millisecond}
	for i := range n {
		fake := ollamatest.NewServer(b, benchTarget()...)
		cfg.Targets = append(cfg.Targets, runner.TargetConfig{Name: fmt.Sprintf("gpu%d", i), URL: fake.URL, Target: fake.Client(), Parallel: 2})
	}
	r, err := runner.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	runtest.Start(b, "the runner", patience, r.Run)
	return &host{name: "solo", spool: sp}
}

// BenchmarkThroughput measures jobs/s through one host with one target,
// one host with three targets (hopper's lanes), and three hosts with one
// target each, all jobs dropped on one host (the cluster). The last two
// have the same capacity: their ratio is what the cluster costs; the first
// is what a second and third GPU box add.
func BenchmarkThroughput(b *testing.B) {
	measure := func(b *testing.B, h *host) {
		b.Helper()
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			for j := range benchJobs {
				h.submit(b, fmt.Sprintf("r%dj%02d", i, j), fmt.Sprintf("job %d", j))
			}
			for j := range benchJobs {
				if r := h.wait(b, fmt.Sprintf("r%dj%02d", i, j)); r.State != spool.StateDone {
					b.Fatalf("%s: %s", r.ID, r.State)
				}
			}
		}
		b.ReportMetric(float64(benchJobs*b.N)/time.Since(start).Seconds(), "jobs/s")
	}
	b.Run("OneHostOneTarget", func(b *testing.B) { measure(b, oneHost(b, 1)) })
	b.Run("OneHostThreeTargets", func(b *testing.B) { measure(b, oneHost(b, 3)) })
	b.Run("ThreeHosts", func(b *testing.B) { measure(b, newHosts(b, benchTarget()[2:]...)[0]) }) // newHosts gives the model and slots
}
