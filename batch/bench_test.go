package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hopper-dev/hopper/internal/benchtest"
	"github.com/hopper-dev/hopper/spool"
)

// The batch benchmarks (the "100,000-line batch of instant jobs")
// time a batch's two bulk steps — queuing its lines as jobs (Expand)
// and writing its output (Finish) — against the bare cost of reading
// and writing the same bytes, timed in the same iteration on the same
// filesystem, and report the ratio. ns/op is hopper's time alone; the
// baselines and ratios are custom metrics. Each phase starts after a
// sync(2), outside the timer, so one phase's writeback does not land in
// the next. Memory: the peak of the Go heap while the phase runs (sampled
// every millisecond from runtime/metrics), the bytes allocated per line,
// and the process's peak RSS during the phase (Linux's VmHWM, reset before
// it through /proc/self/clear_refs).
//
//	go test -run '^$' -bench Batch -benchtime 1x ./batch
//	go test -run '^$' -bench Batch -benchtime 1x -short ./batch   # without 100,000 lines

// batchSizes are the batch sizes benchmarked: 100,000 lines only without
// -short.
func batchSizes() []int {
	if testing.Short() {
		return []int{1_000, 10_000}
	}
	return []int{1_000, 10_000, 100_000}
}

// batchBenchCases are the sizes with fsync off (the ratios), plus one
// fsync-on case.
func batchBenchCases() []struct {
	lines int
	fsync bool
} {
	var cases []struct {
		lines int
		fsync bool
	}
	for _, n := range batchSizes() {
		cases = append(cases, struct {
			lines int
			fsync bool
		}{n, false})
	}
	return append(cases, struct {
		lines int
		fsync bool
	}{10_000, true})
}

// batchBenchSpool makes a fresh spool for one iteration in a
// benchtest.Dir, and returns a function that removes it.
func batchBenchSpool(b *testing.B, fsync bool) (*tspool, func()) {
	b.Helper()
	d := benchtest.Dir(b)
	o := spool.DefaultOptions()
	o.Fsync = fsync
	sp, err := spool.Init(filepath.Join(d, "spool"), o)
	if err != nil {
		b.Fatal(err)
	}
	s := &tspool{Spool: sp, b: New(sp)}
	return s, func() {
		s.Close()
		if err := os.RemoveAll(d); err != nil {
			b.Error(err)
		}
	}
}

// benchBatchLine is line i of the benchmark batch: an OpenAI chat line, or
// every third an embeddings line, as a client's batch would hold them.
func benchBatchLine(i int) string {
	if i%3 == 0 {
		return fmt.Sprintf(`{"custom_id": "doc-%d", "method": "POST", "url": "/v1/embeddings", "body": {"model": "nomic-embed-text", "input": "Document %d: the quick brown fox jumps over the lazy dog."}}`, i, i)
	}
	return fmt.Sprintf(`{"custom_id": "ticket-%d", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "llama3.2", "messages": [{"role": "system", "content": "Answer in one line."}, {"role": "user", "content": "Summarise ticket %d."}]}}`, i, i)
}

