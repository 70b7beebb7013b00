package ollamatest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

// response is what a test request got back.
type response struct {
	status      int
	contentType string
	body        string
	err         error // from reading the body
}

// fetch sends a request; with no answer it returns false and r.err says
// why.
func fetch(ctx context.Context, s *ollamatest.Server, method, path, body string) (r response, ok bool) {
	resp, b, err := runtest.Fetch(ctx, method, s.URL+path, body)
	if resp == nil {
		return response{err: err}, false
	}
	return response{resp.StatusCode, resp.Header.Get("Content-Type"), string(b), err}, true
}

func send(t *testing.T, ctx context.Context, s *ollamatest.Server, method, path, body string) response {
	t.Helper()
	r, ok := fetch(ctx, s, method, path, body)
	if !ok {
		t.Fatalf("%s %s: %v", method, path, r.err)
	}
	return r
}

func post(t *testing.T, s *ollamatest.Server, path, body string) response {
	t.Helper()
	return send(t, t.Context(), s, http.MethodPost, path, body)
}

func get(t *testing.T, s *ollamatest.Server, path string) response {
	t.Helper()
	return send(t, t.Context(), s, http.MethodGet, path, "")
}

// ok fails the test unless r is a 200 with a fully read body.
func (r response) ok(t *testing.T) response {
	t.Helper()
	if r.status != http.StatusOK || r.err != nil {
		t.Fatalf("got %d %v: %s", r.status, r.err, r.body)
	}
	return r
}

// lines decodes an NDJSON body.
func (r response) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimRight(r.body, "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// events returns the data payloads of an SSE body.
func (r response) events() []string {
	var out []string
	for _, l := range strings.Split(r.body, "\n") {
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func (r response) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

// field walks a decoded JSON value along a path of keys.
func field(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// contentOf joins the message.content (or response) of NDJSON chunks.
func contentOf(chunks []map[string]any) string {
	var b strings.Builder
	for _, c := range chunks {
		if s, ok := field(c, "message", "content").(string); ok {
			b.WriteString(s)
		}
		if s, ok := c["response"].(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}

// clock is a fake clock for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stream opens a streaming request and returns a reader of its lines.
func stream(t *testing.T, ctx context.Context, s *ollamatest.Server, path, body string) (*bufio.Reader, func()) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
}
