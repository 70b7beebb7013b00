package conformance

import (
	"encoding/base64"
	"math"
	"slices"
	"strings"
	"testing"
)

// Shapes of the native inference answers. Streamed chunks carry one piece of
// the answer; the final chunk has the metrics and an empty piece; an answer
// that was not streamed is the final chunk with the whole text.
const (
	metricsShape   = `eval_count:number,eval_duration:number,load_duration:number`
	metricsShape2  = `prompt_eval_count:number,prompt_eval_duration:number`
	chatChunkShape = `{created_at:string,done:bool,message:{content:string,role:string},model:string}`
	chatFinalShape = `{created_at:string,done:bool,done_reason:string,` + metricsShape +
		`,message:{content:string,role:string},model:string,` + metricsShape2 + `,total_duration:number}`
	chatLoadShape = `{created_at:string,done:bool,done_reason:string,message:{content:string,role:string},model:string}`
	genChunkShape = `{created_at:string,done:bool,model:string,response:string}`
	genFinalShape = `{context:[number],created_at:string,done:bool,done_reason:string,` + metricsShape +
		`,model:string,` + metricsShape2 + `,response:string,total_duration:number}`
	genLoadShape = `{created_at:string,done:bool,done_reason:string,model:string,response:string}`

	embedShape      = `{embeddings:[[number]],load_duration:number,model:string,prompt_eval_count:number,total_duration:number}`
	embedEmptyShape = `{embeddings:[],model:string}`
	embeddingsShape = `{embedding:[number]}`
)

// Shapes of the OpenAI-compatible answers.
const (
	usageShape        = `{completion_tokens:number,prompt_tokens:number,total_tokens:number}`
	openaiHead        = `created:number,id:string,model:string,object:string,system_fingerprint:string`
	openaiChatShape   = `{choices:[{finish_reason:string,index:number,message:{content:string,role:string}}],` + openaiHead + `,usage:` + usageShape + `}`
	openaiChunkShape  = `{choices:[{delta:{content:string,role:string},finish_reason:null,index:number}],` + openaiHead + `}`
	openaiLastShape   = `{choices:[{delta:{content:string,role:string},finish_reason:string,index:number}],` + openaiHead + `}`
	openaiUsageShape  = `{choices:[],` + openaiHead + `,usage:` + usageShape + `}`
	openaiTextShape   = `{choices:[{finish_reason:string,index:number,text:string}],` + openaiHead + `,usage:` + usageShape + `}`
	openaiTChunkShape = `{choices:[{finish_reason:null,index:number,text:string}],` + openaiHead + `}`
	openaiTLastShape  = `{choices:[{finish_reason:string,index:number,text:string}],` + openaiHead + `}`
	openaiEmbedShape  = `{data:[{embedding:[number],index:number,object:string}],model:string,object:string,usage:{prompt_tokens:number,total_tokens:number}}`
	openaiEmbed64     = `{data:[{embedding:string,index:number,object:string}],model:string,object:string,usage:{prompt_tokens:number,total_tokens:number}}`
)

const ndjson = "application/x-ndjson"

func hello() []map[string]string {
	return []map[string]string{{"role": "user", "content": "why is the sky blue"}}
}

