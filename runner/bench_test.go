package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/hopper-dev/hopper/internal/benchtest"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// The benchmarks run a real Runner beside a baseline measured in the same
// run: a loop of the bare steps a job cannot avoid, on a spool of the same
// layout and with no hopper code — claim by renaming new→cur, read the job,
// send the same request to the same kind of target, write the record (staged
// as a dot-file in cur/, renamed over cur/ID.json) and rename it into done/, with the same
// fsyncs as hopper when fsync is on (the record, cur/, done/). The ratio of
// the two is what the runner adds: the residency checks, the intermediate
// record rewrite, cur/ID.out, the watcher, the scheduling.
//
// Every sub-benchmark queues b.N jobs before it starts the clock, so the
// queue is full from the first job to the last. Spools live under
// b.TempDir(), or under $HOPPER_BENCH_DIR when set, to measure on a given
// filesystem: the fsync=on numbers are the disk's more than hopper's.
//
//	go test -run='^$' -bench=. -benchtime=200x ./runner/

const benchModel = "m1"

// BenchmarkThroughput: jobs per second through a Runner with the queue full,
// against the baseline loop, for an instant in-process target (hopper's own
// cost) and for the fake Ollama over HTTP with no token or load delay and
// the model resident (the client's cost too).
func BenchmarkThroughput(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		for _, tg := range benchTargets {
			prefix := benchtest.FsyncName(fsync) + "/target=" + tg.name + "/"
			var baseline float64 // jobs/s of the baseline's last run
			b.Run(prefix+"baseline", func(b *testing.B) {
				s := benchSpool(b, fsync)
				target := tg.new(b)
				benchtest.Quiesce(b)
				runBaseline(b, s.Path(), fsync, target)
				b.StopTimer()
				baseline = float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(baseline, "jobs/s")
			})
			b.Run(prefix+"hopper", func(b *testing.B) {
				s := benchSpool(b, fsync)
				target := tg.new(b)
				runHopper(b, s, target)
				rate := float64(b.N) / b.Elapsed().Seconds()
				b.ReportMetric(rate, "jobs/s")
				if baseline > 0 {
					b.ReportMetric(rate/baseline, "hopper/baseline")
				}
			})
		}
	}
}

// BenchmarkIdleGap: how long the target sits idle between two jobs while
// the queue is full — from the end of one request (the instant target's Do
// returning its final chunk) to the start of the next — as the median and
// the 99th percentile over the run.
func BenchmarkIdleGap(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		var baseline float64 // median gap of the baseline's last run, ns
		b.Run(benchtest.FsyncName(fsync)+"/baseline", func(b *testing.B) {
			s := benchSpool(b, fsync)
			target := newInstantTarget(b.N)
			benchtest.Quiesce(b)
			runBaseline(b, s.Path(), fsync, target)
			b.StopTimer()
			if p50, ok := reportGaps(b, target); ok {
				baseline = p50
			}
		})
		b.Run(benchtest.FsyncName(fsync)+"/hopper", func(b *testing.B) {
			s := benchSpool(b, fsync)
			target := newInstantTarget(b.N)
			runHopper(b, s, target)
			if p50, ok := reportGaps(b, target); ok && baseline > 0 {
				b.ReportMetric(p50/baseline, "p50-hopper/baseline")
			}
		})
	}
}

// reportGaps reports the median and p99 of the idle gaps the target saw and
// returns the median; ok is false when there was no gap (b.N of 1).
func reportGaps(b *testing.B, t *instantTarget) (p50 float64, ok bool) {
	b.Helper()
	gaps := t.gaps()
	if len(gaps) == 0 {
		return 0, false
	}
	slices.Sort(gaps)
	p50 = float64(gaps[len(gaps)/2])
	if len(gaps)%2 == 0 {
		p50 = float64(gaps[len(gaps)/2-1]+gaps[len(gaps)/2]) / 2
	}
	p99 := gaps[max((len(gaps)*99+99)/100-1, 0)] // nearest rank
	b.ReportMetric(p50, "p50-gap-ns")
	b.ReportMetric(float64(p99), "p99-gap-ns")
	return p50, true
}

