package ollama_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
)

// wait bounds how long a test waits for what should happen at once.
const wait = 10 * time.Second

// flood writes prefix, then filler over and over, until the client goes
// away or limit bytes are written, and reports how many bytes it wrote. An
// empty contentType leaves the header, and the status, to the caller.
func flood(w http.ResponseWriter, r *http.Request, contentType, prefix, filler string, limit int) int {
	_, _ = io.Copy(io.Discard, r.Body)
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	n, _ := io.WriteString(w, prefix)
	block := []byte(strings.Repeat(filler, max(1, (64<<10)/len(filler))))
	for n < limit && r.Context().Err() == nil {
		m, err := w.Write(block)
		n += m
		if err != nil {
			break
		}
	}
	return n
}

// floodServer serves flood and sends what each request wrote on the
// returned channel.
func floodServer(t *testing.T, contentType, prefix, filler string, limit int) (*ollama.Client, <-chan int) {
	t.Helper()
	sent := make(chan int, 1)
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		sent <- flood(w, r, contentType, prefix, filler, limit)
	})
	return c, sent
}

// sentBytes waits for the server's count of bytes written.
func sentBytes(t *testing.T, sent <-chan int) int {
	t.Helper()
	return runtest.Receive(t, sent, wait, "the server to stop writing after Do returned (the connection was not closed)")
}

// doWithin runs Do in a goroutine and fails the test if it has not
// returned within wait.
func doWithin(t *testing.T, ctx context.Context, c *ollama.Client, path, body string, onChunk func([]byte) error) (out []byte, err error) {
	t.Helper()
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.Do(ctx, path, []byte(body), onChunk)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(wait):
		t.Fatalf("Do has not returned after %s", wait)
		return nil, nil
	}
}

// slack is what may sit in socket and transport buffers between the server
// and the client when the client stops reading.
const slack = 32 << 20

func TestDoFailsALineLongerThanMaxLine(t *testing.T) {
	const defaultMax = 16 << 20
	tests := []struct {
		name                        string
		contentType, prefix, filler string
		maxLine                     int
	}{
		{"EndlessNDJSONLineAtTheDefaultCap", "application/x-ndjson",
			`{"model":"tiny","message":{"role":"assistant","content":"`, "a", 0},
		{"EndlessNDJSONLine", "application/x-ndjson",
			`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}` + "\n" + `{"model":"tiny","message":{"role":"assistant","content":"`, "ab", 1 << 20},
		{"EndlessEventDataLine", "text/event-stream",
			`data: {"choices":[{"index":0,"delta":{"content":"`, "a", 1 << 20},
		{"EndlessEventOfShortDataLines", "text/event-stream",
			`data: {"choices":[{"index":0,"delta":{"content":"` + "\n", "data: aaaaaaaaaa\n", 1 << 20},
		{"EndlessCommentLine", "text/event-stream", ": ", "a", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			max := tt.maxLine
			if max == 0 {
				max = defaultMax
			}
			c, sent := floodServer(t, tt.contentType, tt.prefix, tt.filler, max+4*slack)
			c.MaxLine = tt.maxLine
			var chunks []string
			_, err := doWithin(t, t.Context(), c, "/api/chat", chatBody, func(b []byte) error {
				chunks = append(chunks, string(b))
				return nil
			})
			wantJobFailed(200, "")(t, err)
			if !errors.Is(err, ollama.ErrLineTooLong) || !strings.Contains(err.Error(), "line longer than") {
				t.Errorf("err = %v, want it to say the line was too long", err)
			}
			for _, ch := range chunks {
				if len(ch) > max {
					t.Errorf("onChunk got %d bytes, more than MaxLine", len(ch))
				}
			}
			if n := sentBytes(t, sent); n > max+slack {
				t.Errorf("the client read %d bytes of a line capped at %d", n, max)
			}
		})
	}
}