// finished checks what every completed answer says: done, a reason Ollama
// gives for a finished generation, the model as the request named it, a
// creation time and positive durations.
func finished(t testing.TB, what string, m map[string]any, model string) {
	t.Helper()
	if m["done"] != true {
		t.Errorf("%s: done = %v, want true", what, m["done"])
	}
	if r := str(t, m, "done_reason"); r != "stop" && r != "length" {
		t.Errorf("%s: done_reason = %q, want stop or length", what, r)
	}
	if got := str(t, m, "model"); got != model {
		t.Errorf("%s: model = %q, want %q as the request named it", what, got, model)
	}
	timestamp(t, m, "created_at")
	durations(t, m, "total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
	if n := num(t, m, "eval_count"); n < 1 {
		t.Errorf("%s: eval_count = %v, want at least 1", what, n)
	}
}

// streamed checks an NDJSON stream: every chunk but the last has the chunk
// shape and done false, the last has the final shape. It returns the
// chunks' joined text (of field text, inside message for chat) and the last
// chunk.
func streamed(t testing.TB, r reply, chunkShape, finalShape, model string, text func(map[string]any) string) (string, map[string]any) {
	t.Helper()
	if r.contentType() != ndjson {
		t.Errorf("Content-Type = %q, want %q", r.contentType(), ndjson)
	}
	chunks := lines(t, r.body)
	if len(chunks) < 2 {
		t.Fatalf("got %d NDJSON lines, want at least a token and the final line:\n%s", len(chunks), r.body)
	}
	var joined strings.Builder
	for i, ch := range chunks[:len(chunks)-1] {
		wantShape(t, "chunk", ch, chunkShape)
		if ch["done"] != false || ch["model"] != model {
			t.Errorf("chunk %d: done %v model %v, want false %q", i, ch["done"], ch["model"], model)
		}
		timestamp(t, ch, "created_at")
		joined.WriteString(text(ch))
	}
	last := chunks[len(chunks)-1]
	wantShape(t, "final chunk", last, finalShape)
	finished(t, "final chunk", last, model)
	if s := text(last); s != "" {
		t.Errorf("final chunk carries text %q, want none: the text went out in the chunks", s)
	}
	return joined.String(), last
}

func chatText(m map[string]any) string {
	msg, _ := m["message"].(map[string]any)
	s, _ := msg["content"].(string)
	return s
}

func genText(m map[string]any) string { s, _ := m["response"].(string); return s }

func testChat(t *testing.T, c client) {
	var plain map[string]any
	t.Run("UnstreamedIsOneObject", func(t *testing.T) {
		r := c.with(t).post("/api/chat", map[string]any{"model": "m1", "messages": hello(), "stream": false}).ok(t, "chat")
		if r.contentType() != jsonUTF8 {
			t.Errorf("Content-Type = %q, want %q", r.contentType(), jsonUTF8)
		}
		plain = object(t, r.body)
		wantShape(t, "chat answer", plain, chatFinalShape)
		finished(t, "chat answer", plain, "m1")
		if role := str(t, field(t, plain, "message"), "role"); role != "assistant" {
			t.Errorf("message.role = %q, want assistant", role)
		}
	})
	for _, tc := range []struct {
		name   string
		stream any
	}{{"StreamsByDefault", nil}, {"StreamsWhenAsked", true}} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"model": "m1", "messages": hello()}
			if tc.stream != nil {
				body["stream"] = tc.stream
			}
			r := c.with(t).post("/api/chat", body).ok(t, "chat")
			text, last := streamed(t, r, chatChunkShape, chatFinalShape, "m1", chatText)
			if plain == nil {
				return
			}
			// Same model, same prompt, temperature 0: the same answer.
			if want := chatText(plain); text != want {
				t.Errorf("streamed text %q, want the unstreamed answer %q", text, want)
			}
			for _, k := range []string{"done_reason", "eval_count", "prompt_eval_count"} {
				if last[k] != plain[k] {
					t.Errorf("final chunk %s = %v, unstreamed %v", k, last[k], plain[k])
				}
			}
		})
	}
	t.Run("WithoutMessagesOnlyLoads", func(t *testing.T) {
		onlyLoads(t, c, "chat", map[string]any{"model": "m1", "messages": []any{}}, chatLoadShape)
	})
}

// onlyLoads posts body, which asks for nothing but the model, to
// /api/endpoint: the answer is one JSON object of the given shape, done
// with done_reason "load", even though streaming is the default.
func onlyLoads(t *testing.T, c client, endpoint string, body map[string]any, shape string) {
	t.Helper()
	r := c.with(t).post("/api/"+endpoint, body).ok(t, endpoint)
	if r.contentType() != jsonUTF8 {
		t.Errorf("Content-Type = %q, want one JSON object (%s) even though streaming is the default", r.contentType(), jsonUTF8)
	}
	m := object(t, r.body)
	wantShape(t, "load answer", m, shape)
	if m["done"] != true || m["done_reason"] != "load" {
		t.Errorf("done %v done_reason %v, want true load", m["done"], m["done_reason"])
	}
}

