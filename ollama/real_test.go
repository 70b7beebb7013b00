package ollama_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hopper-dev/hopper/internal/realollama"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

// TestClientAgainstRealOllama checks the stream folding and the error
// classes against a real Ollama (skipped when no binary is built; see
// internal/realollama).
func TestClientAgainstRealOllama(t *testing.T) {
	srv := realollama.Start(t)
	srv.CreateModel(t, "tiny", 1)
	c := ollamatest.Client(t, srv.URL)
	// The models answer with temperature 0, so both requests get one answer.
	for _, tt := range []struct{ name, path, body string }{
		{"Chat", "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"hello there"}]}`},
		{"Generate", "/api/generate", `{"model":"tiny","prompt":"hello there"}`},
	} {
		t.Run(tt.name+"StreamedEqualsUnstreamed", func(t *testing.T) {
			var body map[string]any
			_ = json.Unmarshal([]byte(tt.body), &body)
			body["stream"] = false
			plain, _ := json.Marshal(body)
			body["stream"] = true
			streamed, _ := json.Marshal(body)
			want, err := c.Do(t.Context(), tt.path, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			chunks := 0
			got, err := c.Do(t.Context(), tt.path, streamed, func([]byte) error { chunks++; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if g, w := withoutVolatile(t, got), withoutVolatile(t, want); !reflect.DeepEqual(g, w) || chunks < 2 {
				t.Errorf("streamed (%d chunks)\n%s\nunstreamed\n%s", chunks, got, want)
			}
		})
	}
	t.Run("OpenAIChatFoldsToAChatCompletion", func(t *testing.T) {
		out, err := c.Do(t.Context(), "/v1/chat/completions",
			[]byte(`{"model":"tiny","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		var cc struct {
			Object  string
			Choices []struct {
				Message      struct{ Role string }
				FinishReason string `json:"finish_reason"`
			}
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal(out, &cc); err != nil || cc.Object != "chat.completion" || len(cc.Choices) != 1 ||
			cc.Choices[0].Message.Role != "assistant" || cc.Choices[0].FinishReason == "" || cc.Usage.CompletionTokens == 0 {
			t.Errorf("got %s (%v)", out, err)
		}
	})
	t.Run("UnknownModelIsRejected", func(t *testing.T) {
		_, err := c.Do(t.Context(), "/api/chat", []byte(`{"model":"nope","messages":[{"role":"user","content":"x"}]}`), nil)
		wantRejected(404, "model 'nope' not found")(t, err)
	})
	t.Run("KeepAliveDigitsAsStringIsRejected", func(t *testing.T) {
		_, err := c.Do(t.Context(), "/api/generate", []byte(`{"model":"tiny","prompt":"x","keep_alive":"3600"}`), nil)
		wantRejected(400, `time: missing unit in duration "3600"`)(t, err)
	})
	t.Run("RunningListsTheModel", func(t *testing.T) {
		running, err := c.Running(t.Context())
		if err != nil || len(running) != 1 || !ollama.SameModel(running[0].Name, "tiny") {
			t.Errorf("Running = %+v, %v", running, err)
		}
	})
}