// benchAnswer is an instant target's answer to line i, shaped as the
// OpenAI-compatible endpoint answers.
func benchAnswer(i int) json.RawMessage {
	if i%3 == 0 {
		return json.RawMessage(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0123,-0.0456,0.0789,-0.0112,0.0345,-0.0678,0.0901,-0.0234]}],"model":"nomic-embed-text","usage":{"prompt_tokens":14,"total_tokens":14}}`)
	}
	return json.RawMessage(fmt.Sprintf(`{"id":"chatcmpl-%d","object":"chat.completion","created":1795820400,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"message":{"role":"assistant","content":"Ticket %d: the customer cannot log in after the password reset."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":15,"total_tokens":46}}`, i, i))
}

// writeBenchBatch writes an n-line batch to path.
func writeBenchBatch(b *testing.B, path string, n int) {
	b.Helper()
	benchtest.Create(b, path, false, func(f io.Writer) error {
		w := bufio.NewWriterSize(f, 1<<20)
		for i := 1; i <= n; i++ {
			w.WriteString(benchBatchLine(i))
			w.WriteByte('\n')
		}
		return w.Flush()
	})
}

// claimBenchBatch drops an n-line batch into new/ and claims it. It
// returns the batch and how long the claim (the check pass) took.
func claimBenchBatch(b *testing.B, s *tspool, n int) (*Record, time.Duration) {
	b.Helper()
	writeBenchBatch(b, filepath.Join(s.Path(), spool.DirNew, "bench.jsonl"), n)
	syscall.Sync()
	start := time.Now()
	bt, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: "bench.jsonl", Arrived: time.Now()})
	took := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if bt.State != InProgress || bt.Total != n {
		b.Fatalf("claimed %+v", bt)
	}
	return bt, took
}

// memProbe measures memory while one phase runs: the Go heap's peak
// (sampled), the bytes allocated, and the process's peak RSS. Whoever
// starts it stops it.
type memProbe struct {
	stop, done chan struct{}
	before     runtime.MemStats
	rssReset   bool
	peakHeap   uint64
}

type memUse struct {
	Alloc    uint64 // bytes allocated during the phase
	PeakHeap uint64 // the heap's peak (objects live or not yet swept)
	PeakRSS  uint64 // 0 where it cannot be measured
}

func startMemProbe() *memProbe {
	runtime.GC()
	debug.FreeOSMemory()
	p := &memProbe{stop: make(chan struct{}), done: make(chan struct{})}
	runtime.ReadMemStats(&p.before)
	// Writing 5 to clear_refs restarts VmHWM from the current RSS.
	p.rssReset = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	go p.sample()
	return p
}