// benchTargets are the targets BenchmarkThroughput runs against.
var benchTargets = []struct {
	name string
	new  func(b *testing.B) runner.Target
}{
	{"instant", func(b *testing.B) runner.Target { return newInstantTarget(b.N) }},
	{"fake", fakeTarget},
}

// fakeTarget starts a fake Ollama with no token or load delay and loads
// benchModel into it for good, so that every job finds it resident.
func fakeTarget(b *testing.B) runner.Target {
	b.Helper()
	fake := ollamatest.NewServer(b, ollamatest.WithModels(benchModel))
	client := fake.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	load := fmt.Sprintf(`{"model":%q,"keep_alive":-1}`, benchModel) // no messages: load only
	if _, err := client.Do(ctx, "/api/chat", []byte(load), nil); err != nil {
		b.Fatalf("load %s: %v", benchModel, err)
	}
	return client
}

// instantTarget is a runner.Target that answers every request at once with
// one final chunk and always has benchModel resident. It records when each
// request started and ended; requests must come one at a time.
type instantTarget struct {
	mu     sync.Mutex
	starts []time.Time
	ends   []time.Time
}

var (
	instantAnswer = json.RawMessage(`{"model":"` + benchModel + `","created_at":"2026-01-01T00:00:00Z",` +
		`"message":{"role":"assistant","content":"ok"},"done":true,"done_reason":"stop",` +
		`"total_duration":1000,"load_duration":0,"prompt_eval_count":1,"eval_count":1}`)
	instantResident = []ollama.RunningModel{{Name: benchModel + ":latest", Model: benchModel + ":latest"}}
)

func newInstantTarget(n int) *instantTarget {
	return &instantTarget{starts: make([]time.Time, 0, n), ends: make([]time.Time, 0, n)}
}

func (t *instantTarget) Do(ctx context.Context, path string, body []byte, onChunk func([]byte) error) (json.RawMessage, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if onChunk != nil {
		if err := onChunk(instantAnswer); err != nil {
			return nil, err
		}
	}
	end := time.Now()
	t.mu.Lock()
	t.starts = append(t.starts, start)
	t.ends = append(t.ends, end)
	t.mu.Unlock()
	return instantAnswer, nil
}

func (t *instantTarget) Running(context.Context) ([]ollama.RunningModel, error) {
	return instantResident, nil
}

func (t *instantTarget) Version(context.Context) (string, error) { return ollamatest.Version, nil }

func (t *instantTarget) requests() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.starts)
}

// gaps returns, for each request but the first, the time from the end of
// the one before to its start.
func (t *instantTarget) gaps() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var gaps []time.Duration
	for i := 1; i < len(t.starts); i++ {
		gaps = append(gaps, t.starts[i].Sub(t.ends[i-1]))
	}
	return gaps
}

// benchSpool makes a spool under $HOPPER_BENCH_DIR or b.TempDir() and queues
// b.N chat jobs in new/ (staged in tmp/ and renamed, as a submit does).
func benchSpool(b *testing.B, fsync bool) *spool.Spool {
	b.Helper()
	o := spool.DefaultOptions()
	o.Fsync = fsync
	s := newSpool(b, benchtest.Dir(b), o)
	for i := range b.N {
		name := fmt.Sprintf("j%07d.json", i)
		benchtest.Stage(b, filepath.Join(s.Path(), spool.DirTmp, "."+name), filepath.Join(s.Path(), spool.DirNew, name),
			[]byte(chat(benchModel, "job "+strconv.Itoa(i))), false, nil)
	}
	return s
}

