package ollamatest_test

import (
	"net/http"
	"testing"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

// TestErrorsAreOllamas checks status, content type and body of the error
// answers against Ollama's source.
func TestErrorsAreOllamas(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModels("tiny"),
		ollamatest.WithModel(ollamatest.Model{Name: "embedder", Embedding: true}))
	const jsonType, oaType = "application/json; charset=utf-8", "application/json"
	tests := []struct {
		name, method, path, body string
		status                   int
		contentType, want        string
	}{
		{"EmptyBody", "POST", "/api/chat", ``, 400, jsonType, `{"error":"missing request body"}`},
		{"TruncatedBody", "POST", "/api/chat", `{"model":"tiny","messages":[`, 400, jsonType, `{"error":"unexpected EOF"}`},
		{"NotJSON", "POST", "/api/generate", `hello`, 400, jsonType, `{"error":"invalid character 'h' looking for beginning of value"}`},
		{"KeepAliveStringOfDigits", "POST", "/api/generate", `{"model":"tiny","prompt":"x","keep_alive":"3600"}`, 400, jsonType, `{"error":"time: missing unit in duration \"3600\""}`},
		{"KeepAliveBool", "POST", "/api/chat", `{"model":"tiny","keep_alive":true}`, 400, jsonType, `{"error":"Unsupported type: 'bool'"}`},
		{"BadThinkValue", "POST", "/api/chat", `{"model":"tiny","think":"max"}`, 400, jsonType, `{"error":"invalid think value: \"max\" (must be \"high\", \"medium\", \"low\", true, or false)"}`},
		{"ChatWithoutModel", "POST", "/api/chat", `{"messages":[{"role":"user","content":"x"}]}`, 400, jsonType, `{"error":"model is required"}`},
		{"GenerateWithoutModel", "POST", "/api/generate", `{"prompt":"x"}`, 404, jsonType, `{"error":"model '' not found"}`},
		{"EmbedWithoutModel", "POST", "/api/embed", `{"input":"x"}`, 500, jsonType, `{"error":"unqualified name: registry.ollama.ai/library/!MISSING!:latest"}`},
		{"LegacyEmbeddingsWithoutModel", "POST", "/api/embeddings", `{"prompt":"x"}`, 400, jsonType, `{"error":"model is required"}`},
		{"ShowWithoutModel", "POST", "/api/show", `{}`, 400, jsonType, `{"error":"model is required"}`},
		{"ChatUnknownModelEvenStreaming", "POST", "/api/chat", `{"model":"x","stream":true,"messages":[{"role":"user","content":"x"}]}`, 404, jsonType, `{"error":"model 'x' not found"}`},
		{"GenerateUnknownModel", "POST", "/api/generate", `{"model":"x","prompt":"y"}`, 404, jsonType, `{"error":"model 'x' not found"}`},
		{"EmbedUnknownModel", "POST", "/api/embed", `{"model":"x","input":"y"}`, 404, jsonType, `{"error":"model \"x\" not found, try pulling it first"}`},
		{"LegacyEmbeddingsUnknownModel", "POST", "/api/embeddings", `{"model":"x","prompt":"y"}`, 404, jsonType, `{"error":"model \"x\" not found, try pulling it first"}`},
		{"ShowUnknownModel", "POST", "/api/show", `{"model":"x"}`, 404, jsonType, `{"error":"model 'x' not found"}`},
		{"EmbedBadInput", "POST", "/api/embed", `{"model":"tiny","input":[1]}`, 400, jsonType, `{"error":"invalid input type"}`},
		{"ThinkOnPlainModel", "POST", "/api/chat", `{"model":"tiny","think":true,"messages":[{"role":"user","content":"x"}]}`, 400, jsonType, `{"error":"\"tiny\" does not support thinking"}`},
		{"ChatOnEmbedder", "POST", "/api/chat", `{"model":"embedder","messages":[{"role":"user","content":"x"}]}`, 400, jsonType, `{"error":"\"embedder\" does not support chat"}`},
		{"GenerateOnEmbedder", "POST", "/api/generate", `{"model":"embedder","prompt":"x"}`, 400, jsonType, `{"error":"\"embedder\" does not support generate"}`},
		{"RawWithSystem", "POST", "/api/generate", `{"model":"tiny","prompt":"x","raw":true,"system":"s"}`, 400, jsonType, `{"error":"raw mode does not support template, system, or context"}`},
		{"TopLogprobsOutOfRange", "POST", "/api/chat", `{"model":"tiny","top_logprobs":21}`, 400, jsonType, `{"error":"top_logprobs must be between 0 and 20"}`},
		{"ChatTypeError", "POST", "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":5}]}`, 400, jsonType, `{"error":"json: cannot unmarshal number into Go struct field ChatRequest.messages.content of type string"}`},
		{"ChatModelTypeError", "POST", "/api/chat", `{"model":1}`, 400, jsonType, `{"error":"json: cannot unmarshal number into Go struct field ChatRequest.model of type string"}`},
		{"GenerateStreamTypeError", "POST", "/api/generate", `{"model":"tiny","stream":"yes"}`, 400, jsonType, `{"error":"json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"}`},
		{"GenerateTypeError", "POST", "/api/generate", `{"model":"tiny","messages":[],"prompt":["x"]}`, 400, jsonType, `{"error":"json: cannot unmarshal array into Go struct field GenerateRequest.prompt of type string"}`},
		// The OpenAI layer's own refusals: 400, invalid_request_error, written by gin.
		{"OpenAIEmptyMessages", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[]}`, 400, jsonType, `{"error":{"message":"[] is too short - 'messages'","type":"invalid_request_error","param":null,"code":null}}`},
		{"OpenAITruncated", "POST", "/v1/chat/completions", `{"model":"tiny"`, 400, jsonType, `{"error":{"message":"unexpected EOF","type":"invalid_request_error","param":null,"code":null}}`},
		// The handler's refusals through the OpenAI layer: their status, api_error.
		{"OpenAIWithoutModel", "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`, 400, oaType, `{"error":{"message":"model is required","type":"api_error","param":null,"code":null}}` + "\n"},
		{"OpenAIUnknownModel", "POST", "/v1/chat/completions", `{"model":"x","messages":[{"role":"user","content":"x"}]}`, 404, oaType, `{"error":{"message":"model 'x' not found","type":"api_error","param":null,"code":null}}` + "\n"},
		{"OpenAIBadContent", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":5}]}`, 400, jsonType, `{"error":{"message":"invalid message content type: float64","type":"invalid_request_error","param":null,"code":null}}`},
		{"OpenAIBadReasoning", "POST", "/v1/chat/completions", `{"model":"tiny","reasoning_effort":"max","messages":[{"role":"user","content":"x"}]}`, 400, jsonType, `{"error":{"message":"invalid reasoning value: 'max' (must be \"high\", \"medium\", \"low\", or \"none\")","type":"invalid_request_error","param":null,"code":null}}`},
		{"OpenAICompletionUnknownModel", "POST", "/v1/completions", `{"model":"x","prompt":"y"}`, 404, oaType, `{"error":{"message":"model 'x' not found","type":"api_error","param":null,"code":null}}` + "\n"},
		{"OpenAIEmbeddingsNoInput", "POST", "/v1/embeddings", `{"model":"tiny"}`, 400, jsonType, `{"error":{"message":"invalid input","type":"invalid_request_error","param":null,"code":null}}`},
		{"OpenAIEmbeddingsBadFormat", "POST", "/v1/embeddings", `{"model":"tiny","input":"x","encoding_format":"hex"}`, 400, jsonType, `{"error":{"message":"Invalid value for 'encoding_format' = hex. Supported values: ['float', 'base64'].","type":"invalid_request_error","param":null,"code":null}}`},
		{"OpenAIEmbeddingsUnknownModel", "POST", "/v1/embeddings", `{"model":"x","input":"y"}`, 404, oaType, `{"error":{"message":"model \"x\" not found, try pulling it first","type":"api_error","param":null,"code":null}}` + "\n"},
		{"OpenAIEmbeddingsWithoutModel", "POST", "/v1/embeddings", `{"input":"y"}`, 500, oaType, `{"error":{"message":"unqualified name: registry.ollama.ai/library/!MISSING!:latest","type":"api_error","param":null,"code":null}}` + "\n"},
		{"OpenAIEmptyBody", "POST", "/v1/completions", ``, 400, jsonType, `{"error":{"message":"EOF","type":"invalid_request_error","param":null,"code":null}}`},
		{"OpenAIFieldTypeError", "POST", "/v1/chat/completions", `{"model":"tiny","temperature":"hot","messages":[{"role":"user","content":"x"}]}`, 400, jsonType, `{"error":{"message":"json: cannot unmarshal string into Go struct field ChatCompletionRequest.temperature of type float64","type":"invalid_request_error","param":null,"code":null}}`},
		// Options are type-checked when the request is scheduled: 500, before any load.
		{"OptionNotAnInteger", "POST", "/api/generate", `{"model":"tiny","prompt":"x","options":{"num_predict":"x"}}`, 500, jsonType, `{"error":"option \"num_predict\" must be of type integer"}`},
		{"OptionNotStrings", "POST", "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"options":{"stop":[1]}}`, 500, jsonType, `{"error":"option \"stop\" must be of an array of strings"}`},
		{"OptionNotABool", "POST", "/api/embed", `{"model":"tiny","input":"x","options":{"use_mmap":"yes"}}`, 500, jsonType, `{"error":"option \"use_mmap\" must be of type boolean"}`},
		{"LegacyEmbeddingsOption", "POST", "/api/embeddings", `{"model":"tiny","prompt":"x","options":{"top_p":"x"}}`, 500, jsonType, `{"error":"option \"top_p\" must be of type float32"}`},
		{"UnknownPath", "GET", "/api/nothing", ``, 404, "text/plain", `404 page not found`},
		{"WrongMethod", "GET", "/api/chat", ``, 405, "text/plain", `405 method not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := send(t, t.Context(), s, tt.method, tt.path, tt.body)
			if r.status != tt.status || r.contentType != tt.contentType || r.body != tt.want {
				t.Errorf("got %d %q %q\nwant %d %q %q", r.status, r.contentType, r.body, tt.status, tt.contentType, tt.want)
			}
		})
	}
	if n := s.Loads(); n != 0 {
		t.Errorf("refused requests loaded %d models, want 0", n)
	}
}