func (p *memProbe) sample() {
	defer close(p.done)
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		metrics.Read(s)
		p.peakHeap = max(p.peakHeap, s[0].Value.Uint64())
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// finish stops the probe and returns what it saw.
func (p *memProbe) finish() memUse {
	close(p.stop)
	<-p.done
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	u := memUse{Alloc: after.TotalAlloc - p.before.TotalAlloc, PeakHeap: p.peakHeap}
	if p.rssReset {
		u.PeakRSS = vmHWM()
	}
	return u
}

// vmHWM is the process's peak RSS in bytes from /proc/self/status.
func vmHWM() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

const mib = 1 << 20

// memTotals sums a phase's memory over the iterations: allocations added,
// peaks the highest.
type memTotals struct {
	alloc, peakHeap, peakRSS uint64
}

func (m *memTotals) add(u memUse) {
	m.alloc += u.Alloc
	m.peakHeap = max(m.peakHeap, u.PeakHeap)
	m.peakRSS = max(m.peakRSS, u.PeakRSS)
}

// report reports the memory under the given prefix.
func (m *memTotals) report(b *testing.B, prefix string, lines int) {
	b.ReportMetric(float64(m.alloc)/float64(b.N*lines), prefix+"-alloc-B/line")
	b.ReportMetric(float64(m.peakHeap)/mib, prefix+"-heap-peak-MiB")
	if m.peakRSS > 0 {
		b.ReportMetric(float64(m.peakRSS)/mib, prefix+"-RSS-peak-MiB")
	}
}

// eachLine calls fn with every non-blank line of the file at path, without
// its newline.
func eachLine(b *testing.B, path string, fn func(i int, line []byte)) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(bufio.NewReaderSize(f, 256<<10))
	sc.Buffer(make([]byte, 64<<10), 32<<20)
	i := 0
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		i++
		fn(i, sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
}

// syncfsChunk flushes the filesystem after every chunk of lines, the last
// one of total included, when fsync is on, as Expand does.
func syncfsChunk(b *testing.B, dir *os.File, fsync bool, i, total int) {
	if fsync && (i%batchBenchChunk == 0 || i == total) {
		if err := unix.Syncfs(int(dir.Fd())); err != nil {
			b.Fatal(err)
		}
	}
}

// batchBenchRounds counts the runs of each batch benchmark, to alternate
// the order of its timed phases from one run to the next: on a shared disk
// the cost of creating files drifts as the filesystem fills, and whichever
// phase came last would pay for it every time.
var batchBenchRounds = map[string]int{}

// reverseOddRounds reverses phases on every other run of the benchmark b.
func reverseOddRounds(b *testing.B, phases []func()) {
	if batchBenchRounds[b.Name()]%2 == 1 {
		slices.Reverse(phases)
	}
}

// BenchmarkBatchExpand: Expand over a whole batch, a chunk of 1,000
// lines at a time into a real spool.Queue, as the runner drives it. Baselines,
// reading the same input and writing each line's bytes as one file:
// "bare", os.WriteFile into the directory; "maildir", written in tmp/ and
// renamed in (what a watched directory needs); "onefile", the whole input
// copied as one file (the bytes alone). With fsync on, bare and maildir
// call syncfs(2) once per 1,000 lines, as Expand does, and onefile
// fsyncs its file. check-ms is the claim's check pass (Check), which
// comes before: not in ns/op. queue-MiB is what the queue index holds for
// the batch's jobs once they are all queued.
func BenchmarkBatchExpand(b *testing.B) {
	for _, c := range batchBenchCases() {
		b.Run(fmt.Sprintf("lines=%d/%s", c.lines, benchtest.FsyncName(c.fsync)), func(b *testing.B) {
			n := c.lines
			var check, onefile, bare, maildir, hopper time.Duration
			var bareMem, hopperMem memTotals
			var queueHeap uint64
			b.StopTimer()
			for it := 0; it < b.N; it++ {
				s, remove := batchBenchSpool(b, c.fsync)
				bt, took := claimBenchBatch(b, s, n)
				check += took
				input := filepath.Join(s.Path(), bt.Input)
				root := s.Path()
				for _, d := range []string{"bare", "maildir", "onefile"} {
					if err := os.Mkdir(filepath.Join(root, d), 0o750); err != nil {
						b.Fatal(err)
					}
				}
				dirf, err := os.Open(filepath.Join(root, "bare"))
				if err != nil {
					b.Fatal(err)
				}
				tmp := filepath.Join(root, spool.DirTmp)

				phases := []func(){
					func() {
						start := time.Now()
						copyFile(b, input, filepath.Join(root, "onefile", "bench.jsonl"), c.fsync)
						onefile += time.Since(start)
					},
					func() {
						probe := startMemProbe()
						start := time.Now()
						eachLine(b, input, func(i int, line []byte) {
							if err := os.WriteFile(filepath.Join(root, "bare", bt.LineID(i)+".json"), line, 0o640); err != nil {
								b.Fatal(err)
							}
							syncfsChunk(b, dirf, c.fsync, i, n)
						})
						bare += time.Since(start)
						bareMem.add(probe.finish())
					},
					func() {
						start := time.Now()
						eachLine(b, input, func(i int, line []byte) {
							name := bt.LineID(i) + ".json"
							staged := filepath.Join(tmp, "."+name)
							if err := os.WriteFile(staged, line, 0o640); err != nil {
								b.Fatal(err)
							}
							if err := os.Rename(staged, filepath.Join(root, "maildir", name)); err != nil {
								b.Fatal(err)
							}
							syncfsChunk(b, dirf, c.fsync, i, n)
						})
						maildir += time.Since(start)
					},
					func() {
						q := spool.NewQueue(nil)
						failed := 0
						probe := startMemProbe()
						start := time.Now()
						b.StartTimer()
						for bt.Expanded < bt.Total {
							if _, err := s.b.Expand(bt, batchBenchChunk, false, q.Put, func(int) { failed++ }); err != nil {
								b.Fatal(err)
							}
						}
						b.StopTimer()
						hopper += time.Since(start)
						hopperMem.add(probe.finish())
						if q.Len() != n || failed != 0 {
							b.Fatalf("queued %d of %d lines, %d failed", q.Len(), n, failed)
						}
						with := heapLive()
						runtime.KeepAlive(q)
						q = nil
						queueHeap += with - min(with, heapLive())
					},
				}
				reverseOddRounds(b, phases)
				for _, phase := range phases {
					syscall.Sync()
					phase()
				}
				dirf.Close()
				remove()
			}
			batchBenchRounds[b.Name()]++
			perLine := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N*n) }
			b.ReportMetric(perLine(hopper), "hopper-us/line")
			b.ReportMetric(perLine(bare), "bare-us/line")
			b.ReportMetric(perLine(maildir), "maildir-us/line")
			b.ReportMetric(float64(onefile.Microseconds())/1000/float64(b.N), "onefile-ms")
			b.ReportMetric(float64(check.Microseconds())/1000/float64(b.N), "check-ms")
			b.ReportMetric(hopper.Seconds()/bare.Seconds(), "x-bare")
			b.ReportMetric(hopper.Seconds()/maildir.Seconds(), "x-maildir")
			b.ReportMetric(hopper.Seconds()/onefile.Seconds(), "x-onefile")
			b.ReportMetric(float64(queueHeap)/float64(b.N)/mib, "queue-MiB")
			hopperMem.report(b, "hopper", n)
			bareMem.report(b, "bare", n)
		})
	}
}

