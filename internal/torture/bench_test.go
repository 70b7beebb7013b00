package torture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// The benchmarks run the hopper binary built without the race detector and
// report, beside absolute figures, ratios to a baseline measured in the
// same run. Run each alone, once:
//
//	go test -run '^$' -bench ModelSwap -benchtime 1x ./internal/torture   # about 2.5 minutes
//	go test -run '^$' -bench Scale -benchtime 1x -timeout 30m ./internal/torture

// Model swap: 300 jobs over 3 models in interleaved arrival (m1, m2, m3,
// m1, ...), a target that takes 200ms to load a model and keeps one loaded,
// and short generations.
const (
	swapJobs      = 300
	swapLoadDelay = 200 * time.Millisecond
)

func swapFake(b *testing.B) *ollamatest.Server {
	return ollamatest.NewServer(b, ollamatest.WithModels("m1", "m2", "m3"),
		ollamatest.WithMaxLoaded(1), ollamatest.WithLoadDelay(swapLoadDelay))
}

func swapJob(i int) []byte {
	return fmt.Appendf(nil, `{"model":"m%d","messages":[{"role":"user","content":"question %d"}]}`, 1+i%3, i)
}

// BenchmarkModelSwap compares hopper's drain-by-model schedule and its
// fifo schedule with sending the same requests straight to the target in
// arrival order, one at a time: model loads and makespan, each also as a
// ratio to the direct run.
func BenchmarkModelSwap(b *testing.B) {
	var direct, drain, fifo swapResult
	runs := 0
	for b.Loop() {
		direct = direct.add(swapDirect(b))
		drain = drain.add(swapHopper(b, "drain"))
		fifo = fifo.add(swapHopper(b, "fifo"))
		runs++
	}
	for _, r := range []struct {
		name string
		res  swapResult
	}{{"direct", direct}, {"drain", drain}, {"fifo", fifo}} {
		b.ReportMetric(r.res.makespan.Seconds()/float64(runs), r.name+"-makespan-s")
		b.ReportMetric(float64(r.res.loads)/float64(runs), r.name+"-loads")
		if r.name != "direct" {
			b.ReportMetric(r.res.makespan.Seconds()/direct.makespan.Seconds(), r.name+"-makespan/direct")
			b.ReportMetric(float64(r.res.loads)/float64(direct.loads), r.name+"-loads/direct")
		}
	}
}

type swapResult struct {
	makespan time.Duration
	loads    int
}

func (a swapResult) add(b swapResult) swapResult {
	return swapResult{a.makespan + b.makespan, a.loads + b.loads}
}

