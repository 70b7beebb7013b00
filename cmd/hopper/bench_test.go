package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/internal/benchtest"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// The HTTP benchmarks run the real runner and the real front, wired as
// hopper serve wires them, on a spool that fsyncs, in front of ollamatest;
// "direct" sends the same requests straight to ollamatest in the same run.

func benchHopper(b *testing.B) (hopper, direct string) {
	b.Helper()
	target := ollamatest.NewServer(b, ollamatest.WithModels("llama3.2"))
	sp, err := spool.Init(b.TempDir(), spool.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	r, err := runner.New(runner.Config{Spool: sp, Target: target.Client(), TargetName: target.URL})
	if err != nil {
		b.Fatal(err)
	}
	runtest.Start(b, "the runner", 30*time.Second, r.Run)
	front, err := httpfront.New(httpfront.Config{Spool: sp, Target: target.URL, MaxWaiters: 4096})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	runtest.Start(b, "the front", 30*time.Second, func(ctx context.Context) error { return front.Serve(ctx, ln) })
	return "http://" + ln.Addr().String(), target.URL
}

// BenchmarkDropInLatency is the latency of a non-streaming /api/chat,
// straight to the target and through hopper (front, spool with fsync,
// runner); the hopper line reports the added p50.
func BenchmarkDropInLatency(b *testing.B) {
	hopper, direct := benchHopper(b)
	benchtest.DirectAndHopper(b, direct, hopper, benchtest.Chat)
}

// BenchmarkDropInFirstChunk is the time to the first streamed chunk of
// /api/chat, direct and through hopper.
func BenchmarkDropInFirstChunk(b *testing.B) {
	hopper, direct := benchHopper(b)
	benchtest.DirectAndHopper(b, direct, hopper, benchtest.FirstChunk)
}

// BenchmarkDropIn64Clients has 64 clients send non-streaming chats at once
// for b.N requests in all, direct and through hopper; every request must
// succeed. It reports requests per second.
func BenchmarkDropIn64Clients(b *testing.B) {
	hopper, direct := benchHopper(b)
	for _, c := range []struct{ name, url string }{{"direct", direct}, {"hopper", hopper}} {
		b.Run(c.name, func(b *testing.B) {
			var next, failed atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
					for next.Add(1) <= int64(b.N) {
						if _, err := benchtest.Chat(client, c.url); err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d requests failed", n, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
		})
	}
}
