package ollamatest_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

func TestChatStreamsNDJSONByDefault(t *testing.T) {
	s := ollamatest.NewServer(t)
	r := post(t, s, "/api/chat", `{"model":"tiny","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"why is the sky blue"}]}`).ok(t)
	if r.contentType != "application/x-ndjson" {
		t.Errorf("content type %q", r.contentType)
	}
	chunks := r.lines(t)
	if got, want := contentOf(chunks), "reply from tiny to: why is the sky blue"; got != want {
		t.Errorf("content %q, want %q", got, want)
	}
	for _, c := range chunks[:len(chunks)-1] {
		if c["done"] != false || c["model"] != "tiny" || field(c, "message", "role") != "assistant" || c["created_at"] == nil {
			t.Errorf("chunk %v", c)
		}
	}
	last := chunks[len(chunks)-1]
	if last["done"] != true || last["done_reason"] != "stop" || field(last, "message", "content") != "" {
		t.Errorf("final chunk %v", last)
	}
	for _, k := range []string{"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"} {
		if v, ok := last[k].(float64); !ok || v <= 0 {
			t.Errorf("final chunk %s = %v, want a positive number", k, last[k])
		}
	}
	if last["eval_count"] != float64(len(chunks)-1) {
		t.Errorf("eval_count %v, want %d", last["eval_count"], len(chunks)-1)
	}
	if last["prompt_eval_count"] != float64(7) {
		t.Errorf("prompt_eval_count %v, want 7 words", last["prompt_eval_count"])
	}
}

func TestStreamFalseAnswersOneObject(t *testing.T) {
	s := ollamatest.NewServer(t)
	r := post(t, s, "/api/chat", `{"model":"tiny","stream":false,"messages":[{"role":"user","content":"hi"}]}`).ok(t)
	if r.contentType != "application/json; charset=utf-8" || strings.Count(r.body, "\n") != 0 {
		t.Errorf("got %q %q", r.contentType, r.body)
	}
	o := r.object(t)
	if field(o, "message", "content") != "reply from tiny to: hi" || o["done"] != true || o["done_reason"] != "stop" {
		t.Errorf("got %v", o)
	}
}

func TestGenerateCarriesContext(t *testing.T) {
	s := ollamatest.NewServer(t)
	chunks := post(t, s, "/api/generate", `{"model":"tiny","prompt":"tell me"}`).ok(t).lines(t)
	if got := contentOf(chunks); got != "reply from tiny to: tell me" {
		t.Errorf("response %q", got)
	}
	last := chunks[len(chunks)-1]
	if ctx, _ := last["context"].([]any); len(ctx) != 2+6 {
		t.Errorf("context %v, want prompt and reply tokens", last["context"])
	}
	raw := post(t, s, "/api/generate", `{"model":"tiny","prompt":"x","raw":true,"stream":false}`).ok(t).object(t)
	if _, ok := raw["context"]; ok {
		t.Errorf("raw generate has context: %v", raw)
	}
}

func TestModelNamesMatchAsInOllama(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModels("tiny"))
	for _, name := range []string{"tiny", "tiny:latest", "TINY", "library/tiny", "registry.ollama.ai/library/tiny:latest"} {
		o := post(t, s, "/api/chat", `{"model":"`+name+`","stream":false,"messages":[{"role":"user","content":"x"}]}`).ok(t).object(t)
		if o["model"] != name {
			t.Errorf("model %q echoed as %v", name, o["model"])
		}
	}
	if s.Loads() != 1 || s.LoadsOf("Tiny:Latest") != 1 {
		t.Errorf("loads %d / %d, want one load for all aliases", s.Loads(), s.LoadsOf("Tiny:Latest"))
	}
	if r := post(t, s, "/api/chat", `{"model":"tiny:3b","messages":[]}`); r.status != 404 {
		t.Errorf("another tag answered %d", r.status)
	}
}

