package httpfront_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
)

// expectClient sends bodies with Expect: 100-continue and waits for the
// server's go-ahead before sending one: a body is sent only once the
// front has taken it from its budget, and a request refused before its
// body is read never sends it.
func expectClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = patience
	return &http.Client{Transport: tr}
}

// sizedJob is a chat job of exactly n bytes.
func sizedJob(n int, stream bool) string {
	head := fmt.Sprintf(`{"model":"llama3.2","stream":%t,"messages":[{"role":"user","content":"`, stream)
	tail := `"}]}`
	return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
}

func TestBodyBudgetAnswers503WhenSpent(t *testing.T) {
	const size = 1 << 20
	f := startFront(t, newSpool(t), func(c *httpfront.Config) {
		c.MaxBody = size
		c.BodyBudget = size
	})
	client := expectClient()

	// The first request takes the whole budget and sends its body slowly.
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", f.URL+"/jobs", pr)
	req.ContentLength = size
	req.Header.Set("Expect", "100-continue")
	type result struct {
		status int
		err    error
	}
	first := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			first <- result{0, err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- result{resp.StatusCode, nil}
	}()
	job := sizedJob(size, true)
	// The transport reads the body only after 100 Continue, which the
	// front sends once it has taken the body's bytes from the budget.
	if _, err := io.WriteString(pw, job[:1]); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		path  string
		check func(t *testing.T, body []byte)
	}{
		{"/jobs", func(t *testing.T, body []byte) {
			if msg := decode[ollamaError](t, body).Error; !strings.Contains(msg, "body_budget") {
				t.Errorf("got %q, want the setting named", msg)
			}
		}},
		{"/api/chat", func(t *testing.T, body []byte) {
			if msg := decode[ollamaError](t, body).Error; !strings.HasPrefix(msg, "server busy") {
				t.Errorf("got %q, want Ollama's busy words", msg)
			}
		}},
		{"/v1/chat/completions", func(t *testing.T, body []byte) {
			if e := decode[openaiError](t, body); e.Error.Type != "api_error" || !strings.Contains(e.Error.Message, "busy") {
				t.Errorf("got %s, want OpenAI's shape", body)
			}
		}},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", f.URL+tt.path, strings.NewReader(chatJob))
		req.Header.Set("Expect", "100-continue")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: got %d %s (Retry-After %q), want 503 with Retry-After", tt.path, resp.StatusCode, body, resp.Header.Get("Retry-After"))
			continue
		}
		tt.check(t, body)
	}

	// Once the first body is in and queued, its bytes are free again.
	if _, err := io.WriteString(pw, job[1:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if r := receive(t, first, "the first request"); r.err != nil || r.status != http.StatusAccepted {
		t.Fatalf("the first request: got %d %v, want 202", r.status, r.err)
	}
	if resp, body := call(t, "POST", f.URL+"/jobs", chatJob); resp.StatusCode != http.StatusAccepted {
		t.Errorf("after the first: got %d %s, want 202", resp.StatusCode, body)
	}
	t.Run("ABodyLargerThanTheBudgetCanNeverFitAndIsRefused", func(t *testing.T) {
		_, err := httpfront.New(httpfront.Config{Spool: newSpool(t), MaxBody: 2 << 20, BodyBudget: 1 << 20})
		if err == nil || !strings.Contains(err.Error(), "body_budget") {
			t.Errorf("got %v, want an error naming body_budget", err)
		}
	})
}

// heapBytes is the memory held by heap objects, live or not yet swept.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapPeak samples heapBytes until stop is called, which returns the
// highest value seen.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for !done.Load() {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			runtime.Gosched()
		}
	}()
	return func() uint64 {
		done.Store(true)
		<-finished
		return peak.Load()
	}
}

