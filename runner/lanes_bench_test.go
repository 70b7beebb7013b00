package runner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// BenchmarkLanes: 180 jobs interleaved over 6 models, each fake target
// holding one model at a time (a GPU that fits one), with a load delay and
// a token delay. The baseline is the same jobs through one target with one
// slot — hopper before lanes — measured in the same run; then one target
// with two slots, and three targets with two slots each. Reported: the
// makespan of each, the loads, and the ratios to the baseline (the issue
// asks three lanes of two for at most 0.4× the baseline).
//
//	go test -run '^$' -bench Lanes -benchtime 1x ./runner/
func BenchmarkLanes(b *testing.B) {
	models := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
	const jobs = 180
	run := func(b *testing.B, targets, slots int) (time.Duration, int) {
		s := newSpool(b, b.TempDir(), spool.Options{Fsync: false})
		cfg := runner.Config{Spool: s, Settle: 50 * time.Millisecond}
		var fakes []*ollamatest.Server
		for i := range targets {
			f := ollamatest.NewServer(b, ollamatest.WithModels(models...), ollamatest.WithMaxLoaded(1),
				ollamatest.WithParallel(slots), ollamatest.WithLoadDelay(50*time.Millisecond), ollamatest.WithTokenDelay(2*time.Millisecond))
			fakes = append(fakes, f)
			cfg.Targets = append(cfg.Targets, runner.TargetConfig{Name: fmt.Sprintf("t%d", i), URL: f.URL, Target: f.Client(), Parallel: slots})
		}
		for i := range jobs {
			id := fmt.Sprintf("j%03d", i)
			body := chat(models[i%len(models)], "a question of six words here")
			if _, err := s.Submit([]byte(body), spool.SubmitOptions{ID: id}); err != nil {
				b.Fatal(err)
			}
		}
		r, err := runner.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		fin := watchFinished(b, s.Path())
		start := time.Now()
		go func() { ran <- r.Run(ctx) }()
		fin.wait(b, jobs)
		took := time.Since(start)
		cancel()
		if err := <-ran; err != nil {
			b.Fatal(err)
		}
		loads := 0
		for _, f := range fakes {
			loads += f.Loads()
			if f.MaxModelsInFlight() > 1 || f.MaxInFlight() > slots {
				b.Fatalf("a target had %d models and %d requests in flight", f.MaxModelsInFlight(), f.MaxInFlight())
			}
		}
		return took, loads
	}
	var base, two, three time.Duration
	var baseLoads, twoLoads, threeLoads int
	for b.Loop() {
		d, l := run(b, 1, 1)
		base, baseLoads = base+d, baseLoads+l
		d, l = run(b, 1, 2)
		two, twoLoads = two+d, twoLoads+l
		d, l = run(b, 3, 2)
		three, threeLoads = three+d, threeLoads+l
	}
	n := float64(b.N)
	b.ReportMetric(base.Seconds()*1e3/n, "1x1-ms")
	b.ReportMetric(two.Seconds()*1e3/n, "1x2-ms")
	b.ReportMetric(three.Seconds()*1e3/n, "3x2-ms")
	b.ReportMetric(float64(baseLoads)/n, "1x1-loads")
	b.ReportMetric(float64(twoLoads)/n, "1x2-loads")
	b.ReportMetric(float64(threeLoads)/n, "3x2-loads")
	b.ReportMetric(float64(two)/float64(base), "1x2/1x1")
	b.ReportMetric(float64(three)/float64(base), "3x2/1x1")
}