func testGenerate(t *testing.T, c client) {
	var plain map[string]any
	t.Run("UnstreamedIsOneObject", func(t *testing.T) {
		r := c.with(t).post("/api/generate", map[string]any{"model": "m1", "prompt": "why is the sky blue", "stream": false}).ok(t, "generate")
		if r.contentType() != jsonUTF8 {
			t.Errorf("Content-Type = %q, want %q", r.contentType(), jsonUTF8)
		}
		plain = object(t, r.body)
		wantShape(t, "generate answer", plain, genFinalShape)
		finished(t, "generate answer", plain, "m1")
	})
	t.Run("StreamsByDefault", func(t *testing.T) {
		r := c.with(t).post("/api/generate", map[string]any{"model": "m1", "prompt": "why is the sky blue"}).ok(t, "generate")
		text, last := streamed(t, r, genChunkShape, genFinalShape, "m1", genText)
		if plain == nil {
			return
		}
		if want := genText(plain); text != want {
			t.Errorf("streamed text %q, want the unstreamed answer %q", text, want)
		}
		if !slices.Equal(list(t, last, "context"), list(t, plain, "context")) {
			t.Errorf("final chunk context %v, unstreamed %v", last["context"], plain["context"])
		}
	})
	t.Run("WithoutPromptOnlyLoads", func(t *testing.T) {
		onlyLoads(t, c, "generate", map[string]any{"model": "m1", "prompt": ""}, genLoadShape)
	})
}

// vectors reads an array of number arrays.
func vectors(t testing.TB, v []any) [][]float64 {
	t.Helper()
	var out [][]float64
	for _, e := range v {
		var vec []float64
		for _, x := range e.([]any) {
			vec = append(vec, x.(float64))
		}
		out = append(out, vec)
	}
	return out
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func testEmbeddings(t *testing.T, c client) {
	dims := 0
	t.Run("EmbedGivesOneUnitVectorPerInput", func(t *testing.T) {
		c := c.with(t)
		for _, input := range []any{"why is the sky blue", []string{"why is the sky blue", "hello"}} {
			r := c.post("/api/embed", map[string]any{"model": "m1", "input": input}).ok(t, "embed")
			if r.contentType() != jsonUTF8 {
				t.Errorf("Content-Type = %q, want %q", r.contentType(), jsonUTF8)
			}
			m := object(t, r.body)
			wantShape(t, "embed answer", m, embedShape)
			durations(t, m, "total_duration", "load_duration")
			if model := str(t, m, "model"); model != "m1" {
				t.Errorf("model = %q, want m1", model)
			}
			vecs := vectors(t, list(t, m, "embeddings"))
			want := 1
			if in, ok := input.([]string); ok {
				want = len(in)
			}
			if len(vecs) != want {
				t.Fatalf("%d embeddings for %d inputs", len(vecs), want)
			}
			for _, v := range vecs {
				if n := norm(v); math.Abs(n-1) > 1e-3 {
					t.Errorf("embedding norm %v, want 1: /api/embed normalizes", n)
				}
				if dims == 0 {
					dims = len(v)
				} else if len(v) != dims {
					t.Errorf("embedding of %d dimensions, earlier %d", len(v), dims)
				}
			}
		}
	})
	t.Run("EmbedWithoutInputOnlyLoads", func(t *testing.T) {
		for _, body := range []map[string]any{{"model": "m1"}, {"model": "m1", "input": []string{}}} {
			r := c.with(t).post("/api/embed", body).ok(t, "embed")
			wantShape(t, "embed answer", object(t, r.body), embedEmptyShape)
		}
	})
	t.Run("LegacyEmbeddingsGiveTheRawVector", func(t *testing.T) {
		r := c.with(t).post("/api/embeddings", map[string]any{"model": "m1", "prompt": "why is the sky blue"}).ok(t, "embeddings")
		m := object(t, r.body)
		wantShape(t, "embeddings answer", m, embeddingsShape)
		if v := list(t, m, "embedding"); dims != 0 && len(v) != dims {
			t.Errorf("embedding of %d dimensions, /api/embed gave %d", len(v), dims)
		}
		r = c.with(t).post("/api/embeddings", map[string]any{"model": "m1", "prompt": ""}).ok(t, "embeddings")
		if string(r.body) != `{"embedding":[]}` {
			t.Errorf("empty prompt: %s, want {\"embedding\":[]}", r.body)
		}
	})
	t.Run("OpenAIEmbeddings", func(t *testing.T) {
		c := c.with(t)
		r := c.post("/v1/embeddings", map[string]any{"model": "m1", "input": []string{"a", "b", "c"}}).ok(t, "/v1/embeddings")
		if r.contentType() != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", r.contentType())
		}
		m := object(t, r.body)
		wantShape(t, "/v1/embeddings answer", m, openaiEmbedShape)
		if str(t, m, "object") != "list" || str(t, m, "model") != "m1" {
			t.Errorf("object %v model %v, want list m1", m["object"], m["model"])
		}
		for i, e := range list(t, m, "data") {
			e := e.(map[string]any)
			if int(num(t, e, "index")) != i || str(t, e, "object") != "embedding" {
				t.Errorf("data[%d]: index %v object %v", i, e["index"], e["object"])
			}
		}
		r = c.post("/v1/embeddings", map[string]any{"model": "m1", "input": "a", "encoding_format": "base64"}).ok(t, "/v1/embeddings")
		m = object(t, r.body)
		wantShape(t, "/v1/embeddings base64 answer", m, openaiEmbed64)
		for _, e := range list(t, m, "data") {
			b, err := base64.StdEncoding.DecodeString(str(t, e.(map[string]any), "embedding"))
			if err != nil || len(b)%4 != 0 || (dims != 0 && len(b) != 4*dims) {
				t.Errorf("base64 embedding: %d bytes (%v), want %d little-endian float32s", len(b), err, dims)
			}
		}
	})
}

