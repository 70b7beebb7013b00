package ollama_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

// BenchmarkStreamMemory measures what Do costs in memory on a long
// well-formed stream, beside a baseline measured in the same run: the same
// bytes from the same server read by a plain http.Client with io.Copy to
// io.Discard. Each stream is about 50 MB, in two shapes: "tokens" (lines as
// Ollama sends them, a few bytes of content each) and "bigchunks" (4 KiB of
// content a line, so that the folded answer is nearly as large as the
// stream: its floor is about 2×, the folded text and the answer written
// from it, since the answer is one slice whose size is known only at the
// end).
//
// Reported per byte of stream:
//
//	alloc-x   bytes allocated during the run (client and server)
//	excess-x  alloc-x less the baseline's: what folding the stream costs
//	peak-x    the highest heap in use (live or not yet swept) less the heap
//	          before the request, after a collection; the largest over the
//	          runs, sampled every 200µs
//
//	go test -run='^$' -bench=StreamMemory -benchtime=3x ./ollama/
func BenchmarkStreamMemory(b *testing.B) {
	const size = 50 << 20
	for _, shape := range []struct {
		name    string
		content int
	}{{"tokens", 5}, {"bigchunks", 4096}} {
		for _, framing := range []string{"ndjson", "sse"} {
			stream := benchStream(framing, shape.content, size)
			contentType := map[string]string{"ndjson": "application/x-ndjson", "sse": "text/event-stream"}[framing]
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", contentType)
				_, _ = w.Write(stream)
			}))
			c, err := ollama.New(srv.URL, nil)
			if err != nil {
				b.Fatal(err)
			}
			var baseline float64
			name := shape.name + "/" + framing + "/"
			b.Run(name+"baseline", func(b *testing.B) {
				hc := &http.Client{}
				m := measure(b, len(stream), func() {
					resp, err := hc.Post(srv.URL+"/api/chat", "application/json", strings.NewReader(chatBody))
					if err != nil {
						b.Fatal(err)
					}
					n, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || n != int64(len(stream)) {
						b.Fatalf("read %d of %d bytes: %v", n, len(stream), err)
					}
				})
				baseline = m.alloc
				hc.CloseIdleConnections()
			})
			b.Run(name+"do", func(b *testing.B) {
				m := measure(b, len(stream), func() {
					out, err := c.Do(b.Context(), "/api/chat", []byte(chatBody), func(chunk []byte) error {
						_, err := io.Discard.Write(chunk) // the runner writes each chunk to cur/ID.out
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
					if len(out) == 0 {
						b.Fatal("empty answer")
					}
				})
				if baseline > 0 {
					b.ReportMetric(m.alloc-baseline, "excess-x")
				}
			})
			srv.Close()
		}
	}
}

type memResult struct{ alloc, peak float64 }

// measure runs f b.N times and reports the bytes allocated and the peak
// heap per byte of stream. The peak is taken per run, from a collected heap:
// the highest heap in use while f ran less the heap before it, the largest
// over the runs.
func measure(b *testing.B, size int, f func()) memResult {
	b.Helper()
	b.SetBytes(int64(size))
	var (
		peak atomic.Uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: heapObjects}}
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	var (
		alloc    uint64
		maxPeak  uint64
		before   runtime.MemStats
		after    runtime.MemStats
		baseline = []metrics.Sample{{Name: heapObjects}}
	)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		runtime.GC()
		metrics.Read(baseline)
		base := baseline[0].Value.Uint64()
		peak.Store(base)
		runtime.ReadMemStats(&before)
		b.StartTimer()
		f()
		b.StopTimer()
		runtime.ReadMemStats(&after)
		metrics.Read(baseline)
		alloc += after.TotalAlloc - before.TotalAlloc
		p := max(peak.Load(), baseline[0].Value.Uint64())
		maxPeak = max(maxPeak, p-min(p, base))
	}
	close(stop)
	wg.Wait()
	m := memResult{
		alloc: float64(alloc) / float64(b.N) / float64(size),
		peak:  float64(maxPeak) / float64(size),
	}
	b.ReportMetric(m.alloc, "alloc-x")
	b.ReportMetric(m.peak, "peak-x")
	return m
}

// heapObjects is the heap in use: live objects and those not yet swept.
const heapObjects = "/memory/classes/heap/objects:bytes"

// benchStream returns a chat stream of about size bytes in the framing
// ("ndjson" or "sse") whose chunks carry content bytes of text each.
func benchStream(framing string, content, size int) []byte {
	text := strings.Repeat("word ", content/5+1)[:content]
	var buf bytes.Buffer
	buf.Grow(size + 4096)
	for i := 0; buf.Len() < size; i++ {
		switch framing {
		case "ndjson":
			fmt.Fprintf(&buf, `{"model":"llama3.2","created_at":"2026-01-02T03:04:05.%09dZ","message":{"role":"assistant","content":%q},"done":false}`+"\n", i, text)
		case "sse":
			fmt.Fprintf(&buf, `data: {"id":"chatcmpl-42","object":"chat.completion.chunk","created":1767323045,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":%q},"finish_reason":null}]}`+"\n\n", text)
		}
	}
	switch framing {
	case "ndjson":
		buf.WriteString(`{"model":"llama3.2","created_at":"2026-01-02T03:04:06Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1,"load_duration":1,"prompt_eval_count":1,"prompt_eval_duration":1,"eval_count":1,"eval_duration":1}` + "\n")
	case "sse":
		buf.WriteString(`data: {"id":"chatcmpl-42","object":"chat.completion.chunk","created":1767323045,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}` + "\n\n" + "data: [DONE]\n\n")
	}
	return buf.Bytes()
}
