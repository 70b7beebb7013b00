package runner_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
)

// TestOpenAIJobsKeepTheirModelLoaded checks that the configured keep_alive
// reaches the models of /v1 jobs, whose requests Ollama's OpenAI layer
// sends on without one: once such a job has loaded its model, a load-only
// request to the native endpoint behind it sets it, before the job ends.
func TestOpenAIJobsKeepTheirModelLoaded(t *testing.T) {
	tests := []struct {
		name, endpoint, model, body, native string
		keepAlive                           string // configured
		want                                string // keep_alive of the load-only request
	}{
		{"ChatGetsTheDefaultForever", "openai.chat", "m1", `"messages":[{"role":"user","content":"hi"}]`, "/api/chat", "", "-1"},
		{"CompletionsGetTheConfiguredValue", "openai.completions", "m1", `"prompt":"hi"`, "/api/generate", "3600", "3600"},
		{"EmbeddingsGetADuration", "openai.embeddings", "emb", `"input":"hi"`, "/api/embed", "2h", `"2h"`},
		{"TheJobsOwnValueWins", "openai.chat", "m1", `"messages":[{"role":"user","content":"hi"}],"keep_alive":"90m"`, "/api/chat", "-1", `"90m"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *runner.Config) { c.KeepAlive = tt.keepAlive },
				ollamatest.WithModel(ollamatest.Model{Name: "emb", Embedding: true}))
			h.start()
			h.drop("v1", `{"endpoint":"`+tt.endpoint+`","model":"`+tt.model+`",`+tt.body+`}`)
			if r := h.wait("v1"); r.Error != nil {
				t.Fatalf("the job failed: %+v", r.Error)
			}
			var load map[string]json.RawMessage
			for _, req := range h.fake.Requests() {
				if req.Path == tt.native {
					if err := json.Unmarshal(req.Body, &load); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(load) != 2 || string(load["model"]) != `"`+tt.model+`"` || string(load["keep_alive"]) != tt.want {
				t.Fatalf("got %s %v, want a request with only the model and keep_alive %s", tt.native, load, tt.want)
			}
			if tt.want != "-1" {
				return
			}
			running, err := h.fake.Client().Running(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(running) != 1 || time.Until(running[0].ExpiresAt) < 24*time.Hour {
				t.Errorf("got %+v running, want %s kept loaded for ever", running, tt.model)
			}
		})
	}
	t.Run("OnlyALoadIsFollowed", func(t *testing.T) {
		h := newHarness(t, nil)
		h.start()
		h.drop("n", chat("m1", "hi"))
		h.wait("n")
		h.drop("v1", `{"endpoint":"openai.chat","model":"m1","messages":[{"role":"user","content":"hi"}]}`)
		h.wait("v1")
		h.drop("v2", `{"endpoint":"openai.chat","model":"m2","messages":[{"role":"user","content":"hi"}]}`)
		h.wait("v2")
		var paths []string
		for _, req := range h.fake.Requests() {
			if req.Method == "POST" && req.Path != "/api/show" {
				paths = append(paths, req.Path)
			}
		}
		// The native job gives its own keep_alive; m1 is resident when
		// v1 runs; v2 loads m2.
		if want := "/api/chat /v1/chat/completions /v1/chat/completions /api/chat"; strings.Join(paths, " ") != want {
			t.Errorf("got requests %q, want %q", paths, want)
		}
	})
}
