package ollama_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

// rawServer serves h over loopback and returns a client for it.
func rawServer(t *testing.T, h http.HandlerFunc) *ollama.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := ollama.New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// writeLines sends a 200 stream of the given content type and lines.
func writeLines(w http.ResponseWriter, contentType string, lines ...string) {
	w.Header().Set("Content-Type", contentType)
	for _, l := range lines {
		_, _ = io.WriteString(w, l)
		w.(http.Flusher).Flush()
	}
}

// hangUp closes the connection under the handler. With reset, the close
// sends a TCP RST instead of a FIN.
func hangUp(t *testing.T, w http.ResponseWriter, reset bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

const chatBody = `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`

func TestDoClassifiesFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler func(t *testing.T, w http.ResponseWriter, r *http.Request)
		check   func(t *testing.T, err error)
	}{
		{
			name: "ResetBeforeFirstByteIsUnavailable",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				hangUp(t, w, true)
			},
			check: wantUnavailable(0, 0),
		},
		{
			name: "EOFBeforeFirstByteIsUnavailable",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				hangUp(t, w, false)
			},
			check: wantUnavailable(0, 0),
		},
		{
			name: "TooManyRequestsIsUnavailableWithRetryAfter",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "7")
				http.Error(w, `{"error":"slow down"}`, http.StatusTooManyRequests)
			},
			check: wantUnavailable(429, 7*time.Second),
		},
		{
			name:    "ServerBusyIsUnavailable",
			handler: reply("application/json; charset=utf-8", http.StatusServiceUnavailable, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`),
			check: func(t *testing.T, err error) {
				wantUnavailable(503, 0)(t, err)
				if !strings.Contains(err.Error(), "server busy, please try again.  maximum pending requests exceeded") {
					t.Errorf("error %q lacks Ollama's message", err)
				}
			},
		},
		{
			name:    "InternalServerErrorIsJobFailed",
			handler: reply("", http.StatusInternalServerError, `{"error":"llama runner process has terminated: exit status 2"}`),
			check:   wantJobFailed(500, "llama runner process has terminated: exit status 2"),
		},
		{
			name: "BadGatewayIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				http.Error(w, "upstream gone", http.StatusBadGateway)
			},
			check: wantJobFailed(502, "upstream gone"),
		},
		{
			name:    "ModelNotFoundIsRejectedWithOllamasMessage",
			handler: reply("", http.StatusNotFound, `{"error":"model 'x' not found"}`),
			check:   wantRejected(404, "model 'x' not found"),
		},
		{
			name:    "OpenAIStyleErrorIsRejectedWithItsMessage",
			handler: reply("", http.StatusBadRequest, `{"error":{"message":"[] is too short - 'messages'","type":"invalid_request_error","param":null,"code":null}}`+"\n"),
			check:   wantRejected(400, "[] is too short - 'messages'"),
		},
		{
			name:    "PlainTextNotFoundIsRejected",
			handler: reply("text/plain", http.StatusNotFound, "404 page not found"),
			check:   wantRejected(404, "404 page not found"),
		},
		{
			name: "ErrorLineInsideStreamIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "application/x-ndjson",
					`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n",
					`{"error":"an error was encountered while running the model"}`+"\n")
			},
			check: wantJobFailed(200, "an error was encountered while running the model"),
		},
		{
			name: "DropMidStreamIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "application/x-ndjson",
					`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n")
				hangUp(t, w, false)
			},
			check: func(t *testing.T, err error) {
				wantJobFailed(200, "")(t, err)
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("err = %v, want it to wrap io.ErrUnexpectedEOF", err)
				}
			},
		},
		{
			name: "StreamEndingBeforeDoneIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "application/x-ndjson",
					`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n")
			},
			check: wantJobFailed(200, ""),
		},
		{
			name: "GarbageLineIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "application/x-ndjson", "not json\n")
			},
			check: wantJobFailed(200, ""),
		},
		{
			name: "EventStreamWithoutDoneIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "text/event-stream",
					`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"a"},"finish_reason":null}]}`+"\n\n")
			},
			check: wantJobFailed(200, ""),
		},
		{
			name: "ErrorEventIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "text/event-stream", `data: {"error":{"message":"overloaded","type":"api_error"}}`+"\n\n")
			},
			check: wantJobFailed(200, "overloaded"),
		},
		{
			name: "EndlessErrorBodyIsJobFailedWithItsStart",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusInternalServerError)
				flood(w, r, "", "out of memory ", "again ", 256<<20)
			},
			check: func(t *testing.T, err error) {
				wantJobFailed(500, "")(t, err)
				wantClipped(t, jobFailedMessage(err), "out of memory "+strings.Repeat("again ", 1000))
			},
		},
		{
			name: "EndlessLineIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				flood(w, r, "application/x-ndjson", `{"model":"tiny","message":{"role":"assistant","content":"`, "a", 256<<20)
			},
			check: wantLineTooLong,
		},
		{
			name: "EndlessEventIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				flood(w, r, "text/event-stream", "", "data: a\n", 256<<20)
			},
			check: wantLineTooLong,
		},
		{
			name: "WronglyTypedFieldIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "application/x-ndjson", `{"model":"tiny","message":{"role":"assistant","content":5},"done":false}`+"\n")
			},
			check: func(t *testing.T, err error) {
				wantJobFailed(200, "")(t, err)
				if !strings.Contains(err.Error(), "message.content: not a JSON string") {
					t.Errorf("err = %v, want it to name the field", err)
				}
			},
		},
		{
			name: "JSONErrorWithStatusOKIsJobFailed",
			handler: func(t *testing.T, w http.ResponseWriter, r *http.Request) {
				writeLines(w, "application/json", `{"error":"odd"}`)
			},
			check: wantJobFailed(200, "odd"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawServer(t, func(w http.ResponseWriter, r *http.Request) { tt.handler(t, w, r) })
			out, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), nil)
			if err == nil {
				t.Fatalf("Do succeeded with %s, want an error", out)
			}
			tt.check(t, err)
		})
	}
}

// reply answers with status and body, and the Content-Type contentType
// unless it is empty.
func reply(contentType string, status int, body string) func(*testing.T, http.ResponseWriter, *http.Request) {
	return func(t *testing.T, w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// wantLineTooLong checks for the error of a line over the 16 MiB limit.
func wantLineTooLong(t *testing.T, err error) {
	t.Helper()
	wantJobFailed(200, "")(t, err)
	if jobFailedMessage(err) != "target sent a line longer than 16 MiB" || !errors.Is(err, ollama.ErrLineTooLong) {
		t.Errorf("err = %v, want ErrLineTooLong", err)
	}
}

// errorAs returns the E in err's chain, failing the test if there is none.
func errorAs[E error](t *testing.T, err error) E {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("err = %T %v, want %T", err, err, e)
	}
	return e
}

func wantUnavailable(status int, retryAfter time.Duration) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		ue := errorAs[*ollama.UnavailableError](t, err)
		if ue.Status != status || ue.RetryAfter != retryAfter {
			t.Errorf("got status %d retry-after %v, want %d %v", ue.Status, ue.RetryAfter, status, retryAfter)
		}
	}
}

func wantJobFailed(status int, message string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		jf := errorAs[*ollama.JobFailedError](t, err)
		if jf.Status != status {
			t.Errorf("status = %d, want %d", jf.Status, status)
		}
		if message != "" && (jf.Message != message || err.Error() != message) {
			t.Errorf("message %q, Error %q, want %q", jf.Message, err.Error(), message)
		}
	}
}

func wantRejected(status int, message string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		re := errorAs[*ollama.RejectedError](t, err)
		if re.Status != status || err.Error() != message {
			t.Errorf("got %d %q, want %d %q", re.Status, err.Error(), status, message)
		}
	}
}

func TestDoConnectionRefusedIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c, err := ollama.New(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(t.Context(), "/api/chat", []byte(chatBody), nil)
	wantUnavailable(0, 0)(t, err)
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("err = %v, want it to say the connection was refused", err)
	}
}

func TestDoDNSFailureIsUnavailable(t *testing.T) {
	dnsErr := &net.DNSError{Err: "no such host", Name: "ollama.invalid", IsNotFound: true}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) { return nil, dnsErr },
	}}
	c, err := ollama.New("ollama.invalid", hc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Do(t.Context(), "/api/chat", []byte(chatBody), nil)
	wantUnavailable(0, 0)(t, err)
	var got *net.DNSError
	if !errors.As(err, &got) {
		t.Errorf("err = %v, want it to wrap the *net.DNSError", err)
	}
}

// stallingServer sends one chunk, then nothing until the client goes.
func stallingServer(t *testing.T) *ollama.Client {
	return rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		writeLines(w, "application/x-ndjson", `{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n")
		<-r.Context().Done()
	})
}

