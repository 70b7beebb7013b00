package ollamatest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

const chat = `{"model":"tiny","messages":[{"role":"user","content":"one two three four"}]}`

func TestFailNext(t *testing.T) {
	t.Run("BusyUsesOllamasExactText", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.FailNext(2, http.StatusServiceUnavailable, "")
		for range 2 {
			r := post(t, s, "/api/chat", chat)
			if r.status != 503 || r.body != `{"error":"server busy, please try again.  maximum pending requests exceeded"}` {
				t.Errorf("got %d %s", r.status, r.body)
			}
		}
		post(t, s, "/api/chat", chat).ok(t)
		if s.Loads() != 1 {
			t.Errorf("Loads %d, want failures before loading", s.Loads())
		}
	})
	t.Run("CustomStatusAndMessage", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.FailNext(1, http.StatusTooManyRequests, "slow down")
		if r := post(t, s, "/api/generate", `{"model":"tiny","prompt":"x"}`); r.status != 429 || r.body != `{"error":"slow down"}` {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	t.Run("OpenAIShapeOnV1", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.FailNext(1, http.StatusInternalServerError, "")
		r := post(t, s, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"x"}]}`)
		want := `{"error":{"message":"llama runner process has terminated: exit status 2","type":"api_error","param":null,"code":null}}` + "\n"
		if r.status != 500 || r.body != want {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	t.Run("RefusedRequestsDoNotConsumeIt", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.FailNext(1, http.StatusServiceUnavailable, "")
		get(t, s, "/api/ps").ok(t)
		if r := post(t, s, "/api/chat", `{"model":"nope","messages":[]}`); r.status != 404 {
			t.Errorf("unknown model: %d", r.status)
		}
		if r := post(t, s, "/api/embed", `{"model":"tiny","input":"x"}`); r.status != 503 {
			t.Errorf("embed after: %d, want the pending 503", r.status)
		}
	})
}

func TestHangNext(t *testing.T) {
	s := ollamatest.NewServer(t)
	s.HangNext(1)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/api/chat", strings.NewReader(chat))
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	post(t, s, "/api/chat", chat).ok(t)
	if s.MaxInFlight() < 1 {
		t.Errorf("the hung request was not counted")
	}
}

func TestDropMidStream(t *testing.T) {
	t.Run("Streaming", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.DropMidStream(1)
		r := post(t, s, "/api/chat", chat)
		if r.status != 200 || !errors.Is(r.err, io.ErrUnexpectedEOF) {
			t.Fatalf("got %d %v, want a body cut short", r.status, r.err)
		}
		chunks := r.lines(t)
		if len(chunks) == 0 || chunks[len(chunks)-1]["done"] != false {
			t.Errorf("chunks %v, want some tokens and no final chunk", chunks)
		}
		post(t, s, "/api/chat", chat).ok(t)
	})
	t.Run("NotStreaming", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.DropMidStream(1)
		r := post(t, s, "/api/chat", `{"model":"tiny","stream":false,"messages":[{"role":"user","content":"x"}]}`)
		if r.status != 200 || !errors.Is(r.err, io.ErrUnexpectedEOF) {
			t.Errorf("got %d %v %q", r.status, r.err, r.body)
		}
	})
	t.Run("Embedding", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.DropMidStream(1)
		if r := post(t, s, "/api/embed", `{"model":"tiny","input":"x"}`); !errors.Is(r.err, io.ErrUnexpectedEOF) {
			t.Errorf("got %d %v %q", r.status, r.err, r.body)
		}
	})
}

func TestErrorMidStream(t *testing.T) {
	t.Run("ErrorLineInsideTheStream", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.ErrorMidStream(1, "")
		r := post(t, s, "/api/generate", `{"model":"tiny","prompt":"x"}`).ok(t)
		chunks := r.lines(t)
		last := chunks[len(chunks)-1]
		if len(chunks) < 2 || last["error"] != ollamatest.RunnerCrashedMessage || len(last) != 1 {
			t.Errorf("chunks %v", chunks)
		}
	})
	t.Run("FiveHundredWhenNotStreaming", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.ErrorMidStream(1, "out of memory")
		r := post(t, s, "/api/chat", `{"model":"tiny","stream":false,"messages":[{"role":"user","content":"x"}]}`)
		if r.status != 500 || r.body != `{"error":"out of memory"}` {
			t.Errorf("got %d %s", r.status, r.body)
		}
	})
	t.Run("OpenAIStreamEndsWithoutDone", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		s.ErrorMidStream(1, "")
		ev := post(t, s, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"a b c"}]}`).ok(t).events()
		last := ev[len(ev)-1]
		if len(ev) < 2 || last == "[DONE]" || !strings.Contains(last, `"model":""`) {
			t.Errorf("events %q", ev)
		}
	})
}

func TestStopAndStart(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModels("tiny"), ollamatest.WithTokens(1000))
	url := s.URL
	post(t, s, "/api/chat", chatWith("tiny", `-1`)).ok(t)

	// A generation in progress (1000 tokens, 5s) dies with the server.
	s.SlowTokens(5 * time.Millisecond)
	r, closeBody := stream(t, t.Context(), s, "/api/chat", chat)
	defer closeBody()
	if _, err := r.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading the stream across Stop: %v, want it cut short", err)
	}
	s.SlowTokens(0)
	if _, err := http.Get(s.URL + "/api/version"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("while stopped: %v, want connection refused", err)
	}
	if got := s.Resident(); len(got) != 0 {
		t.Errorf("resident after Stop: %v", got)
	}
	s.Start()
	s.Start() // a second Start is harmless
	if s.URL != url {
		t.Errorf("URL changed from %s to %s", url, s.URL)
	}
	post(t, s, "/api/chat", chat).ok(t)
	if s.Loads() != 2 {
		t.Errorf("Loads %d, want a reload after the restart", s.Loads())
	}
	s.Close()
	s.Close()
	s.Start() // closed for good
	if _, err := http.Get(s.URL + "/"); err == nil {
		t.Error("server answers after Close")
	}
}
