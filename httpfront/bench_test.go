package httpfront_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// benchTargets starts ollamatest and, in front of it, hopper on a spool
// that fsyncs, with the test pump as its runner. The pump is not the real
// runner: the difference measures the front's and the spool's share.
func benchTargets(b *testing.B) (hopper, direct string) {
	target := ollamatest.NewServer(b, ollamatest.WithModel(ollamatest.Model{Name: "llama3.2"}))
	sp, err := spool.Init(b.TempDir(), spool.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	pump(b, sp, target.URL)
	_, hs := serve(b, httpfront.Config{Spool: sp, Target: target.URL})
	return hs.URL, target.URL
}

// latencies reports the p50 and p99 of ds.
func latencies(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

func chatOnce(b *testing.B, client *http.Client, base, body string) time.Duration {
	start := time.Now()
	resp, err := client.Post(base+"/api/chat", "application/json", strings.NewReader(body))
	if err != nil {
		b.Error(err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Errorf("status %d", resp.StatusCode)
	}
	return time.Since(start)
}

const benchChat = `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}`

// BenchmarkChatLatency is the latency of a non-streaming /api/chat, direct
// and through hopper.
func BenchmarkChatLatency(b *testing.B) {
	hopper, direct := benchTargets(b)
	for _, c := range []struct{ name, base string }{{"direct", direct}, {"hopper", hopper}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{}
			var ds []time.Duration
			for b.Loop() {
				ds = append(ds, chatOnce(b, client, c.base, benchChat))
			}
			latencies(b, ds)
		})
	}
}

// BenchmarkFirstChunk is the time to the first streamed chunk of /api/chat,
// direct and through hopper.
func BenchmarkFirstChunk(b *testing.B) {
	hopper, direct := benchTargets(b)
	body := `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct{ name, base string }{{"direct", direct}, {"hopper", hopper}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{}
			var ds []time.Duration
			for b.Loop() {
				start := time.Now()
				resp, err := client.Post(c.base+"/api/chat", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				br := bufio.NewReader(resp.Body)
				if _, err := br.ReadBytes('\n'); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
				io.Copy(io.Discard, br)
				resp.Body.Close()
			}
			latencies(b, ds)
		})
	}
}

// BenchmarkConcurrentClients has 64 clients ask hopper at once; every
// request must succeed.
func BenchmarkConcurrentClients(b *testing.B) {
	hopper, _ := benchTargets(b)
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{}
		for pb.Next() {
			chatOnce(b, client, hopper, benchChat)
		}
	})
}

// BenchmarkListJobs100k pages GET /jobs with 100,000 jobs queued, against
// GET /healthz in the same run as the baseline: the list comes from the
// front's catalog, never from reading every record.
func BenchmarkListJobs100k(b *testing.B) {
	sp, err := spool.Init(b.TempDir(), spool.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	const n = 100_000
	for i := range n {
		name := filepath.Join(sp.Path(), spool.DirNew, fmt.Sprintf("job%06d.json", i))
		if err := os.WriteFile(name, []byte(`{"model":"m`+strconv.Itoa(i%4)+`","prompt":"p"}`), 0o640); err != nil {
			b.Fatal(err)
		}
	}
	_, hs := serve(b, httpfront.Config{Spool: sp, Target: "http://127.0.0.1:1"})
	client := &http.Client{}
	get := func(b *testing.B, path string) time.Duration {
		start := time.Now()
		resp, err := client.Get(hs.URL + path)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %d", path, resp.StatusCode)
		}
		return time.Since(start)
	}
	get(b, "/jobs?limit=1") // waits for the catalog's start-up scan
	// What GET /jobs cost before the catalog: reading every record.
	b.Run("baseline=read-every-record", func(b *testing.B) {
		for b.Loop() {
			if _, err := sp.List(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range []struct{ name, path string }{
		{"baseline=healthz", "/healthz"},
		{"limit=100", "/jobs?limit=100"},
		{"state=failed", "/jobs?state=failed"},
		{"model=m2&limit=100", "/jobs?model=m2&limit=100"},
		{"one-job", "/jobs/job050000"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var ds []time.Duration
			for b.Loop() {
				ds = append(ds, get(b, c.path))
			}
			latencies(b, ds)
		})
	}
}