// runHopper times a Runner on s from its start until all b.N queued jobs
// are in done/; the timer is stopped when it returns.
func runHopper(b *testing.B, s *spool.Spool, target runner.Target) {
	b.Helper()
	fin := watchFinished(b, s.Path())
	r, err := runner.New(runner.Config{Spool: s, Target: target, TargetName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	benchtest.Quiesce(b)
	stop := runtest.Start(b, "the runner", 30*time.Second, r.Run)
	fin.wait(b, b.N)
	b.StopTimer()
	stop()

	if t, ok := target.(*instantTarget); ok && t.requests() != b.N {
		b.Fatalf("the target got %d requests for %d jobs, want one each", t.requests(), b.N)
	}
}

// finishLine counts records arriving in a spool's done/ and fails the
// benchmark on any arriving in failed/. It works from the files alone, as
// a user's script would.
type finishLine struct {
	w    *fsnotify.Watcher
	done string
}

func watchFinished(b *testing.B, path string) *finishLine {
	b.Helper()
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	f := &finishLine{w: w, done: filepath.Join(path, spool.DirDone)}
	for _, d := range []string{spool.DirDone, spool.DirFailed} {
		if err := w.Add(filepath.Join(path, d)); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

// wait returns once n records are in done/.
func (f *finishLine) wait(b *testing.B, n int) {
	b.Helper()
	timeout := time.NewTimer(2 * time.Minute)
	defer timeout.Stop()
	seen := 0
	for seen < n {
		select {
		case ev := <-f.w.Events:
			if !ev.Has(fsnotify.Create) {
				continue
			}
			if filepath.Dir(ev.Name) != f.done {
				data, _ := os.ReadFile(ev.Name)
				b.Fatalf("a job failed: %s", data)
			}
			seen++
		case err := <-f.w.Errors:
			// An overflowed event queue lost some arrivals: count the files.
			entries, rerr := os.ReadDir(f.done)
			if rerr != nil {
				b.Fatalf("watch done/: %v; %v", err, rerr)
			}
			seen = len(entries)
		case <-timeout.C:
			b.Fatalf("only %d of %d jobs were done after 2m", seen, n)
		}
	}
}

// baselineRecord is the record the baseline writes: the fields a user reads.
type baselineRecord struct {
	ID          string          `json:"id"`
	State       string          `json:"state"`
	Endpoint    string          `json:"endpoint"`
	Job         json.RawMessage `json:"job"`
	Response    json.RawMessage `json:"response"`
	Attempts    int             `json:"attempts"`
	SubmittedAt time.Time       `json:"submitted_at"`
	StartedAt   time.Time       `json:"started_at"`
	FinishedAt  time.Time       `json:"finished_at"`
	Target      string          `json:"target"`
}

// runBaseline runs the jobs queued in the spool at dir the minimal way,
// with plain system calls and no hopper code, in name order.
func runBaseline(b *testing.B, dir string, fsync bool, target runner.Target) {
	b.Helper()
	ctx := context.Background()
	p := func(d, name string) string { return filepath.Join(dir, d, name) }
	cur, err := os.Open(p(spool.DirCur, ""))
	if err != nil {
		b.Fatal(err)
	}
	defer cur.Close()
	done, err := os.Open(p(spool.DirDone, ""))
	if err != nil {
		b.Fatal(err)
	}
	defer done.Close()

	entries, err := os.ReadDir(p(spool.DirNew, ""))
	if err != nil {
		b.Fatal(err)
	}
	if len(entries) != b.N {
		b.Fatalf("found %d queued jobs, want %d", len(entries), b.N)
	}
	for i, e := range entries {
		name := e.Name()
		if err := os.Rename(p(spool.DirNew, name), p(spool.DirCur, name)); err != nil {
			b.Fatal(err)
		}
		job, err := os.ReadFile(p(spool.DirCur, name))
		if err != nil {
			b.Fatal(err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(job, &fields); err != nil {
			b.Fatal(err)
		}
		fields["stream"], fields["keep_alive"] = json.RawMessage("true"), json.RawMessage("-1")
		body, err := json.Marshal(fields)
		if err != nil {
			b.Fatal(err)
		}
		started := time.Now()
		resp, err := target.Do(ctx, "/api/chat", body, nil)
		if err != nil {
			b.Fatal(err)
		}
		rec, err := json.Marshal(baselineRecord{ID: name[:len(name)-len(".json")], State: "done", Endpoint: "chat",
			Job: job, Response: resp, Attempts: 1, SubmittedAt: started, StartedAt: started, FinishedAt: time.Now(), Target: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		// Staged beside the record: the cheapest atomic replace.
		benchtest.Stage(b, p(spool.DirCur, "."+name+"."+strconv.Itoa(i)), p(spool.DirCur, name), append(rec, '\n'), fsync, cur)
		benchtest.Move(b, p(spool.DirCur, name), p(spool.DirDone, name), fsync, done)
	}
}
