package httpfront_test

import (
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/internal/benchtest"
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

// BenchmarkChatLatency is the latency of a non-streaming /api/chat, direct
// and through hopper.
func BenchmarkChatLatency(b *testing.B) {
	hopper, direct := benchTargets(b)
	benchtest.DirectAndHopper(b, direct, hopper, benchtest.Chat)
}

// BenchmarkFirstChunk is the time to the first streamed chunk of /api/chat,
// direct and through hopper.
func BenchmarkFirstChunk(b *testing.B) {
	hopper, direct := benchTargets(b)
	benchtest.DirectAndHopper(b, direct, hopper, benchtest.FirstChunk)
}

// BenchmarkConcurrentClients has 64 clients ask hopper at once; every
// request must succeed.
func BenchmarkConcurrentClients(b *testing.B) {
	hopper, _ := benchTargets(b)
	b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
	b.RunParallel(func(pb *testing.PB) {
		client := &http.Client{}
		for pb.Next() {
			if _, err := benchtest.Chat(client, hopper); err != nil {
				b.Error(err)
			}
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
	benchtest.Queue(b, sp.Path(), 100_000)
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
			benchtest.Latencies(b, ds, time.Microsecond)
		})
	}
}