func testOpenAI(t *testing.T, c client) {
	chat := map[string]any{"model": "m1", "messages": hello()}
	t.Run("ChatUnstreamed", func(t *testing.T) {
		r := c.with(t).post("/v1/chat/completions", chat).ok(t, "/v1/chat/completions")
		if r.contentType() != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", r.contentType())
		}
		m := object(t, r.body)
		wantShape(t, "chat.completion", m, openaiChatShape)
		openaiHeadOK(t, m, "chatcmpl-", "chat.completion")
	})
	for _, usage := range []bool{false, true} {
		name := "ChatStreamIsSSEEndingInDone"
		if usage {
			name = "ChatStreamWithUsage"
		}
		t.Run(name, func(t *testing.T) {
			body := map[string]any{"model": "m1", "messages": hello(), "stream": true}
			if usage {
				body["stream_options"] = map[string]any{"include_usage": true}
			}
			r := c.with(t).post("/v1/chat/completions", body).ok(t, "/v1/chat/completions")
			sse(t, r, usage, openaiChunkShape, openaiLastShape, "chatcmpl-", "chat.completion.chunk")
		})
	}
	t.Run("CompletionUnstreamed", func(t *testing.T) {
		r := c.with(t).post("/v1/completions", map[string]any{"model": "m1", "prompt": "why is the sky blue"}).ok(t, "/v1/completions")
		m := object(t, r.body)
		wantShape(t, "text_completion", m, openaiTextShape)
		openaiHeadOK(t, m, "cmpl-", "text_completion")
	})
	t.Run("CompletionStream", func(t *testing.T) {
		r := c.with(t).post("/v1/completions", map[string]any{"model": "m1", "prompt": "why is the sky blue", "stream": true}).ok(t, "/v1/completions")
		sse(t, r, false, openaiTChunkShape, openaiTLastShape, "cmpl-", "text_completion")
	})
}

