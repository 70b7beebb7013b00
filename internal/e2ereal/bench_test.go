package e2ereal_test

import (
	"testing"
	"time"

	"github.com/hopper-dev/hopper/runner"
)

// BenchmarkInterleaved30 runs 30 chat jobs that arrive interleaved over
// three models (m1, m2, m3, m1, …) on a real Ollama that holds one model at
// a time, three ways in each iteration, each starting with no model loaded:
//
//   - direct: straight to Ollama, one request at a time in arrival order,
//     as a script would send them;
//   - hopper: dropped into a spool and run by hopper's runner with the
//     default drain-by-model schedule;
//   - fifo: the same through hopper with schedule fifo (arrival order), which
//     isolates what hopper itself costs per job.
//
// It reports the loads the server logged and the makespan (first request or
// file to the last answer) of each, and the hopper/direct makespan ratio.
// Run it with
//
//	go test -run '^$' -bench Interleaved30 -benchtime 1x ./internal/e2ereal/
func BenchmarkInterleaved30(b *testing.B) {
	w := newWorld(b)
	var direct, drain, fifo batch
	n := 0
	for b.Loop() {
		d := w.runDirect(b)
		h := w.runHopper(b, runner.ScheduleDrain)
		f := w.runHopper(b, runner.ScheduleFIFO)
		for _, p := range []struct{ sum, one *batch }{{&direct, &d}, {&drain, &h}, {&fifo, &f}} {
			p.sum.loads += p.one.loads
			p.sum.makespan += p.one.makespan
		}
		n++
		b.Logf("run %d: direct %d loads %v; hopper %d loads %v; fifo %d loads %v", n,
			d.loads, d.makespan.Round(time.Millisecond), h.loads, h.makespan.Round(time.Millisecond),
			f.loads, f.makespan.Round(time.Millisecond))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(n) }
	b.ReportMetric(float64(direct.loads)/float64(n), "direct-loads")
	b.ReportMetric(float64(drain.loads)/float64(n), "hopper-loads")
	b.ReportMetric(float64(fifo.loads)/float64(n), "fifo-loads")
	b.ReportMetric(ms(direct.makespan), "direct-makespan-ms")
	b.ReportMetric(ms(drain.makespan), "hopper-makespan-ms")
	b.ReportMetric(ms(fifo.makespan), "fifo-makespan-ms")
	b.ReportMetric(float64(drain.makespan)/float64(direct.makespan), "hopper/direct")
}