// largeBodies sends n streaming /api/chat requests of size bytes at once
// and waits until each is either waiting on its queued job or answered
// (503 when the budget is spent). It returns the peak heap over the run
// and the heap kept while the requests wait, both over the heap before
// (after a GC), and how many were refused; cancel ends the requests.
func largeBodies(t testing.TB, f *front, n, size int) (peak, kept uint64, refused int, end func()) {
	body := sizedJob(size, true)
	client := expectClient()
	ctx, cancel := context.WithCancel(context.Background())
	var ended sync.WaitGroup
	answered := make(chan int, n)
	runtime.GC()
	base := heapBytes()
	stop := heapPeak()
	for range n {
		ended.Add(1)
		go func() {
			defer ended.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", f.URL+"/api/chat", strings.NewReader(body))
			req.Header.Set("Expect", "100-continue")
			resp, err := client.Do(req)
			if err != nil {
				return // canceled at the end
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
	}
	for range n {
		select {
		case <-f.waits:
		case status := <-answered:
			if status != http.StatusServiceUnavailable {
				t.Errorf("a request was answered %d before its job ran, want 503 or a wait", status)
			}
			refused++
		case <-ctx.Done():
		}
	}
	top := stop()
	runtime.GC()
	now := heapBytes()
	return top - min(base, top), now - min(base, now), refused, func() {
		// The requests that wait cancel their jobs as they end: wait for
		// the records to land, so that work is not counted in what follows.
		// Canceling rewrites each record, job and all: give a slow
		// machine time.
		cancel()
		ended.Wait()
		for range n - refused {
			select {
			case <-f.landed:
			case <-time.After(5 * time.Minute):
				t.Fatal("timed out waiting for a canceled job's record")
			}
		}
	}
}

// N large bodies at once are bounded by the body budget, and none of them
// is kept in memory while its request waits on its job.
func TestConcurrentLargeBodiesStayWithinTheBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 32 MiB")
	}
	const n, size = 32, 1 << 20
	f := startFront(t, newSpool(t), func(c *httpfront.Config) {
		c.MaxBody = size
		c.BodyBudget = 2 * size
		c.MaxWaiters = 2 * n
	})
	f.waits = make(chan string, n)
	peak, kept, refused, cancel := largeBodies(t, f, n, size)
	defer cancel()
	offered := uint64(n * size)
	t.Logf("%d × %d KiB: peak heap +%.1f MiB, kept while waiting +%.1f MiB, %d refused with 503",
		n, size>>10, mib(peak), mib(kept), refused)
	// Without the budget every body is held, several times over (+143 MiB
	// here); with it, well under the bodies offered even with the race
	// detector's own allocations on top.
	if peak > offered {
		t.Errorf("peak heap grew by %.1f MiB for %.0f MiB of bodies with a budget of 2 MiB, want under %.0f MiB",
			mib(peak), mib(offered), mib(offered))
	}
	// Before the budget 51 MiB stayed; the bound leaves room for the race
	// detector's and the runtime's own noise.
	if kept > 8*size {
		t.Errorf("%.1f MiB stayed in use while the requests waited, want their bodies let go (under %.0f MiB)", mib(kept), mib(8*size))
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// BenchmarkConcurrentLargeBodies reports the peak heap of N requests
// with large bodies sent at once against a baseline of the same front
// idle, with the default limits (MaxBody 32 MiB, BodyBudget 128 MiB).
func BenchmarkConcurrentLargeBodies(b *testing.B) {
	for _, c := range []struct{ n, size int }{{20, 31 << 20}, {50, 4 << 20}} {
		b.Run(fmt.Sprintf("%dx%dMiB", c.n, c.size>>20), func(b *testing.B) {
			var peak, kept uint64
			var refused int
			for b.Loop() {
				f := benchFront(b, c.n)
				p, k, r, cancel := largeBodies(b, f, c.n, c.size)
				cancel()
				peak, kept, refused = max(peak, p), max(kept, k), r
			}
			b.ReportMetric(mib(peak), "peak-MiB")
			b.ReportMetric(mib(kept), "kept-MiB")
			b.ReportMetric(float64(refused), "refused")
			b.ReportMetric(mib(uint64(c.n*c.size)), "offered-MiB")
		})
	}
}

// benchFront is a front for benchmarks with room for n waiting requests.
func benchFront(b *testing.B, n int) *front {
	sp := newSpool(b)
	f := &front{sp: sp, waits: make(chan string, n), landed: make(chan string, n)}
	cfg := httpfront.WithHooks(httpfront.Config{Spool: sp, Target: "http://127.0.0.1:1", MaxWaiters: 2 * n},
		func(id string) { trySend(f.waits, id) }, func(id string) { trySend(f.landed, id) })
	f.srv, f.Server = serve(b, cfg)
	return f
}

// BenchmarkLargeBodyAllocs reports the bytes allocated per byte of a
// large job body, from reading it to queuing it: the copies made of it.
func BenchmarkLargeBodyAllocs(b *testing.B) {
	const size = 8 << 20
	for _, path := range []string{"/jobs", "/api/chat"} {
		b.Run(strings.TrimPrefix(strings.ReplaceAll(path, "/", "-"), "-"), func(b *testing.B) {
			f := benchFront(b, 1)
			body := sizedJob(size, false)
			client := &http.Client{}
			allocs := func() uint64 {
				s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
				metrics.Read(s)
				return s[0].Value.Uint64()
			}
			var total uint64
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				before := allocs()
				done := make(chan struct{})
				go func() {
					defer close(done)
					req, _ := http.NewRequestWithContext(ctx, "POST", f.URL+path, strings.NewReader(body))
					if resp, err := client.Do(req); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
				if path == "/jobs" {
					<-done
				} else {
					<-f.waits // queued; the rest is waiting
				}
				total += allocs() - before
				cancel()
				<-done
				if path != "/jobs" {
					<-f.landed // canceled: let that work end before the next
				}
			}
			b.ReportMetric(float64(total)/float64(b.N)/size, "alloc-B/body-B")
		})
	}
}

// Long-polls and output streams have slots of their own: however many
// there are, the drop-in is never refused because of them.
func TestLongPollsNeverStarveTheDropIn(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) {
		c.MaxPollers = 2
		c.MaxWaiters = 1
	})
	runner := newFakeRunner(t, sp)
	id := submit(t, f.URL, chatJob)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polls := make(chan struct{}, 2)
	for _, path := range []string{"/jobs/" + id + "?wait=5m", "/jobs/" + id + "/out"} {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", f.URL+path, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			polls <- struct{}{}
		}()
		receive(t, f.waits, "a long-poll or output stream")
	}
	for _, path := range []string{"/jobs/" + id + "?wait=5m", "/jobs/" + id + "/out"} {
		resp, body := call(t, "GET", f.URL+path, "")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "max_pollers") || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s over max_pollers: got %d %s, want 503 naming max_pollers with Retry-After", path, resp.StatusCode, body)
		}
	}
	if resp, _ := call(t, "GET", f.URL+"/jobs/"+id, ""); resp.StatusCode != 200 {
		t.Errorf("a GET without wait: got %d, want 200", resp.StatusCode)
	}

	answered := postInBackground(ctx, f.URL+"/api/chat", `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":false}`)
	dropIn := receive(t, f.waits, "the drop-in request to wait on its job")
	job := runner.next() // the drop-in's, at priority 100, once the runner has seen it
	if job.id() != dropIn {
		job = runner.next() // the job polled for came first; it stays claimed
	}
	if job.id() != dropIn {
		t.Fatalf("claimed %s, want the drop-in's job %s", job.id(), dropIn)
	}
	job.start().done(chatReply)
	if status := receive(t, answered, "the drop-in answer"); status != 200 {
		t.Errorf("drop-in beside %d long-polls: got %d, want 200", 2, status)
	}
	cancel()
	receive(t, polls, "a long-poll to end")
	receive(t, polls, "a long-poll to end")
}

