package benchtest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dirNew is spool.DirNew, where jobs wait: benchtest does not import the
// spool, so that the spool's own benchmarks can use it.
const dirNew = "new"

// Queue writes n job files straight into dir's new/ (as rsync would), for
// four models (m0 to m3) at three priorities, named job000000.json and on.
// Nothing has read them yet.
func Queue(b *testing.B, dir string, n int) {
	b.Helper()
	for i := range n {
		body := fmt.Sprintf(`{"model":"m%d","prompt":"p","priority":%d}`, i%4, (i%3)*5)
		if err := os.WriteFile(filepath.Join(dir, dirNew, fmt.Sprintf("job%06d.json", i)), []byte(body), 0o640); err != nil {
			b.Fatal(err)
		}
	}
}

// Latencies reports the median and the 99th percentile of ds in unit
// (time.Nanosecond or time.Microsecond), as p50-ns and p99-ns or p50-µs
// and p99-µs, and returns the median. It sorts ds.
func Latencies(b *testing.B, ds []time.Duration, unit time.Duration) (p50 time.Duration) {
	if len(ds) == 0 {
		return 0
	}
	name := "ns"
	if unit == time.Microsecond {
		name = "µs"
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2]/unit), "p50-"+name)
	b.ReportMetric(float64(ds[len(ds)*99/100]/unit), "p99-"+name)
	return ds[len(ds)/2]
}

// The bodies of the requests Chat and FirstChunk send.
const (
	ChatBody   = `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}`
	StreamBody = `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}`
)

// Chat posts ChatBody to base's /api/chat and returns how long the whole
// answer took; an answer other than 200 is an error.
func Chat(client *http.Client, base string) (time.Duration, error) {
	start := time.Now()
	resp, err := client.Post(base+"/api/chat", "application/json", strings.NewReader(ChatBody))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST /api/chat: status %d", resp.StatusCode)
	}
	return time.Since(start), nil
}

// FirstChunk posts StreamBody to base's /api/chat and returns how long the
// first line of the stream took. It reads the rest before it returns.
func FirstChunk(client *http.Client, base string) (time.Duration, error) {
	start := time.Now()
	resp, err := client.Post(base+"/api/chat", "application/json", strings.NewReader(StreamBody))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadBytes('\n'); err != nil {
		return 0, err
	}
	d := time.Since(start)
	_, _ = io.Copy(io.Discard, br)
	return d, nil
}

// DirectAndHopper times measure against the target (sub-benchmark
// "direct") and then through hopper ("hopper"), one request per
// iteration, and reports each one's Latencies in microseconds; the hopper
// line also reports added-p50-µs, its median less direct's.
func DirectAndHopper(b *testing.B, direct, hopper string, measure func(client *http.Client, base string) (time.Duration, error)) {
	var base time.Duration
	for _, c := range []struct{ name, url string }{{"direct", direct}, {"hopper", hopper}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{}
			var ds []time.Duration
			for b.Loop() {
				d, err := measure(client, c.url)
				if err != nil {
					b.Fatal(err)
				}
				ds = append(ds, d)
			}
			p50 := Latencies(b, ds, time.Microsecond)
			if c.name == "direct" {
				base = p50
			} else if base > 0 {
				b.ReportMetric(float64((p50 - base).Microseconds()), "added-p50-µs")
			}
		})
	}
}

// Dir returns a new directory for a benchmark's spool: under
// $HOPPER_BENCH_DIR when it is set (to measure on a given filesystem, e.g.
// tmpfs to see the CPU cost alone), else under b.TempDir(). It is removed
// when the benchmark ends.
func Dir(b testing.TB) string {
	b.Helper()
	base := os.Getenv("HOPPER_BENCH_DIR")
	if base == "" {
		return b.TempDir()
	}
	d, err := os.MkdirTemp(base, "hopper-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// FsyncName names a benchmark's fsync setting.
func FsyncName(on bool) string {
	if on {
		return "fsync=on"
	}
	return "fsync=off"
}

// Quiesce flushes the page cache, so that writeback left by staging or by
// the previous benchmark does not land in this one's time, and resets the
// timer.
func Quiesce(b *testing.B) {
	syscall.Sync()
	b.ResetTimer()
}

// Create writes a new file at path (there must be none) with what write
// writes to it, and fsyncs it when fsync is set.
func Create(b testing.TB, path string, fsync bool, write func(w io.Writer) error) {
	b.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		b.Fatal(err)
	}
	if err := write(f); err != nil {
		b.Fatal(err)
	}
	if fsync {
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// Move renames from to to and, when fsync is set, fsyncs to's directory:
// dir when it is not nil (held open by the caller), else opened for it.
func Move(b testing.TB, from, to string, fsync bool, dir *os.File) {
	b.Helper()
	if err := os.Rename(from, to); err != nil {
		b.Fatal(err)
	}
	if !fsync {
		return
	}
	if dir == nil {
		d, err := os.Open(filepath.Dir(to))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		dir = d
	}
	if err := dir.Sync(); err != nil {
		b.Fatal(err)
	}
}

// Stage writes data to the new file staged, then moves it to path, as
// Create and Move do: the least an atomic write costs.
func Stage(b testing.TB, staged, path string, data []byte, fsync bool, dir *os.File) {
	b.Helper()
	Create(b, staged, fsync, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	Move(b, staged, path, fsync, dir)
}
