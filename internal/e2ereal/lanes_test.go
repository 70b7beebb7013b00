package e2ereal_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/realollama"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// slotServer starts a real Ollama with `slots` parallel request slots
// (OLLAMA_NUM_PARALLEL) and the project's tiny models.
func slotServer(tb testing.TB, slots int, names ...string) *realollama.Server {
	tb.Helper()
	srv := realollama.Start(tb, realollama.WithMaxLoadedModels(1), realollama.WithEnv(fmt.Sprintf("OLLAMA_NUM_PARALLEL=%d", slots)))
	for i, m := range names {
		srv.CreateModel(tb, m, int64(i+1))
	}
	return srv
}

// lanesHopper is a runner on a fresh spool driving each server through a
// lane of `slots` slots.
func lanesHopper(tb testing.TB, slots int, servers ...*realollama.Server) *hopper {
	tb.Helper()
	cfg := runnerConfig(tb)
	for i, srv := range servers {
		cfg.Targets = append(cfg.Targets, runner.TargetConfig{Name: fmt.Sprintf("gpu%d", i+1), URL: srv.URL, Target: ollamatest.Client(tb, srv.URL), Parallel: slots})
	}
	return &hopper{tb: tb, spool: cfg.Spool, cfg: cfg}
}

// TestLanesOnRealOllama: two real servers with OLLAMA_NUM_PARALLEL=2 and two
// models, a lane of two slots on each: every job is answered once, both
// servers work, each record names its target and the digest the server
// reports for the model.
func TestLanesOnRealOllama(t *testing.T) {
	a, b := slotServer(t, 2, "m1", "m2"), slotServer(t, 2, "m1", "m2")
	h := lanesHopper(t, 2, a, b)
	var ids []string
	for i := range 16 {
		id := fmt.Sprintf("j%02d", i)
		h.drop(id, chatJob(models[i%2], fmt.Sprintf("question %d", i), "options", map[string]any{"num_predict": 8}))
		ids = append(ids, id)
	}
	h.start()
	digests := map[string]string{} // target/model → digest from /api/tags
	for _, srv := range []*realollama.Server{a, b} {
		for _, m := range installed(t, srv.URL) {
			digests[srv.URL+"/"+ollama.NormalizeModel(m.Name)] = m.Digest
		}
	}
	used := map[string]int{}
	for _, id := range ids {
		r := h.wait(id)
		if r.State != spool.StateDone || r.Attempts != 1 {
			t.Fatalf("%s: %s", id, describe(r))
		}
		used[r.Target]++
		url := a.URL
		if r.Target == "gpu2" {
			url = b.URL
		}
		if want := digests[url+"/"+ollama.NormalizeModel(r.Model)]; r.ModelDigest == "" || r.ModelDigest != want {
			t.Errorf("%s ran %s on %s: digest %q, want %q as /api/tags says", id, r.Model, r.Target, r.ModelDigest, want)
		}
	}
	if len(used) != 2 {
		t.Errorf("jobs ran on %v, want both targets", used)
	}
}

// BenchmarkParallelSlots: 32 jobs for one model on a real Ollama with
// OLLAMA_NUM_PARALLEL=4 — one client and four clients sent straight to the
// server (the baselines; four is xargs -P4), hopper with parallel: 4, and
// hopper with one slot — reported as makespans and ratios measured in the
// same run. direct4/direct1 says how much the server itself gains from
// parallel requests on this machine: hopper4/hopper1 cannot beat it.
//
//	go test -run '^$' -bench ParallelSlots -benchtime 1x ./internal/e2ereal/
func BenchmarkParallelSlots(b *testing.B) {
	srv := slotServer(b, 4, "m1")
	const jobs = 32
	job := func(i int) map[string]any {
		return chatJob("m1", fmt.Sprintf("question %d", i), "options", map[string]any{"num_predict": 48})
	}
	// Load the model once, so no run pays for it.
	w := &world{srv: srv}
	w.call(b, "/api/chat", job(-1))
	var direct, direct1, four, one time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		for i := range jobs {
			w.call(b, "/api/chat", job(i))
		}
		direct1 += time.Since(start)
		start = time.Now()
		var wg sync.WaitGroup
		next := make(chan int)
		for range 4 {
			wg.Go(func() {
				for i := range next {
					w.call(b, "/api/chat", job(i))
				}
			})
		}
		for i := range jobs {
			next <- i
		}
		close(next)
		wg.Wait()
		direct += time.Since(start)
		for _, slots := range []int{4, 1} {
			h := lanesHopper(b, slots, srv)
			var ids []string
			for i := range jobs {
				id := fmt.Sprintf("s%d-%02d", slots, i)
				h.drop(id, job(i))
				ids = append(ids, id)
			}
			start := time.Now()
			h.start()
			for _, id := range ids {
				if r := h.wait(id); r.State != spool.StateDone {
					b.Fatalf("%s: %s", id, describe(r))
				}
			}
			took := time.Since(start)
			h.stop()
			if slots == 4 {
				four += took
			} else {
				one += took
			}
		}
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(n) }
	b.ReportMetric(ms(direct1), "direct1-ms")
	b.ReportMetric(ms(direct), "direct4-ms")
	b.ReportMetric(ms(four), "hopper4-ms")
	b.ReportMetric(ms(one), "hopper1-ms")
	b.ReportMetric(float64(four)/float64(direct), "hopper4/direct4")
	b.ReportMetric(float64(four)/float64(one), "hopper4/hopper1")
	b.ReportMetric(float64(direct)/float64(direct1), "direct4/direct1")
}