func TestDoStalledStreamIsJobFailed(t *testing.T) {
	c := stallingServer(t)
	c.StallTimeout = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := c.Do(ctx, "/api/chat", []byte(chatBody), nil)
	wantJobFailed(200, "")(t, err)
	if !strings.Contains(err.Error(), "no data from target for 50ms") {
		t.Errorf("err = %v, want it to name the stall", err)
	}
}

func TestDoStallTimeoutDoesNotLimitTheWaitForTheResponse(t *testing.T) {
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		// A model load: nothing at all is sent for longer than the stall timeout.
		select {
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		writeLines(w, "application/x-ndjson",
			`{"model":"tiny","message":{"role":"assistant","content":"ok"},"done":true}`+"\n")
	})
	c.StallTimeout = 20 * time.Millisecond
	out, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), nil)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if !strings.Contains(string(out), `"content":"ok"`) {
		t.Errorf("got %s", out)
	}
}

func TestDoCancelReturnsContextError(t *testing.T) {
	c := stallingServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := c.Do(ctx, "/api/chat", []byte(chatBody), func([]byte) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var jf *ollama.JobFailedError
	var ue *ollama.UnavailableError
	if errors.As(err, &jf) || errors.As(err, &ue) {
		t.Errorf("err = %T, want a plain context error", err)
	}
}

func TestDoDeadlineBeforeResponseReturnsDeadlineExceeded(t *testing.T) {
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // the request context only notices a gone client after the body
		<-r.Context().Done()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, "/api/chat", []byte(chatBody), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestDoReturnsOnChunkError(t *testing.T) {
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeLines(w, "application/x-ndjson",
			`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n",
			`{"model":"tiny","message":{"role":"assistant","content":""},"done":true}`+"\n")
	})
	diskFull := errors.New("disk full")
	_, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), func([]byte) error { return diskFull })
	if !errors.Is(err, diskFull) {
		t.Fatalf("err = %v, want the onChunk error", err)
	}
}

func TestDoPassesTheErrorLineToOnChunk(t *testing.T) {
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeLines(w, "application/x-ndjson",
			`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n",
			`{"error":"boom"}`+"\n")
	})
	var got []string
	_, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), func(b []byte) error {
		got = append(got, string(b))
		return nil
	})
	wantJobFailed(200, "boom")(t, err)
	want := []string{`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`, `{"error":"boom"}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("chunks = %q, want %q", got, want)
	}
}

func TestDoSendsTheBodyAsJSONToThePath(t *testing.T) {
	var gotPath, gotType, gotBody string
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotPath, gotType, gotBody = r.URL.Path, r.Header.Get("Content-Type"), string(b)
		writeLines(w, "application/json; charset=utf-8", `{"model":"e","embeddings":[[0.5]]}`)
	})
	out, err := c.Do(t.Context(), "/api/embed", []byte(`{"model":"e","input":"x"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if gotPath != "/api/embed" || gotType != "application/json" || gotBody != `{"model":"e","input":"x"}` {
		t.Errorf("server got %s %s %s", gotPath, gotType, gotBody)
	}
	if string(out) != `{"model":"e","embeddings":[[0.5]]}` {
		t.Errorf("out = %s", out)
	}
}

func TestRunningAndVersion(t *testing.T) {
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/ps":
			writeLines(w, "application/json; charset=utf-8", `{"models":[{"name":"tiny:latest","model":"tiny:latest","size":1024,"digest":"abc","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"1B","quantization_level":"Q4_K_M"},"expires_at":"2318-02-21T01:32:38.123Z","size_vram":512,"context_length":4096}]}`)
		case "/api/version":
			writeLines(w, "application/json; charset=utf-8", `{"version":"0.17.4"}`)
		default:
			http.NotFound(w, r)
		}
	})
	models, err := c.Running(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 {
		t.Fatalf("got %d models, want 1", len(models))
	}
	m := models[0]
	if m.Name != "tiny:latest" || m.Size != 1024 || m.SizeVRAM != 512 || m.ContextLength != 4096 ||
		m.ExpiresAt.Year() != 2318 || m.Details.Family != "llama" {
		t.Errorf("got %+v", m)
	}
	v, err := c.Version(t.Context())
	if err != nil || v != "0.17.4" {
		t.Errorf("Version = %q, %v; want 0.17.4", v, err)
	}
}

func TestRunningClassifiesFailures(t *testing.T) {
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"server busy"}`, http.StatusServiceUnavailable)
	})
	_, err := c.Running(t.Context())
	wantUnavailable(503, 0)(t, err)
}

func TestDoStallTimeoutIgnoresTimeSpentInOnChunk(t *testing.T) {
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeLines(w, "application/x-ndjson",
			`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n",
			`{"model":"tiny","message":{"role":"assistant","content":""},"done":true}`+"\n")
	})
	c.StallTimeout = 20 * time.Millisecond
	_, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), func([]byte) error {
		<-time.After(60 * time.Millisecond) // a slow disk on our side
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
}
