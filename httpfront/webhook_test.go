package httpfront_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/httpfront"
)

// A webhook that no delivery could reach is refused when the job is
// submitted, not accepted with 202 to fail quietly later.
func TestWebhooksAreCheckedAtSubmit(t *testing.T) {
	sp := newSpool(t)
	fns, err := functions.Load(map[string]any{
		"notify":   map[string]any{"model": "llama3.2", "prompt": "hi", "webhook": "http://127.0.0.1:9000/hook"},
		"internal": map[string]any{"model": "llama3.2", "prompt": "hi", "webhook": "http://hooks.internal/hook"},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	f := startFront(t, sp, func(c *httpfront.Config) { c.Functions = fns })
	job := func(webhook string) string {
		return `{"model":"llama3.2","prompt":"hi","webhook":"` + webhook + `"}`
	}
	tests := []struct {
		webhook string
		status  int
		says    string
	}{
		// Not a webhook at all: the job is not valid (as a dropped file
		// it would land in failed/).
		{"file:///etc/passwd", 422, "http or https"},
		{"gopher://example.com:70/_x", 422, "http or https"},
		{"//example.com/hook", 422, "http or https"},
		{"http://127.0.0.1:8080/hook", 400, "loopback"},
		{"http://localhost:11434/api/pull", 400, "loopback"},
		{"http://app.localhost/hook", 400, "loopback"},
		{"http://[::1]/hook", 400, "loopback"},
		{"http://10.0.0.7/hook", 400, "private"},
		{"http://192.168.1.1/hook", 400, "private"},
		{"http://169.254.169.254/latest/meta-data", 400, "link-local"},
		{"http://0.0.0.0:9/", 400, "unspecified"},
		{"http://[::ffff:127.0.0.1]/", 400, "loopback"},
		{"https://hooks.example.com/hopper", 202, ""},
		{"http://203.0.113.9/hook", 202, ""},
	}
	for _, tt := range tests {
		resp, body := call(t, "POST", f.URL+"/jobs", job(tt.webhook))
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.says) {
			t.Errorf("webhook %q: got %d %s, want %d saying %q", tt.webhook, resp.StatusCode, body, tt.status, tt.says)
		}
	}
	queued := countFiles(t, sp, "new")

	t.Run("OnTheDropIn", func(t *testing.T) {
		resp, body := call(t, "POST", f.URL+"/api/chat", `{"model":"llama3.2","messages":[],"webhook":"http://127.0.0.1:9/x"}`)
		if resp.StatusCode != 400 || !strings.Contains(decode[ollamaError](t, body).Error, "hooks.allow") {
			t.Errorf("/api/chat: got %d %s, want 400 naming hooks.allow", resp.StatusCode, body)
		}
		resp, body = call(t, "POST", f.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"webhook":"file:///etc/shadow"}`)
		if e := decode[openaiError](t, body); resp.StatusCode != 400 || !strings.Contains(e.Error.Message, "http or https") {
			t.Errorf("/v1/chat/completions: got %d %s, want 400 in OpenAI's shape", resp.StatusCode, body)
		}
	})
	t.Run("OfAFunction", func(t *testing.T) {
		resp, body := call(t, "POST", f.URL+"/functions/notify", `{}`)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "function notify") {
			t.Errorf("POST /functions/notify: got %d %s, want 400 naming the function's webhook", resp.StatusCode, body)
		}
		resp, body = call(t, "POST", f.URL+"/jobs", `{"function":"notify","vars":{}}`)
		if resp.StatusCode != 400 {
			t.Errorf("POST /jobs naming notify: got %d %s, want 400", resp.StatusCode, body)
		}
		// A name is judged when delivered, after it resolves.
		if resp, body := call(t, "POST", f.URL+"/functions/internal", `{}`, "Prefer", "respond-async"); resp.StatusCode != 202 {
			t.Errorf("POST /functions/internal: got %d %s, want 202", resp.StatusCode, body)
		}
		queued++
	})
	t.Run("InABatchLine", func(t *testing.T) {
		c := openaiClient(f.URL)
		file := upload(t, c, jsonl(
			chatLine("a", "hi"),
			`{"model":"llama3.2","prompt":"hi","webhook":"http://10.1.2.3/x"}`,
		))
		_, err := c.Batches.New(context.Background(), openai.BatchNewParams{
			InputFileID:      file.ID,
			Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
			CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
		})
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "line 2") {
			t.Errorf("got %v, want 400 naming line 2", err)
		}
	})
	if n := countFiles(t, sp, "new"); n != queued {
		t.Errorf("jobs queued: got %d, want %d: a refused job was written", n, queued)
	}

	t.Run("HooksAllowLetsThemThrough", func(t *testing.T) {
		f := startFront(t, newSpool(t), func(c *httpfront.Config) {
			c.WebhookAllow = []string{"127.0.0.1", "10.0.0.0/8", "*.localhost"}
			c.Functions = fns
		})
		for _, w := range []string{"http://127.0.0.1:8080/hook", "http://10.0.0.7/hook", "http://app.localhost/hook"} {
			if resp, body := call(t, "POST", f.URL+"/jobs", job(w)); resp.StatusCode != http.StatusAccepted {
				t.Errorf("webhook %q with hooks.allow: got %d %s, want 202", w, resp.StatusCode, body)
			}
		}
		if resp, body := call(t, "POST", f.URL+"/functions/notify", `{}`, "Prefer", "respond-async"); resp.StatusCode != 202 {
			t.Errorf("POST /functions/notify with hooks.allow: got %d %s, want 202", resp.StatusCode, body)
		}
	})
	t.Run("ABadAllowListIsAConfigError", func(t *testing.T) {
		_, err := httpfront.New(httpfront.Config{Spool: sp, WebhookAllow: []string{"10.0.0.0/8", "not a host"}})
		var ce *httpfront.ConfigError
		if !errors.As(err, &ce) || ce.Field != "hooks.allow[1]" {
			t.Errorf("got %v, want a ConfigError for hooks.allow[1]", err)
		}
	})
}
