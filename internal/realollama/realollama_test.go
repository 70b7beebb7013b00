package realollama_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/realollama"
	"github.com/hopper-dev/hopper/internal/runtest"
)

// fakeTB records how Binary ends a test without ending the real one.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped, f.msg = true, fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func runBinary(tb *fakeTB) string {
	got := make(chan string, 1)
	go func() {
		defer close(got)
		got <- realollama.Binary(tb)
	}()
	return <-got
}

func TestBinaryMissingSkipsUnlessRequired(t *testing.T) {
	t.Setenv(realollama.EnvBin, "/nonexistent/ollama")

	t.Setenv(realollama.EnvRequired, "")
	tb := &fakeTB{TB: t}
	runBinary(tb)
	if !tb.skipped || tb.failed {
		t.Errorf("without %s: skipped=%v failed=%v, want a skip", realollama.EnvRequired, tb.skipped, tb.failed)
	}
	if !strings.Contains(tb.msg, ".ci/ollama.sh") {
		t.Errorf("skip message %q does not say to run .ci/ollama.sh", tb.msg)
	}

	t.Setenv(realollama.EnvRequired, "1")
	tb = &fakeTB{TB: t}
	runBinary(tb)
	if !tb.failed || tb.skipped {
		t.Errorf("with %s=1: skipped=%v failed=%v, want a failure", realollama.EnvRequired, tb.skipped, tb.failed)
	}
	if !strings.Contains(tb.msg, ".ci/ollama.sh") {
		t.Errorf("failure message %q does not say to run .ci/ollama.sh", tb.msg)
	}
}

func TestBinaryFromEnv(t *testing.T) {
	t.Setenv(realollama.EnvBin, "/bin/sh")
	if got := realollama.Binary(t); got != "/bin/sh" {
		t.Errorf("Binary = %q, want /bin/sh", got)
	}
}

// call sends body (a JSON value, or raw bytes) to path and returns the status
// and the whole response body.
func call(t *testing.T, s *realollama.Server, method, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	return runtest.Call(t, 2*time.Minute, method, s.URL+path, body)
}

type psResponse struct {
	Models []struct {
		Name  string `json:"name"`
		Model string `json:"model"`
	} `json:"models"`
}

// wantResident checks that GET /api/ps lists exactly the models want.
func wantResident(t *testing.T, s *realollama.Server, want ...string) {
	t.Helper()
	names, ps := psNames(t, s)
	t.Logf("GET /api/ps → %s", ps)
	if !slices.Equal(names, want) {
		t.Errorf("/api/ps names = %v, want %v", names, want)
	}
}

func psNames(t *testing.T, s *realollama.Server) ([]string, []byte) {
	t.Helper()
	code, _, body := call(t, s, http.MethodGet, "/api/ps", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /api/ps: %d %s", code, body)
	}
	var names []string
	for _, m := range runtest.Decode[psResponse](t, body).Models {
		names = append(names, m.Name)
	}
	return names, body
}