func TestDoReadsALineAsLongAsMaxLine(t *testing.T) {
	const max = 1 << 20
	done := `{"model":"tiny","message":{"role":"assistant","content":""},"done":true}`
	head := `{"model":"tiny","message":{"role":"assistant","content":"`
	tail := `"},"done":false}`
	text := strings.Repeat("x", max-len(head)-len(tail))
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		writeLines(w, "application/x-ndjson", head+text+tail+"\n", done+"\n")
	})
	c.MaxLine = max
	out, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), nil)
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if got := ollama.AnswerText(out); got != text {
		t.Errorf("got %d bytes of content, want %d", len(got), len(text))
	}
}

func TestDoFailsAnAnswerLargerThanMaxAnswer(t *testing.T) {
	const max = 1 << 20
	t.Run("JSONAnswer", func(t *testing.T) {
		c, sent := floodServer(t, "application/json", `{"model":"e","embeddings":[[`, "0.5,", max+4*slack)
		c.MaxAnswer = max
		_, err := doWithin(t, t.Context(), c, "/api/embed", `{"model":"e","input":"x"}`, nil)
		wantJobFailed(200, "")(t, err)
		if !errors.Is(err, ollama.ErrAnswerTooLarge) {
			t.Errorf("err = %v, want ErrAnswerTooLarge", err)
		}
		if n := sentBytes(t, sent); n > max+slack {
			t.Errorf("the client read %d bytes of an answer capped at %d", n, max)
		}
	})
	t.Run("JSONAnswerWithALargerContentLength", func(t *testing.T) {
		c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "2000000")
			_, _ = io.WriteString(w, `{"model":"e","embeddings":[[`)
		})
		c.MaxAnswer = max
		_, err := doWithin(t, t.Context(), c, "/api/embed", `{"model":"e","input":"x"}`, nil)
		if !errors.Is(err, ollama.ErrAnswerTooLarge) {
			t.Errorf("err = %v, want ErrAnswerTooLarge", err)
		}
	})
	for _, s := range []struct{ name, contentType, filler string }{
		{"EndlessNDJSONStream", "application/x-ndjson", `{"model":"tiny","message":{"role":"assistant","content":"token "},"done":false}` + "\n"},
		{"EndlessEventStream", "text/event-stream", `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"token "}}]}` + "\n\n"},
	} {
		t.Run(s.name, func(t *testing.T) {
			// Every line is well formed; only the folded answer grows.
			c, sent := floodServer(t, s.contentType, "", s.filler, 64*max+4*slack)
			c.MaxAnswer = max
			chunks := 0
			_, err := doWithin(t, t.Context(), c, "/api/chat", chatBody, func([]byte) error { chunks++; return nil })
			wantJobFailed(200, "")(t, err)
			if !errors.Is(err, ollama.ErrAnswerTooLarge) {
				t.Errorf("err = %v, want ErrAnswerTooLarge", err)
			}
			if chunks < max/len("token ") {
				t.Errorf("failed after %d chunks, before the answer reached MaxAnswer", chunks)
			}
			if n := sentBytes(t, sent); n > 64*max+slack {
				t.Errorf("the client read %d bytes", n)
			}
		})
	}
}

// trickle sends prefix and then one byte every millisecond, never a
// newline, until the client goes away (it closes gone when it sees that) or
// quit is closed.
func trickle(status int, contentType, prefix string, quit <-chan struct{}, gone chan<- struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer close(gone)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, prefix)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-quit:
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(w, "a"); err != nil {
				return
			}
		}
	}
}

// deafTransport hides the request's cancellation from the transport, as a
// RoundTripper that does not watch the context would: only closing the
// response body stops a read.
type deafTransport struct{ http.RoundTripper }

func (d deafTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return d.RoundTripper.RoundTrip(r.WithContext(context.WithoutCancel(r.Context())))
}