func TestWrongMethodSaysWhichAreAllowed(t *testing.T) {
	s := ollamatest.NewServer(t)
	for path, want := range map[string]string{"/api/chat": "POST", "/api/ps": "GET", "/api/tags": "HEAD, GET", "/": "HEAD, GET"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, s.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != want {
			t.Errorf("DELETE %s: %d, Allow %q; want 405, Allow %q", path, resp.StatusCode, resp.Header.Get("Allow"), want)
		}
	}
}

// TestInvalidFormatFailsAfterLoading checks that a format Ollama's runner
// cannot use is refused once the model is loaded, with a plain
// application/json when the answer was to stream.
func TestInvalidFormatFailsAfterLoading(t *testing.T) {
	s := ollamatest.NewServer(t)
	const want = `{"error":"invalid format: \"\\\"xml\\\"\"; expected \"json\" or a valid JSON Schema object"}`
	for _, tt := range []struct{ body, contentType string }{
		{`{"model":"tiny","prompt":"x","format":"xml","stream":false}`, "application/json; charset=utf-8"},
		{`{"model":"tiny","prompt":"x","format":"xml"}`, "application/json"},
	} {
		r := post(t, s, "/api/generate", tt.body)
		if r.status != 500 || r.contentType != tt.contentType || r.body != want {
			t.Errorf("%s: got %d %q %s\nwant 500 %q %s", tt.body, r.status, r.contentType, r.body, tt.contentType, want)
		}
	}
	if s.LoadsOf("tiny") != 1 {
		t.Errorf("loads = %d, want 1: the runner checks the format", s.LoadsOf("tiny"))
	}
	for _, format := range []string{`"json"`, `{"type":"object"}`, `null`, `""`} {
		post(t, s, "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"format":`+format+`}`).ok(t)
	}
}

func TestInfoEndpoints(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModels("tiny", "hf.co/someone/Big:Q4"))
	t.Run("RootSaysOllamaIsRunning", func(t *testing.T) {
		r := get(t, s, "/").ok(t)
		if r.body != "Ollama is running" {
			t.Errorf("got %q", r.body)
		}
		if r := send(t, t.Context(), s, http.MethodHead, "/", ""); r.status != 200 {
			t.Errorf("HEAD / = %d", r.status)
		}
	})
	t.Run("VersionIs0174", func(t *testing.T) {
		if r := get(t, s, "/api/version").ok(t); r.body != `{"version":"0.17.4"}` {
			t.Errorf("got %s", r.body)
		}
	})
	t.Run("TagsListTheModelsByDisplayName", func(t *testing.T) {
		models := field(get(t, s, "/api/tags").ok(t).object(t), "models").([]any)
		if len(models) != 2 {
			t.Fatalf("got %d models", len(models))
		}
		for i, want := range []string{"tiny:latest", "hf.co/someone/Big:Q4"} {
			m := models[i]
			if field(m, "name") != want || field(m, "model") != want || field(m, "details", "format") != "gguf" ||
				field(m, "size") == nil || field(m, "digest") == nil || field(m, "modified_at") == nil {
				t.Errorf("model %d = %v, want %s", i, m, want)
			}
		}
	})
	t.Run("ShowReportsCapabilities", func(t *testing.T) {
		o := post(t, s, "/api/show", `{"model":"tiny"}`).ok(t).object(t)
		caps, _ := o["capabilities"].([]any)
		if len(caps) == 0 || caps[0] != "completion" || field(o, "details", "family") != "llama" {
			t.Errorf("got %v", o)
		}
	})
	t.Run("OpenAIModelsListsTheSameModels", func(t *testing.T) {
		r := get(t, s, "/v1/models").ok(t)
		data := field(r.object(t), "data").([]any)
		if len(data) != 2 || field(data[0], "id") != "tiny:latest" || field(data[0], "owned_by") != "library" ||
			field(data[1], "owned_by") != "someone" || field(data[0], "object") != "model" {
			t.Errorf("got %s", r.body)
		}
	})
	t.Run("PSIsEmptyBeforeAnyLoad", func(t *testing.T) {
		if r := get(t, s, "/api/ps").ok(t); r.body != `{"models":[]}` {
			t.Errorf("got %s", r.body)
		}
	})
}