// swapDirect sends the jobs to a fresh fake as an Ollama client would, one
// after another.
func swapDirect(b *testing.B) swapResult {
	fake := swapFake(b)
	start := time.Now()
	for i := range swapJobs {
		body := bytes.TrimSuffix(swapJob(i), []byte("}"))
		body = append(body, `,"stream":false}`...)
		resp, err := http.Post(fake.URL+"/api/chat", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var v struct {
			Done bool `json:"done"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !v.Done {
			b.Fatalf("job %d: %d %v", i, resp.StatusCode, err)
		}
	}
	return swapResult{time.Since(start), fake.Loads()}
}

// swapHopper queues the jobs in arrival order, then starts hopper serve
// with the schedule and waits for all of them in done/. The makespan runs
// from the start of the process.
func swapHopper(b *testing.B, schedule string) swapResult {
	fake := swapFake(b)
	w := newWorld(b, false, fake, "", "HOPPER_SCHEDULE="+schedule)
	for i := range swapJobs {
		writeNew(b, w, fmt.Sprintf("job%04d.json", i), swapJob(i))
	}
	start := time.Now()
	serve := w.start(nil, "serve")
	waitFor(b, 10*time.Minute, "every job in done/", func() bool { return w.count(spool.DirDone) == swapJobs })
	makespan := time.Since(start)
	if code := serve.term(b); code != 0 {
		b.Errorf("hopper serve exited %d", code)
	}
	if n := w.count(spool.DirFailed); n != 0 {
		b.Errorf("%d jobs failed", n)
	}
	return swapResult{makespan, fake.Loads()}
}

// writeNew writes a job into new/ as rsync does: a dot-named file, renamed.
func writeNew(tb testing.TB, w *world, name string, data []byte) {
	tb.Helper()
	tmp := filepath.Join(w.spool, spool.DirNew, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(w.spool, spool.DirNew, name)); err != nil {
		tb.Fatal(err)
	}
}

// Scale: a spool with 100,000 queued jobs.
const (
	scaleQueued   = 100_000
	scaleMeasured = 500 // jobs timed for the per-job overhead
	scaleSmall    = 10  // the queue depth of the baseline
)

// BenchmarkScale starts hopper serve on 100,000 queued jobs and measures
// the time to its first claim against a bare ReadDir + Stat of new/, the
// time per job against an instant target with 100,000 queued against the
// same with 10 queued, and the peak RSS of the hopper process in both.
func BenchmarkScale(b *testing.B) {
	for b.Loop() {
		big := scaleRun(b, scaleQueued)
		small := scaleRun(b, scaleSmall)
		b.ReportMetric(big.generate.Seconds(), "generate-100k-s")
		b.ReportMetric(big.readDir.Seconds()*1e3, "readdir+stat-ms")
		b.ReportMetric(big.readAll.Seconds()*1e3, "readdir+read-ms")
		b.ReportMetric(big.firstClaim.Seconds()*1e3, "first-claim-ms")
		b.ReportMetric(big.firstClaim.Seconds()/big.readDir.Seconds(), "first-claim/readdir+stat")
		b.ReportMetric(small.firstClaim.Seconds()*1e3, "first-claim-10-ms")
		b.ReportMetric(big.perJob.Seconds()*1e3, "per-job-100k-ms")
		b.ReportMetric(small.perJob.Seconds()*1e3, "per-job-10-ms")
		b.ReportMetric(big.perJob.Seconds()/small.perJob.Seconds(), "per-job-100k/10")
		b.ReportMetric(float64(big.rss)/(1<<20), "peak-rss-100k-MiB")
		b.ReportMetric(float64(small.rss)/(1<<20), "peak-rss-10-MiB")
		b.ReportMetric(float64(big.rss)/float64(small.rss), "peak-rss-100k/10")
	}
}

type scaleResult struct {
	generate, readDir, readAll time.Duration
	firstClaim, perJob         time.Duration
	rss                        int64 // bytes
}

func scaleJob(i int) []byte {
	return fmt.Appendf(nil, `{"model":"m1","messages":[{"role":"user","content":"question %d"}]}`, i)
}

// scaleRun measures hopper with queued jobs waiting in new/. With few
// queued, a feeder moves the next job into new/ each time one lands in
// done/, so the queue stays that deep while scaleMeasured jobs run.
func scaleRun(b *testing.B, queued int) scaleResult {
	fake := ollamatest.NewServer(b, ollamatest.WithModels("m1"))
	w := newWorld(b, false, fake, "")
	newDir := filepath.Join(w.spool, spool.DirNew)
	var res scaleResult

	// The jobs: written without fsync by four writers, straight into new/
	// (the runner is not running yet), or staged for the feeder.
	total := max(queued, scaleMeasured+scaleSmall+10)
	stage := filepath.Join(w.dir, "stage")
	if err := os.Mkdir(stage, 0o750); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Go(func() {
			for i := k; i < total; i += 4 {
				dir := newDir
				if i >= queued {
					dir = stage
				}
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("q%06d.json", i)), scaleJob(i), 0o640); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	res.generate = time.Since(start)

	if queued >= scaleQueued {
		// The baselines: what listing the queue costs at the least, and
		// what reading every file (as the index needs their priority and
		// model) costs at the least.
		start = time.Now()
		entries, err := os.ReadDir(newDir)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range entries {
			if _, err := os.Lstat(filepath.Join(newDir, e.Name())); err != nil {
				b.Fatal(err)
			}
		}
		res.readDir = time.Since(start)
		start = time.Now()
		entries, _ = os.ReadDir(newDir)
		for _, e := range entries {
			if _, err := os.ReadFile(filepath.Join(newDir, e.Name())); err != nil {
				b.Fatal(err)
			}
		}
		res.readAll = time.Since(start)
		if len(entries) != queued {
			b.Fatalf("new/ holds %d files, want %d", len(entries), queued)
		}
	}

	// Watch cur/ for the first claim and done/ for the feeder.
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		b.Fatal(err)
	}
	defer watcher.Close()
	for _, d := range []string{spool.DirCur, spool.DirDone} {
		if err := watcher.Add(filepath.Join(w.spool, d)); err != nil {
			b.Fatal(err)
		}
	}
	claimed := make(chan time.Time, 1)
	feederDone := make(chan struct{})
	go func() {
		defer close(feederDone)
		next, first := queued, true
		for ev := range watcher.Events {
			dir, name := filepath.Base(filepath.Dir(ev.Name)), filepath.Base(ev.Name)
			switch {
			case dir == spool.DirCur && first && ev.Has(fsnotify.Create) && strings.HasSuffix(name, ".json"):
				claimed <- time.Now()
				first = false
			case dir == spool.DirDone && ev.Has(fsnotify.Create) && queued < scaleQueued && next < total:
				name := fmt.Sprintf("q%06d.json", next)
				if err := os.Rename(filepath.Join(stage, name), filepath.Join(newDir, name)); err != nil {
					b.Error(err)
				}
				next++
			}
		}
	}()

	start = time.Now()
	serve := w.start(nil, "serve")
	select {
	case t := <-claimed:
		res.firstClaim = t.Sub(start)
	case <-time.After(10 * time.Minute):
		b.Fatal("no claim within 10 minutes")
	}
	skip := 0
	if queued < scaleQueued {
		skip = scaleSmall // let the feeder reach its steady state
	}
	var reqs []ollamatest.Request
	waitFor(b, 10*time.Minute, fmt.Sprintf("%d jobs at the target", skip+scaleMeasured+1), func() bool {
		reqs = reqs[:0]
		for _, r := range fake.Requests() {
			if inference(r.Path) {
				reqs = append(reqs, r)
			}
		}
		return len(reqs) > skip+scaleMeasured
	})
	res.perJob = reqs[skip+scaleMeasured].Time.Sub(reqs[skip].Time) / scaleMeasured
	hwm := vmHWM(serve.cmd.Process.Pid)
	if code := serve.term(b); code != 0 {
		b.Errorf("hopper serve exited %d", code)
	}
	res.rss = max(serve.peakRSS(), hwm)
	watcher.Close()
	<-feederDone
	if n := w.count(spool.DirFailed); n != 0 {
		b.Errorf("%d jobs failed", n)
	}
	b.Logf("%d queued: generated in %v; first claim after %v; %v a job; peak RSS %.1f MiB",
		queued, res.generate.Round(time.Millisecond), res.firstClaim.Round(time.Millisecond), res.perJob.Round(time.Microsecond), float64(res.rss)/(1<<20))
	return res
}

// vmHWM reads a running process's peak resident set from /proc, in bytes
// (0 if it cannot).
func vmHWM(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
