// Package benchtest holds what hopper's benchmarks share: a spool with
// 100,000 jobs queued, latency percentiles, and the chat requests that
// time hopper against its target ("direct") in the same run.
//
// The requests name the model llama3.2: the target must have it.
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
	"testing"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// Queue writes n job files straight into dir's new/ (as rsync would), for
// four models (m0 to m3) at three priorities, named job000000.json and on.
// Nothing has read them yet.
func Queue(b *testing.B, dir string, n int) {
	b.Helper()
	for i := range n {
		body := fmt.Sprintf(`{"model":"m%d","prompt":"p","priority":%d}`, i%4, (i%3)*5)
		if err := os.WriteFile(filepath.Join(dir, spool.DirNew, fmt.Sprintf("job%06d.json", i)), []byte(body), 0o640); err != nil {
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