// heapLive is the heap in use after a collection.
func heapLive() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// batchBenchChunk is the runner's chunk size (runner.batchChunk).
const batchBenchChunk = 1000

// copyFile copies src to dst through one buffer, fsyncing dst when asked.
func copyFile(b *testing.B, src, dst string, fsync bool) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	benchtest.Create(b, dst, fsync, func(out io.Writer) error {
		_, err := io.CopyBuffer(out, in, make([]byte, 1<<20))
		return err
	})
}

// endBenchBatch gives every line of an expanded batch the final record an
// instant target would have left: done/ID.json with the answer, the job
// gone from new/. This is setup, written straight to the files. It returns
// the length of each line's output line, for the baseline to write as
// many bytes.
func endBenchBatch(b *testing.B, s *tspool, bt *Record) []int {
	b.Helper()
	now := time.Now().UTC()
	lens := make([]int, 0, bt.Total)
	var enc bytes.Buffer
	for i := 1; i <= bt.Total; i++ {
		id := bt.LineID(i)
		queued := filepath.Join(s.Path(), spool.DirNew, id+".json")
		jobData, err := os.ReadFile(queued)
		if err != nil {
			b.Fatal(err)
		}
		endpoint, model, custom := spool.EndpointOpenAIChat, "llama3.2", fmt.Sprintf("ticket-%d", i)
		if i%3 == 0 {
			endpoint, model, custom = spool.EndpointOpenAIEmbeddings, "nomic-embed-text", fmt.Sprintf("doc-%d", i)
		}
		r := &spool.Record{ID: id, State: spool.StateDone, Endpoint: endpoint, Model: model, Job: jobData, Response: benchAnswer(i),
			Attempts: 1, SubmittedAt: now, StartedAt: &now, FinishedAt: &now, Target: "http://127.0.0.1:11434"}
		data, err := r.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Path(), spool.DirDone, id+".json"), data, 0o640); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(queued); err != nil {
			b.Fatal(err)
		}
		enc.Reset()
		if err := encodeLine(&enc, outputLine(id, &custom, r, "", false)); err != nil {
			b.Fatal(err)
		}
		lens = append(lens, enc.Len())
	}
	return lens
}