func TestRealServer(t *testing.T) {
	start := time.Now()
	s := realollama.Start(t, realollama.WithMaxLoadedModels(1))
	t.Logf("server up at %s in %v", s.URL, time.Since(start))

	start = time.Now()
	s.CreateModel(t, "tiny-a", 1)
	s.CreateModel(t, "tiny-a2", 1)
	s.CreateModel(t, "tiny-b", 2)
	s.CreateModel(t, "tiny-a", 1) // already there: no-op
	t.Logf("three models created in %v", time.Since(start))

	code, _, body := call(t, s, http.MethodGet, "/api/version", nil)
	t.Logf("GET /api/version → %d %s", code, body)
	if want := `{"version":"` + realollama.Version + `"}`; code != http.StatusOK || string(body) != want {
		t.Errorf("GET /api/version = %d %s, want 200 %s", code, body, want)
	}

	hi := []map[string]string{{"role": "user", "content": "hello world"}}

	t.Run("ChatNonStreamLoadsModel", func(t *testing.T) {
		start := time.Now()
		code, _, body := call(t, s, http.MethodPost, "/api/chat", map[string]any{"model": "tiny-a", "messages": hi, "stream": false})
		t.Logf("POST /api/chat tiny-a stream:false → %d in %v\n%s", code, time.Since(start), body)
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200", code)
		}
		r := runtest.Decode[realollama.Answer](t, body)
		if !r.Done || r.Message.Role != "assistant" || r.Model != "tiny-a" {
			t.Errorf("got done=%v role=%q model=%q, want done assistant tiny-a", r.Done, r.Message.Role, r.Model)
		}
		if r.LoadDuration <= 0 {
			t.Errorf("load_duration = %d, want > 0 for a cold load", r.LoadDuration)
		}
		if r.EvalCount > realollama.NumPredict {
			t.Errorf("eval_count = %d, want ≤ %d", r.EvalCount, realollama.NumPredict)
		}

		wantResident(t, s, "tiny-a:latest")
	})

	t.Run("SameWeightsShareRunner", func(t *testing.T) {
		code, _, body := call(t, s, http.MethodPost, "/api/chat", map[string]any{"model": "tiny-a2", "messages": hi, "stream": false})
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		r := runtest.Decode[realollama.Answer](t, body)
		names, ps := psNames(t, s)
		t.Logf("tiny-a2 after tiny-a: load_duration=%d; GET /api/ps → %s", r.LoadDuration, ps)
		if len(names) != 1 {
			t.Errorf("/api/ps names = %v, want one runner", names)
		}
	})

	t.Run("ChatStreamSwitchesModel", func(t *testing.T) {
		start := time.Now()
		code, hdr, body := call(t, s, http.MethodPost, "/api/chat", map[string]any{"model": "tiny-b", "messages": hi})
		t.Logf("POST /api/chat tiny-b (stream default) → %d %s in %v\n%s", code, hdr.Get("Content-Type"), time.Since(start), body)
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200", code)
		}
		if ct := hdr.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Errorf("Content-Type = %q, want application/x-ndjson", ct)
		}
		var last realollama.Answer
		lines := 0
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			lines++
			last = runtest.Decode[realollama.Answer](t, sc.Bytes())
			if last.Model != "tiny-b" {
				t.Errorf("chunk model %q, want tiny-b", last.Model)
			}
		}
		if lines < 2 || !last.Done || last.DoneReason == "" {
			t.Errorf("%d lines, last done=%v done_reason=%q; want chunks then a done line", lines, last.Done, last.DoneReason)
		}
		if last.LoadDuration <= 0 {
			t.Errorf("load_duration = %d, want > 0: with OLLAMA_MAX_LOADED_MODELS=1 a switch reloads", last.LoadDuration)
		}
		wantResident(t, s, "tiny-b:latest")
	})

	t.Run("OpenAIChatStreamIsSSE", func(t *testing.T) {
		code, hdr, body := call(t, s, http.MethodPost, "/v1/chat/completions", map[string]any{"model": "tiny-a", "messages": hi, "stream": true})
		t.Logf("POST /v1/chat/completions stream:true → %d %s\n%s", code, hdr.Get("Content-Type"), body)
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200", code)
		}
		if ct := hdr.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type = %q, want text/event-stream", ct)
		}
		if !bytes.HasPrefix(body, []byte("data: {")) || !bytes.HasSuffix(body, []byte("data: [DONE]\n\n")) {
			t.Errorf("body is not data: {...} events ending in data: [DONE]")
		}
	})

	t.Run("EmbedWorks", func(t *testing.T) {
		code, _, body := call(t, s, http.MethodPost, "/api/embed", map[string]any{"model": "tiny-a", "input": []string{"hello", "world"}})
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		r := runtest.Decode[struct {
			Embeddings [][]float32 `json:"embeddings"`
		}](t, body)
		if len(r.Embeddings) != 2 || len(r.Embeddings[0]) != 64 {
			t.Errorf("got %d embeddings of %d, want 2 of 64", len(r.Embeddings), len(r.Embeddings[0]))
		}
	})

	// The error shapes hopper passes through verbatim (DESIGN §4, §5).
	shapes := []struct {
		name     string
		path     string
		body     any
		wantCode int
		wantBody string
	}{
		{"KeepAliveNumericStringIsRejected", "/api/generate",
			map[string]any{"model": "tiny-a", "prompt": "hi", "keep_alive": "3600", "stream": false},
			400, `{"error":"time: missing unit in duration \"3600\""}`},
		{"ChatUnknownModel", "/api/chat",
			map[string]any{"model": "x", "messages": hi, "stream": false},
			404, `{"error":"model 'x' not found"}`},
		{"ChatUnknownModelStreaming", "/api/chat",
			map[string]any{"model": "x", "messages": hi, "stream": true},
			404, `{"error":"model 'x' not found"}`},
		{"GenerateUnknownModel", "/api/generate",
			map[string]any{"model": "x", "prompt": "hi", "stream": false},
			404, `{"error":"model 'x' not found"}`},
		{"GenerateUnknownModelStreaming", "/api/generate",
			map[string]any{"model": "x", "prompt": "hi", "stream": true},
			404, `{"error":"model 'x' not found"}`},
		{"EmbedUnknownModel", "/api/embed",
			map[string]any{"model": "x", "input": "hi"},
			404, `{"error":"model \"x\" not found, try pulling it first"}`},
		{"TruncatedJSON", "/api/chat",
			[]byte(`{"model": "tiny-a", "messages": [`),
			400, `{"error":"unexpected EOF"}`},
	}
	for _, c := range shapes {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := call(t, s, http.MethodPost, c.path, c.body)
			t.Logf("POST %s → %d %s", c.path, code, body)
			if code != c.wantCode || strings.TrimSpace(string(body)) != c.wantBody {
				t.Errorf("got %d %s, want %d %s", code, body, c.wantCode, c.wantBody)
			}
		})
	}

	t.Run("KeepAliveZeroUnloads", func(t *testing.T) {
		code, _, body := call(t, s, http.MethodPost, "/api/generate", map[string]any{"model": "tiny-a", "prompt": "", "keep_alive": 0})
		t.Logf("POST /api/generate keep_alive:0 prompt:\"\" → %d %s", code, body)
		if code != http.StatusOK {
			t.Fatalf("status %d, want 200", code)
		}
		r := runtest.Decode[realollama.Answer](t, bytes.TrimSpace(body))
		if !r.Done || r.DoneReason != "unload" {
			t.Errorf("done=%v done_reason=%q, want done unload", r.Done, r.DoneReason)
		}
	})
}