func TestDoContextStopsATrickledRead(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		prefix      string
	}{
		{"NDJSONLine", 200, "application/x-ndjson",
			`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}` + "\n" + `{"model":"tiny","message":{"role":"assistant","content":"`},
		{"EventData", 200, "text/event-stream", `data: {"choices":[{"index":0,"delta":{"content":"`},
		{"JSONAnswer", 200, "application/json", `{"model":"e","embeddings":[[0.`},
		{"ErrorBody", 500, "text/plain", "llama runner "},
	}
	for _, deaf := range []bool{false, true} {
		for _, tt := range tests {
			name := tt.name
			if deaf {
				name += "OnATransportThatIgnoresTheContext"
			}
			t.Run(name, func(t *testing.T) {
				gone := make(chan struct{})
				quit := make(chan struct{})
				c := rawServer(t, trickle(tt.status, tt.contentType, tt.prefix, quit, gone))
				t.Cleanup(func() { close(quit) }) // before the server's Close, which waits for the handler
				if deaf {
					tr := &http.Transport{}
					t.Cleanup(tr.CloseIdleConnections)
					var err error
					if c, err = ollama.New(c.BaseURL(), &http.Client{Transport: deafTransport{tr}}); err != nil {
						t.Fatal(err)
					}
				}
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				defer cancel()
				var chunks []string
				_, err := doWithin(t, ctx, c, "/api/chat", chatBody, func(b []byte) error {
					chunks = append(chunks, string(b))
					return nil
				})
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err = %v, want context.DeadlineExceeded", err)
				}
				for _, ch := range chunks {
					if !strings.HasSuffix(ch, "}") {
						t.Errorf("onChunk got a partial line %.80q…", ch)
					}
				}
				select {
				case <-gone:
				case <-time.After(wait):
					t.Fatal("the connection stayed open after Do returned")
				}
			})
		}
	}
}

func TestDoStallTimeoutStopsAReadOnATransportThatIgnoresTheContext(t *testing.T) {
	srv := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		writeLines(w, "application/x-ndjson", `{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`+"\n")
		<-r.Context().Done()
	})
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := ollama.New(srv.BaseURL(), &http.Client{Transport: deafTransport{tr}})
	if err != nil {
		t.Fatal(err)
	}
	c.StallTimeout = 50 * time.Millisecond
	_, err = doWithin(t, t.Context(), c, "/api/chat", chatBody, nil)
	wantJobFailed(200, "")(t, err)
	if !strings.Contains(err.Error(), "no data from target for 50ms") {
		t.Errorf("err = %v, want it to name the stall", err)
	}
}

// wantClipped checks that msg is the first 4 KiB of the target's text
// (whole UTF-8 characters) and an ellipsis.
func wantClipped(t *testing.T, msg, text string) {
	t.Helper()
	body, ok := strings.CutSuffix(msg, "…")
	if !ok || len(body) > 4<<10 || len(body) < 4<<10-utf8.UTFMax || !strings.HasPrefix(text, body) || !utf8.ValidString(body) {
		t.Errorf("message of %d bytes (%.40q…%q), want the first 4 KiB of the target's %d and …",
			len(msg), msg, msg[max(0, len(msg)-8):], len(text))
	}
}