func TestRepliesAreScriptable(t *testing.T) {
	t.Run("WithReply", func(t *testing.T) {
		s := ollamatest.NewServer(t, ollamatest.WithReply(func(r ollamatest.Request) string {
			var body struct{ Prompt string }
			_ = json.Unmarshal(r.Body, &body)
			return strings.ToUpper(body.Prompt) + " at " + r.Path
		}))
		o := post(t, s, "/api/generate", `{"model":"tiny","prompt":"shout","stream":false}`).ok(t).object(t)
		if o["response"] != "SHOUT at /api/generate" {
			t.Errorf("response %v", o["response"])
		}
	})
	t.Run("WithTokens", func(t *testing.T) {
		s := ollamatest.NewServer(t, ollamatest.WithTokens(12))
		chunks := post(t, s, "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`).ok(t).lines(t)
		if len(chunks) != 13 || chunks[12]["eval_count"] != float64(12) {
			t.Errorf("got %d chunks, final %v; want 12 tokens", len(chunks), chunks[len(chunks)-1])
		}
		if got := contentOf(chunks); !strings.HasPrefix(got, "reply from tiny to: x reply from") {
			t.Errorf("content %q, want the reply repeated", got)
		}
	})
	t.Run("NumPredictCutsWithDoneReasonLength", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		o := post(t, s, "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"options":{"num_predict":2}}`).ok(t).object(t)
		if o["response"] != "reply from" || o["done_reason"] != "length" || o["eval_count"] != float64(2) {
			t.Errorf("got %v", o)
		}
	})
	t.Run("TokenDelayIsMeasured", func(t *testing.T) {
		s := ollamatest.NewServer(t, ollamatest.WithTokenDelay(5*time.Millisecond))
		o := post(t, s, "/api/generate", `{"model":"tiny","prompt":"x","stream":false}`).ok(t).object(t)
		if d := o["prompt_eval_duration"].(float64) + o["eval_duration"].(float64); d < float64(5*5*time.Millisecond) {
			t.Errorf("durations add up to %v, want at least 5 tokens × 5ms", time.Duration(d))
		}
	})
}

func TestThinkingModelThinksFirst(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModel(ollamatest.Model{Name: "deep", Thinking: true}))
	chunks := post(t, s, "/api/chat", `{"model":"deep","messages":[{"role":"user","content":"q"}]}`).ok(t).lines(t)
	if field(chunks[0], "message", "thinking") != "deep" || field(chunks[0], "message", "content") != "" {
		t.Errorf("first chunk %v, want thinking", chunks[0])
	}
	o := post(t, s, "/api/chat", `{"model":"deep","think":false,"stream":false,"messages":[{"role":"user","content":"q"}]}`).ok(t).object(t)
	if _, ok := o["message"].(map[string]any)["thinking"]; ok {
		t.Errorf("think:false still thought: %v", o)
	}
	g := post(t, s, "/api/generate", `{"model":"deep","prompt":"q","stream":false}`).ok(t).object(t)
	if g["thinking"] != "deep thinks about: q" || g["response"] != "reply from deep to: q" {
		t.Errorf("generate %v", g)
	}
}

