package ollama_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

func fakeClient(t *testing.T, opts ...ollamatest.Option) (*ollama.Client, *ollamatest.Server) {
	t.Helper()
	s := ollamatest.NewServer(t, opts...)
	return s.Client(), s
}

// withoutVolatile decodes an answer and drops what differs between two runs
// of the same request: timestamps, durations and ids.
func withoutVolatile(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	for _, k := range []string{"created_at", "created", "id", "total_duration", "load_duration", "prompt_eval_duration", "eval_duration"} {
		delete(m, k)
	}
	return m
}

func TestStreamedAnswerEqualsTheUnstreamedOne(t *testing.T) {
	tests := []struct {
		name, path, body string
	}{
		{"Chat", "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"why is the sky blue"}]}`},
		{"ChatWithThinking", "/api/chat", `{"model":"deep","messages":[{"role":"user","content":"hmm?"}]}`},
		{"Generate", "/api/generate", `{"model":"tiny","prompt":"why is the sky blue"}`},
		{"GenerateCutByNumPredict", "/api/generate", `{"model":"tiny","prompt":"a b c d e f","options":{"num_predict":3}}`},
		{"OpenAIChat", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hello"}]}`},
		{"OpenAICompletion", "/v1/completions", `{"model":"tiny","prompt":"hello"}`},
	}
	c, _ := fakeClient(t, ollamatest.WithModels("tiny"), ollamatest.WithModel(ollamatest.Model{Name: "deep", Thinking: true}))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body map[string]any
			if err := json.Unmarshal([]byte(tt.body), &body); err != nil {
				t.Fatal(err)
			}
			body["stream"] = false
			plain, _ := json.Marshal(body)
			body["stream"] = true
			body["stream_options"] = map[string]any{"include_usage": true}
			streamed, _ := json.Marshal(body)

			want, err := c.Do(t.Context(), tt.path, plain, nil)
			if err != nil {
				t.Fatalf("stream:false: %v", err)
			}
			chunks := 0
			got, err := c.Do(t.Context(), tt.path, streamed, func([]byte) error { chunks++; return nil })
			if err != nil {
				t.Fatalf("stream:true: %v", err)
			}
			if chunks < 2 {
				t.Errorf("got %d chunks, want a real stream", chunks)
			}
			if g, w := withoutVolatile(t, got), withoutVolatile(t, want); !reflect.DeepEqual(g, w) {
				t.Errorf("streamed answer\n%s\ndiffers from unstreamed\n%s", got, want)
			}
		})
	}
}