func TestDoClipsTheTargetsMessage(t *testing.T) {
	long := strings.Repeat("é is a two-byte letter; ", 1<<15) // 800 KiB
	tests := []struct {
		name    string
		handler http.HandlerFunc
		message func(error) string
	}{
		{"PlainTextInternalServerError", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, long)
		}, jobFailedMessage},
		{"OllamaErrorObjectWithALongMessage", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"`+long[:40<<10]+`"}`)
		}, func(err error) string {
			var re *ollama.RejectedError
			if !errors.As(err, &re) {
				return "not a *RejectedError: " + err.Error()
			}
			return re.Message
		}},
		{"BusyServer", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, long)
		}, func(err error) string {
			var ue *ollama.UnavailableError
			if !errors.As(err, &ue) {
				return "not an *UnavailableError: " + err.Error()
			}
			return ue.Err.Error()
		}},
		{"ErrorLineInsideAStream", func(w http.ResponseWriter, r *http.Request) {
			writeLines(w, "application/x-ndjson", `{"error":"`+long+`"}`+"\n")
		}, jobFailedMessage},
		{"ErrorEventInsideAStream", func(w http.ResponseWriter, r *http.Request) {
			writeLines(w, "text/event-stream", `data: {"error":{"message":"`+long+`"}}`+"\n\n")
		}, jobFailedMessage},
		{"ErrorObjectAsTheAnswer", func(w http.ResponseWriter, r *http.Request) {
			writeLines(w, "application/json", `{"error":"`+long+`"}`)
		}, jobFailedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawServer(t, tt.handler)
			_, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), nil)
			if err == nil {
				t.Fatal("Do succeeded")
			}
			wantClipped(t, tt.message(err), long)
			if len(err.Error()) > 5<<10 {
				t.Errorf("Error() is %d bytes", len(err.Error()))
			}
		})
	}
	t.Run("ShortMessagesStayWhole", func(t *testing.T) {
		msg := strings.Repeat("x", 4<<10)
		c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":"`+msg+`"}`)
		})
		_, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), nil)
		wantJobFailed(500, msg)(t, err)
	})
}

func jobFailedMessage(err error) string {
	var jf *ollama.JobFailedError
	if !errors.As(err, &jf) {
		return "not a *JobFailedError: " + err.Error()
	}
	return jf.Message
}

// TestDoFoldsAStreamWithoutCopyingIt checks what a long well-formed stream
// costs: everything allocated while it is read, by the client and by the
// test server, must stay well below the stream's size. Reading lines into
// fresh slices, decoding every chunk into fresh values or keeping the chunks
// would each cost more than the stream itself.
func TestDoFoldsAStreamWithoutCopyingIt(t *testing.T) {
	for _, framing := range []string{"ndjson", "sse"} {
		t.Run(framing, func(t *testing.T) {
			stream := benchStream(framing, 5, 8<<20)
			contentType := map[string]string{"ndjson": "application/x-ndjson", "sse": "text/event-stream"}[framing]
			c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", contentType)
				_, _ = w.Write(stream)
			})
			var lines int
			alloc := allocated(func() {
				out, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), func(b []byte) error {
					lines++
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if text := ollama.AnswerText(out); len(text) != 5*(lines-1) {
					t.Errorf("folded %d bytes of text from %d chunks", len(text), lines)
				}
			})
			if ratio := float64(alloc) / float64(len(stream)); ratio > 0.5 {
				t.Errorf("reading a %d-byte stream allocated %d bytes, %.2f× its size; want at most 0.5×", len(stream), alloc, ratio)
			}
		})
	}
}

// allocated returns the bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDoChunkMayBeAppendedToButNotKept(t *testing.T) {
	lines := []string{
		`{"model":"tiny","message":{"role":"assistant","content":"a"},"done":false}`,
		`{"model":"tiny","message":{"role":"assistant","content":"b"},"done":false}`,
		`{"model":"tiny","message":{"role":"assistant","content":""},"done":true}`,
	}
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) {
		// One write: the lines sit side by side in the client's buffer.
		writeLines(w, "application/x-ndjson", strings.Join(lines, "\n")+"\n")
	})
	var got []string
	out, err := c.Do(t.Context(), "/api/chat", []byte(chatBody), func(chunk []byte) error {
		// What a careless caller does: append to the chunk it was given.
		got = append(got, string(append(chunk, "\n{garbage}\n"...)))
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if text := ollama.AnswerText(out); text != "ab" {
		t.Errorf("folded %q, want %q", text, "ab")
	}
	for i, g := range got {
		if want := lines[i] + "\n{garbage}\n"; g != want {
			t.Errorf("chunk %d: got %q, want %q", i, g, want)
		}
	}
}