// BenchmarkBatchFinish: Finish over a batch whose every line is done
// (instant answers, written in setup), against a baseline that does the
// reads and writes it cannot avoid — the input read through, every line's
// record read, an output of the same length written line by line in tmp/
// and renamed into done/ (fsync on: the output and done/ fsynced, as
// Finish does). The heap and RSS peaks show whether the answers are
// held in memory: they are not if the peaks stay flat as the batch grows.
func BenchmarkBatchFinish(b *testing.B) {
	for _, c := range batchBenchCases() {
		b.Run(fmt.Sprintf("lines=%d/%s", c.lines, benchtest.FsyncName(c.fsync)), func(b *testing.B) {
			n := c.lines
			var bare, hopper time.Duration
			var outBytes int64
			var bareMem, hopperMem memTotals
			b.StopTimer()
			for it := 0; it < b.N; it++ {
				s, remove := batchBenchSpool(b, c.fsync)
				bt, _ := claimBenchBatch(b, s, n)
				for bt.Expanded < bt.Total {
					if _, err := s.b.Expand(bt, batchBenchChunk, false, func(spool.Entry) {}, func(i int) { b.Fatalf("line %d failed", i) }); err != nil {
						b.Fatal(err)
					}
				}
				lens := endBenchBatch(b, s, bt)
				var size int64
				for _, l := range lens {
					size += int64(l)
				}
				outBytes += size
				bt.Done = n

				phases := []func(){
					func() {
						probe := startMemProbe()
						start := time.Now()
						b.StartTimer()
						if err := s.b.Finish(bt, nil); err != nil {
							b.Fatal(err)
						}
						b.StopTimer()
						hopper += time.Since(start)
						hopperMem.add(probe.finish())
						if bt.State != Completed || bt.Done != n || bt.Failed != 0 {
							b.Fatalf("finished %+v", bt)
						}
						if fi, err := os.Stat(filepath.Join(s.Path(), bt.Output)); err != nil || fi.Size() != size {
							b.Fatalf("output: %v, %v; want %d bytes", fi, err, size)
						}
					},
					func() {
						probe := startMemProbe()
						start := time.Now()
						bareFinish(b, s, bt, lens, c.fsync)
						bare += time.Since(start)
						bareMem.add(probe.finish())
					},
				}
				reverseOddRounds(b, phases)
				for _, phase := range phases {
					syscall.Sync()
					phase()
				}
				remove()
			}
			batchBenchRounds[b.Name()]++
			perLine := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N*n) }
			b.ReportMetric(perLine(hopper), "hopper-us/line")
			b.ReportMetric(perLine(bare), "bare-us/line")
			b.ReportMetric(hopper.Seconds()/bare.Seconds(), "x-bare")
			b.ReportMetric(float64(outBytes)/float64(b.N)/mib, "output-MiB")
			hopperMem.report(b, "hopper", n)
			bareMem.report(b, "bare", n)
		})
	}
}

// bareFinish reads the batch's input through and every line's record, and
// writes lens[i] bytes for line i to a file in tmp/ (from the record's
// bytes), then renames it into done/.
func bareFinish(b *testing.B, s *tspool, bt *Record, lens []int, fsync bool) {
	b.Helper()
	root := s.Path()
	staged := filepath.Join(root, spool.DirTmp, ".bare-output")
	benchtest.Create(b, staged, fsync, func(f io.Writer) error {
		w := bufio.NewWriterSize(f, 1<<20)
		pad := bytes.Repeat([]byte(" "), 4096)
		eachLine(b, filepath.Join(root, bt.Input), func(i int, _ []byte) {
			rec, err := os.ReadFile(filepath.Join(root, spool.DirDone, bt.LineID(i)+".json"))
			if err != nil {
				b.Fatal(err)
			}
			want := lens[i-1] - 1
			if len(rec) >= want {
				w.Write(rec[:want])
			} else {
				w.Write(rec)
				w.Write(pad[:want-len(rec)])
			}
			w.WriteByte('\n')
		})
		return w.Flush()
	})
	benchtest.Move(b, staged, filepath.Join(root, spool.DirDone, "bare.jsonl"), fsync, nil)
}