// openaiHeadOK checks the fields every /v1 completion object and chunk has.
func openaiHeadOK(t testing.TB, m map[string]any, idPrefix, object string) {
	t.Helper()
	if id := str(t, m, "id"); !strings.HasPrefix(id, idPrefix) {
		t.Errorf("id = %q, want prefix %q", id, idPrefix)
	}
	if o := str(t, m, "object"); o != object {
		t.Errorf("object = %q, want %q", o, object)
	}
	if mod, fp := str(t, m, "model"), str(t, m, "system_fingerprint"); mod != "m1" || fp != "fp_ollama" {
		t.Errorf("model %q system_fingerprint %q, want m1 fp_ollama", mod, fp)
	}
	if c := num(t, m, "created"); c < 1e9 {
		t.Errorf("created = %v, want a Unix time", c)
	}
}

// sse checks an OpenAI stream: chunks of one id with finish_reason null,
// a chunk with the finish reason, with usage a choiceless usage chunk, then
// "data: [DONE]".
func sse(t testing.TB, r reply, usage bool, chunkShape, lastShape, idPrefix, object string) {
	t.Helper()
	if r.contentType() != "text/event-stream" {
		t.Errorf("Content-Type = %q, want text/event-stream", r.contentType())
	}
	evs := events(t, r.body)
	if len(evs) < 3 || evs[len(evs)-1] != "[DONE]" {
		t.Fatalf("got %d events, want chunks ending in [DONE]:\n%s", len(evs), r.body)
	}
	evs = evs[:len(evs)-1]
	if usage {
		u := objectOf(t, evs[len(evs)-1])
		wantShape(t, "usage chunk", u, openaiUsageShape)
		if n := num(t, field(t, u, "usage"), "completion_tokens"); n < 1 {
			t.Errorf("usage.completion_tokens = %v, want at least 1", n)
		}
		evs = evs[:len(evs)-1]
	}
	var id string
	for i, ev := range evs {
		m := objectOf(t, ev)
		want := chunkShape
		if i == len(evs)-1 {
			want = lastShape
		}
		wantShape(t, "chunk "+ev, m, want)
		openaiHeadOK(t, m, idPrefix, object)
		if i == 0 {
			id = str(t, m, "id")
		} else if got := str(t, m, "id"); got != id {
			t.Errorf("chunk %d id %q, first chunk %q: want one id per stream", i, got, id)
		}
	}
}

func objectOf(t testing.TB, s string) map[string]any { t.Helper(); return object(t, []byte(s)) }

func testOptions(t *testing.T, c client) {
	t.Run("UnknownAndNullOptionsAreIgnored", func(t *testing.T) {
		r := c.with(t).post("/api/generate", map[string]any{"model": "m1", "prompt": "hello", "stream": false,
			"options": map[string]any{"no_such_option": "x", "num_ctx": nil, "seed": 7, "top_k": 1.5}}).ok(t, "generate")
		finished(t, "answer", object(t, r.body), "m1")
	})
	// A real model's output follows the format (grammar-constrained
	// sampling); the fake ignores it. Both accept these.
	schema := map[string]any{"type": "object", "properties": map[string]any{"ok": map[string]any{"type": "boolean"}}, "required": []string{"ok"}}
	for _, format := range []any{"json", schema, nil, ""} {
		t.Run("FormatAccepted", func(t *testing.T) {
			c := c.with(t)
			r := c.post("/api/chat", map[string]any{"model": "m1", "messages": hello(), "format": format}).ok(t, "chat")
			streamed(t, r, chatChunkShape, chatFinalShape, "m1", chatText)
			r = c.post("/api/generate", map[string]any{"model": "m1", "prompt": "hello", "format": format, "stream": false}).ok(t, "generate")
			finished(t, "answer", object(t, r.body), "m1")
		})
	}
	t.Run("OpenAIResponseFormatAccepted", func(t *testing.T) {
		r := c.with(t).post("/v1/chat/completions", map[string]any{"model": "m1", "messages": hello(),
			"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "answer", "schema": schema}}}).ok(t, "/v1/chat/completions")
		wantShape(t, "chat.completion", object(t, r.body), openaiChatShape)
	})
}