// One client cannot take every long-poll slot: each address has a share.
func TestOneClientCannotTakeEveryPollSlot(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) { c.MaxPollersPerIP = 1 })
	id := submit(t, f.URL, chatJob)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan struct{}, 2)
	poll := func(client *http.Client) {
		req, _ := http.NewRequestWithContext(ctx, "GET", f.URL+"/jobs/"+id+"?wait=5m", nil)
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		ended <- struct{}{}
	}
	go poll(http.DefaultClient)
	receive(t, f.waits, "the first long-poll")

	resp, body := call(t, "GET", f.URL+"/jobs/"+id+"?wait=5m", "")
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "max_pollers_per_ip") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a second long-poll from 127.0.0.1: got %d %s, want 429 naming max_pollers_per_ip", resp.StatusCode, body)
	}

	// Another address (127.0.0.2 is loopback too) has its own share.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext
	go poll(&http.Client{Transport: tr})
	receive(t, f.waits, "a long-poll from another address")
	cancel()
	receive(t, ended, "a long-poll to end")
	receive(t, ended, "a long-poll to end")
}

// onlyReader hides a reader's length, so the client sends it chunked.
type onlyReader struct{ io.Reader }

func TestChunkedBodiesAreReadWithinTheLimits(t *testing.T) {
	f := startFront(t, newSpool(t), func(c *httpfront.Config) { c.MaxBody = 256 << 10 })
	post := func(body string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", f.URL+"/jobs", onlyReader{strings.NewReader(body)})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp, data
	}
	// Larger than the first read, so the buffer grows on the way.
	job := sizedJob(200<<10, false)
	resp, body := post(job)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a 200 KiB chunked job: got %d %.200s, want 202", resp.StatusCode, body)
	}
	rec := decode[struct {
		Job json.RawMessage `json:"job"`
	}](t, body)
	var got, want map[string]any
	json.Unmarshal(rec.Job, &got)
	json.Unmarshal([]byte(job), &want)
	want["origin"] = "http"
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the job as answered differs from the job sent")
	}
	if resp, body := post(sizedJob(300<<10, false)); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a 300 KiB chunked job: got %d %.200s, want 413", resp.StatusCode, body)
	}
}