func TestClientAgainstFakeClassifiesFaults(t *testing.T) {
	body := []byte(`{"model":"tiny","messages":[{"role":"user","content":"one two three four"}]}`)
	t.Run("BusyServerIsUnavailable", func(t *testing.T) {
		c, s := fakeClient(t)
		s.FailNext(1, 503, "")
		_, err := c.Do(t.Context(), "/api/chat", body, nil)
		wantUnavailable(503, 0)(t, err)
		if _, err := c.Do(t.Context(), "/api/chat", body, nil); err != nil {
			t.Errorf("the request after the fault: %v", err)
		}
	})
	t.Run("RunnerCrashIsJobFailed", func(t *testing.T) {
		c, s := fakeClient(t)
		s.FailNext(1, 500, "")
		_, err := c.Do(t.Context(), "/api/chat", body, nil)
		wantJobFailed(500, ollamatest.RunnerCrashedMessage)(t, err)
	})
	t.Run("UnknownModelIsRejectedEvenWhenStreaming", func(t *testing.T) {
		c, _ := fakeClient(t)
		_, err := c.Do(t.Context(), "/api/chat", []byte(`{"model":"nope","stream":true,"messages":[]}`), nil)
		wantRejected(404, "model 'nope' not found")(t, err)
	})
	t.Run("KeepAliveStringOfDigitsIsRejectedButKeepAliveNumberIsNot", func(t *testing.T) {
		c, _ := fakeClient(t)
		_, err := c.Do(t.Context(), "/api/generate", []byte(`{"model":"tiny","prompt":"x","keep_alive":"3600"}`), nil)
		wantRejected(400, `time: missing unit in duration "3600"`)(t, err)
		ok := []byte(`{"model":"tiny","prompt":"x","keep_alive":` + string(ollama.KeepAlive("3600")) + `}`)
		if _, err := c.Do(t.Context(), "/api/generate", ok, nil); err != nil {
			t.Errorf("keep_alive from KeepAlive: %v", err)
		}
	})
	t.Run("ErrorMidStreamIsJobFailed", func(t *testing.T) {
		c, s := fakeClient(t)
		s.ErrorMidStream(1, "model ran out of memory")
		chunks := 0
		_, err := c.Do(t.Context(), "/api/chat", body, func([]byte) error { chunks++; return nil })
		wantJobFailed(200, "model ran out of memory")(t, err)
		if chunks < 2 {
			t.Errorf("saw %d chunks, want tokens before the error line", chunks)
		}
	})
	t.Run("ErrorMidOpenAIStreamIsJobFailed", func(t *testing.T) {
		c, s := fakeClient(t)
		s.ErrorMidStream(1, "")
		_, err := c.Do(t.Context(), "/v1/chat/completions",
			[]byte(`{"model":"tiny","stream":true,"messages":[{"role":"user","content":"one two three"}]}`), nil)
		wantJobFailed(200, "")(t, err)
	})
	t.Run("DropMidStreamIsJobFailed", func(t *testing.T) {
		c, s := fakeClient(t)
		s.DropMidStream(1)
		_, err := c.Do(t.Context(), "/api/chat", body, nil)
		wantJobFailed(200, "")(t, err)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("err = %v, want io.ErrUnexpectedEOF inside", err)
		}
	})
	t.Run("DropOfUnstreamedAnswerIsJobFailed", func(t *testing.T) {
		c, s := fakeClient(t)
		s.DropMidStream(1)
		_, err := c.Do(t.Context(), "/api/chat", []byte(`{"model":"tiny","stream":false,"messages":[{"role":"user","content":"x"}]}`), nil)
		wantJobFailed(200, "")(t, err)
	})
	t.Run("HangEndsWithTheDeadline", func(t *testing.T) {
		c, s := fakeClient(t)
		s.HangNext(1)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Do(ctx, "/api/chat", body, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("StalledTokensAreJobFailed", func(t *testing.T) {
		// 1000 tokens, 5ms apart: the generation is still running when the
		// first chunk arrives and slows it down for good.
		c, s := fakeClient(t, ollamatest.WithTokens(1000), ollamatest.WithTokenDelay(5*time.Millisecond))
		c.StallTimeout = 50 * time.Millisecond
		_, err := c.Do(t.Context(), "/api/chat", body, func([]byte) error {
			s.SlowTokens(time.Hour)
			return nil
		})
		wantJobFailed(200, "")(t, err)
	})
	t.Run("StoppedServerIsUnavailableUntilStarted", func(t *testing.T) {
		c, s := fakeClient(t)
		s.Stop()
		_, err := c.Do(t.Context(), "/api/chat", body, nil)
		wantUnavailable(0, 0)(t, err)
		if _, err := c.Version(t.Context()); err == nil {
			t.Error("Version succeeded while stopped")
		}
		s.Start()
		if _, err := c.Do(t.Context(), "/api/chat", body, nil); err != nil {
			t.Errorf("after Start: %v", err)
		}
	})
}

func TestClientAgainstFakeReportsResidency(t *testing.T) {
	c, _ := fakeClient(t, ollamatest.WithModels("tiny", "other"))
	v, err := c.Version(t.Context())
	if err != nil || v != "0.17.4" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	running, err := c.Running(t.Context())
	if err != nil || len(running) != 0 {
		t.Fatalf("Running before any request = %v, %v; want none", running, err)
	}
	if _, err := c.Do(t.Context(), "/api/generate", []byte(`{"model":"tiny","prompt":"hi","stream":false,"keep_alive":-1}`), nil); err != nil {
		t.Fatal(err)
	}
	running, err = c.Running(t.Context())
	if err != nil || len(running) != 1 {
		t.Fatalf("Running = %v, %v; want one model", running, err)
	}
	if !ollama.SameModel(running[0].Name, "tiny") || running[0].Name != "tiny:latest" {
		t.Errorf("resident %q, want tiny:latest", running[0].Name)
	}
	if running[0].ExpiresAt.Before(time.Now().AddDate(100, 0, 0)) {
		t.Errorf("expires_at %v, want far in the future for keep_alive -1", running[0].ExpiresAt)
	}
	out, err := c.Do(t.Context(), "/api/embed", []byte(`{"model":"other","input":["a","b"]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var emb struct{ Embeddings [][]float64 }
	if err := json.Unmarshal(out, &emb); err != nil || len(emb.Embeddings) != 2 {
		t.Errorf("embed answer %s: %v", out, err)
	}
	if !strings.Contains(string(out), `"model":"other"`) {
		t.Errorf("embed answer %s lacks the model", out)
	}
}