func TestOpenAIStreamsServerSentEvents(t *testing.T) {
	s := ollamatest.NewServer(t)
	t.Run("Chat", func(t *testing.T) {
		r := post(t, s, "/v1/chat/completions", `{"model":"tiny","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`).ok(t)
		if r.contentType != "text/event-stream" {
			t.Errorf("content type %q", r.contentType)
		}
		ev := r.events()
		if ev[len(ev)-1] != "[DONE]" {
			t.Fatalf("last event %q", ev[len(ev)-1])
		}
		var text strings.Builder
		for _, e := range ev[:len(ev)-3] {
			var c struct {
				Object  string
				Choices []struct {
					Delta        struct{ Role, Content string }
					FinishReason *string `json:"finish_reason"`
				}
			}
			if err := json.Unmarshal([]byte(e), &c); err != nil || c.Object != "chat.completion.chunk" || c.Choices[0].FinishReason != nil {
				t.Errorf("chunk %s: %v", e, err)
			}
			text.WriteString(c.Choices[0].Delta.Content)
		}
		if text.String() != "reply from tiny to: hi" {
			t.Errorf("text %q", text.String())
		}
		if !strings.Contains(ev[len(ev)-3], `"finish_reason":"stop"`) {
			t.Errorf("final chunk %s", ev[len(ev)-3])
		}
		if !strings.Contains(ev[len(ev)-2], `"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}`) {
			t.Errorf("usage chunk %s", ev[len(ev)-2])
		}
	})
	t.Run("ChatWithoutUsage", func(t *testing.T) {
		ev := post(t, s, "/v1/chat/completions", `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}`).ok(t).events()
		if strings.Contains(strings.Join(ev, ""), "usage") || ev[len(ev)-1] != "[DONE]" {
			t.Errorf("events %q", ev)
		}
	})
	t.Run("ChatNotStreamedByDefault", func(t *testing.T) {
		o := post(t, s, "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`).ok(t).object(t)
		if o["object"] != "chat.completion" || field(o, "usage", "total_tokens") != float64(6) || o["system_fingerprint"] != "fp_ollama" {
			t.Errorf("got %v", o)
		}
		choice := o["choices"].([]any)[0]
		if field(choice, "message", "content") != "reply from tiny to: hi" || field(choice, "finish_reason") != "stop" {
			t.Errorf("choice %v", choice)
		}
	})
	t.Run("CompletionMaxTokens", func(t *testing.T) {
		o := post(t, s, "/v1/completions", `{"model":"tiny","prompt":"hi","max_tokens":1}`).ok(t).object(t)
		choice := o["choices"].([]any)[0]
		if o["object"] != "text_completion" || field(choice, "text") != "reply" || field(choice, "finish_reason") != "length" {
			t.Errorf("got %v", o)
		}
	})
}

func TestEmbeddings(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModel(ollamatest.Model{Name: "emb", Embedding: true, Dims: 8}), ollamatest.WithModels("tiny"))
	vectors := func(body string) [][]float64 {
		var o struct{ Embeddings [][]float64 }
		if err := json.Unmarshal([]byte(post(t, s, "/api/embed", body).ok(t).body), &o); err != nil {
			t.Fatal(err)
		}
		return o.Embeddings
	}
	a := vectors(`{"model":"emb","input":["alpha","beta"]}`)
	if len(a) != 2 || len(a[0]) != 8 {
		t.Fatalf("got %v", a)
	}
	if b := vectors(`{"model":"emb","input":"alpha"}`); !near(a[0], b[0]) {
		t.Errorf("same text, different vectors: %v %v", a[0], b[0])
	}
	if near(a[0], a[1]) {
		t.Errorf("different texts, same vector")
	}
	if n := norm(a[0]); math.Abs(n-1) > 1e-5 {
		t.Errorf("norm %v, want 1", n)
	}
	if c := vectors(`{"model":"tiny","input":"alpha"}`); near(c[0][:8], a[0]) {
		t.Errorf("different models gave the same vector")
	}
	if d := vectors(`{"model":"emb","input":"alpha","dimensions":3}`); len(d[0]) != 3 || math.Abs(norm(d[0])-1) > 1e-5 {
		t.Errorf("dimensions 3 gave %v", d)
	}
	if r := post(t, s, "/api/embed", `{"model":"emb","input":""}`).ok(t); r.body != `{"model":"emb","embeddings":[]}` {
		t.Errorf("empty input gave %s", r.body)
	}
	t.Run("LegacyIsRawButParallel", func(t *testing.T) {
		var o struct{ Embedding []float64 }
		_ = json.Unmarshal([]byte(post(t, s, "/api/embeddings", `{"model":"emb","prompt":"alpha"}`).ok(t).body), &o)
		n := norm(o.Embedding)
		if math.Abs(n-1) < 1e-3 {
			t.Errorf("legacy vector is normalized")
		}
		for i := range o.Embedding {
			o.Embedding[i] /= n
		}
		if !near(o.Embedding, a[0]) {
			t.Errorf("legacy %v is not parallel to %v", o.Embedding, a[0])
		}
	})
	t.Run("OpenAIFloatAndBase64Agree", func(t *testing.T) {
		var f, b struct {
			Data []struct {
				Embedding json.RawMessage
				Index     int
			}
			Usage struct {
				PromptTokens int `json:"prompt_tokens"`
			}
		}
		_ = json.Unmarshal([]byte(post(t, s, "/v1/embeddings", `{"model":"emb","input":["alpha"]}`).ok(t).body), &f)
		_ = json.Unmarshal([]byte(post(t, s, "/v1/embeddings", `{"model":"emb","input":["alpha"],"encoding_format":"base64"}`).ok(t).body), &b)
		var floats []float64
		var encoded string
		if err := json.Unmarshal(f.Data[0].Embedding, &floats); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b.Data[0].Embedding, &encoded); err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(encoded)
		decoded := make([]float32, len(raw)/4)
		_ = binary.Read(strings.NewReader(string(raw)), binary.LittleEndian, decoded)
		for i := range decoded {
			if float64(decoded[i]) != float64(float32(floats[i])) {
				t.Fatalf("base64 %v != float %v", decoded, floats)
			}
		}
		if !near(floats, a[0]) || f.Usage.PromptTokens != 1 {
			t.Errorf("OpenAI vector %v usage %d", floats, f.Usage.PromptTokens)
		}
	})
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func near(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-5 {
			return false
		}
	}
	return true
}
