package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/ollama"
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
	client, err := ollama.New(target.URL, nil)
	if err != nil {
		b.Fatal(err)
	}
	r, err := runner.New(runner.Config{Spool: sp, Target: client, TargetName: target.URL})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	front, err := httpfront.New(httpfront.Config{Spool: sp, Target: target.URL, MaxWaiters: 4096})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(front.Handler())
	b.Cleanup(func() {
		hs.Close()
		front.Close()
		cancel()
		<-done
		sp.Close()
	})
	return hs.URL, target.URL
}

const benchChat = `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}`

func chatOnce(client *http.Client, base string) (time.Duration, error) {
	start := time.Now()
	resp, err := client.Post(base+"/api/chat", "application/json", strings.NewReader(benchChat))
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, &httpStatusError{resp.StatusCode}
	}
	return time.Since(start), nil
}

type httpStatusError struct{ status int }

func (e *httpStatusError) Error() string { return http.StatusText(e.status) }

func reportLatencies(b *testing.B, ds []time.Duration) (p50 time.Duration) {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
	return ds[len(ds)/2]
}

// BenchmarkDropInLatency is the latency of a non-streaming /api/chat,
// straight to the target and through hopper (front, spool with fsync,
// runner); the hopper line reports the added p50.
func BenchmarkDropInLatency(b *testing.B) {
	hopper, direct := benchHopper(b)
	var base time.Duration
	for _, c := range []struct{ name, url string }{{"direct", direct}, {"hopper", hopper}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{}
			var ds []time.Duration
			for b.Loop() {
				d, err := chatOnce(client, c.url)
				if err != nil {
					b.Fatal(err)
				}
				ds = append(ds, d)
			}
			p50 := reportLatencies(b, ds)
			if c.name == "direct" {
				base = p50
			} else if base > 0 {
				b.ReportMetric(float64((p50 - base).Microseconds()), "added-p50-µs")
			}
		})
	}
}

// BenchmarkDropInFirstChunk is the time to the first streamed chunk of
// /api/chat, direct and through hopper.
func BenchmarkDropInFirstChunk(b *testing.B) {
	hopper, direct := benchHopper(b)
	body := `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct{ name, url string }{{"direct", direct}, {"hopper", hopper}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{}
			var ds []time.Duration
			for b.Loop() {
				start := time.Now()
				resp, err := client.Post(c.url+"/api/chat", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				br := bufio.NewReader(resp.Body)
				if _, err := br.ReadBytes('\n'); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
				_, _ = io.Copy(io.Discard, br)
				resp.Body.Close()
			}
			reportLatencies(b, ds)
		})
	}
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
						if _, err := chatOnce(client, c.url); err != nil {
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
