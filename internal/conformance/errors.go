package conformance

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// failure is an error answer, byte for byte.
type failure struct {
	status      int
	contentType string
	body        string
}

func quoted(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// apiError is Ollama's own error answer (gin's c.JSON: no newline).
func apiError(status int, msg string) failure {
	return failure{status, jsonUTF8, `{"error":` + quoted(msg) + `}`}
}

// openaiError is how Ollama's OpenAI layer reports a failure of the handler
// behind it: the handler's status, type api_error, json.Encoder's newline.
func openaiError(status int, msg string) failure {
	return failure{status, "application/json", `{"error":{"message":` + quoted(msg) + `,"type":"api_error","param":null,"code":null}}` + "\n"}
}

// openaiBadRequest is a request the OpenAI layer refuses itself.
func openaiBadRequest(msg string) failure {
	return failure{http.StatusBadRequest, jsonUTF8, `{"error":{"message":` + quoted(msg) + `,"type":"invalid_request_error","param":null,"code":null}}`}
}

func routing(status int, text string) failure { return failure{status, "text/plain", text} }

const (
	truncated   = `{"model": "m1", "messages": [`
	missingUnit = `time: missing unit in duration "3600"`
	unqualified = "unqualified name: registry.ollama.ai/library/!MISSING!:latest"
	notPulled   = `model "nope" not found, try pulling it first`
)

var nativePaths = []string{"/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"}
var openaiPaths = []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}

// request is a body every inference endpoint accepts, for model.
func request(model string, extra ...any) map[string]any {
	m := map[string]any{"messages": hello(), "prompt": "hello", "input": "hello"}
	if model != "" {
		m["model"] = model
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func testErrors(t *testing.T, c client) {
	type tc struct {
		name, method, path string
		body               any
		want               failure
		allow              string // the Allow header of a 405
	}
	cases := []tc{}
	add := func(name, path string, body any, want failure) {
		cases = append(cases, tc{name: name, method: http.MethodPost, path: path, body: body, want: want})
	}

	// An unknown model, streaming or not: refused before anything streams.
	for _, stream := range []any{nil, false, true} {
		extra := []any{}
		if stream != nil {
			extra = []any{"stream", stream}
		}
		suffix := map[any]string{nil: "", false: "/stream=false", true: "/stream=true"}[stream]
		add("UnknownModel"+suffix, "/api/chat", request("nope", extra...), apiError(404, "model 'nope' not found"))
		add("UnknownModel"+suffix, "/api/generate", request("nope", extra...), apiError(404, "model 'nope' not found"))
		add("UnknownModel"+suffix, "/v1/chat/completions", request("nope", extra...), openaiError(404, "model 'nope' not found"))
		add("UnknownModel"+suffix, "/v1/completions", request("nope", extra...), openaiError(404, "model 'nope' not found"))
	}
	add("UnknownModel", "/api/embed", request("nope"), apiError(404, notPulled))
	add("UnknownModel", "/api/embeddings", request("nope"), apiError(404, notPulled))
	add("UnknownModel", "/api/show", request("nope"), apiError(404, "model 'nope' not found"))
	add("UnknownModel", "/v1/embeddings", request("nope"), openaiError(404, notPulled))

	// No model at all: each endpoint in its own words.
	add("MissingModel", "/api/chat", request(""), apiError(400, "model is required"))
	add("MissingModel", "/api/generate", request(""), apiError(404, "model '' not found"))
	add("MissingModel", "/api/embed", request(""), apiError(500, unqualified))
	add("MissingModel", "/api/embeddings", request(""), apiError(400, "model is required"))
	add("MissingModel", "/api/show", request(""), apiError(400, "model is required"))
	add("MissingModel", "/v1/chat/completions", request(""), openaiError(400, "model is required"))
	add("MissingModel", "/v1/completions", request(""), openaiError(404, "model '' not found"))
	add("MissingModel", "/v1/embeddings", request(""), openaiError(500, unqualified))

	// Bodies that are not JSON objects.
	for _, p := range nativePaths {
		add("TruncatedJSON", p, truncated, apiError(400, "unexpected EOF"))
		add("EmptyBody", p, "", apiError(400, "missing request body"))
	}
	for _, p := range openaiPaths {
		add("TruncatedJSON", p, truncated, openaiBadRequest("unexpected EOF"))
		add("EmptyBody", p, "", openaiBadRequest("EOF"))
	}
	add("WrongFieldType", "/api/chat", `{"model":"m1","messages":"hi"}`,
		apiError(400, "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"))
	add("WrongModelType", "/api/chat", `{"model":1}`,
		apiError(400, "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"))
	add("WrongStreamType", "/api/generate", `{"model":"m1","stream":"yes"}`,
		apiError(400, "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool"))
	add("WrongInputType", "/api/embed", `{"model":"m1","input":5}`, apiError(400, "invalid input type"))
	add("NoMessages", "/v1/chat/completions", `{"model":"m1","messages":[]}`, openaiBadRequest("[] is too short - 'messages'"))

	// keep_alive: digits in a string are not a duration; hopper must send
	// them as a number.
	add("KeepAliveDigitsInAString", "/api/chat", request("m1", "keep_alive", "3600"), apiError(400, missingUnit))
	add("KeepAliveDigitsInAString/stream=false", "/api/generate", request("m1", "keep_alive", "3600", "stream", false), apiError(400, missingUnit))
	add("KeepAliveDigitsInAString", "/api/embed", request("m1", "keep_alive", "3600"), apiError(400, missingUnit))
	add("KeepAliveDigitsInAString", "/api/embeddings", request("m1", "keep_alive", "3600"), apiError(400, missingUnit))
	add("KeepAliveBool", "/api/generate", request("m1", "keep_alive", true), apiError(400, "Unsupported type: 'bool'"))

	// options are passed through by hopper; Ollama checks their types when
	// it schedules the request, after the model, and answers 500.
	opt := func(k string, v any) map[string]any { return map[string]any{k: v} }
	add("OptionNotAnInteger", "/api/generate", request("m1", "options", opt("num_predict", "x"), "stream", false),
		apiError(500, `option "num_predict" must be of type integer`))
	add("OptionNotAFloat", "/api/chat", request("m1", "options", opt("temperature", "hot")),
		apiError(500, `option "temperature" must be of type float32`))
	add("OptionNotAnArray", "/api/generate", request("m1", "options", opt("stop", "x")),
		apiError(500, `option "stop" must be of type array`))
	add("OptionNotStrings", "/api/generate", request("m1", "options", opt("stop", []any{1})),
		apiError(500, `option "stop" must be of an array of strings`))
	add("OptionNotABool", "/api/embed", request("m1", "options", opt("use_mmap", 1)),
		apiError(500, `option "use_mmap" must be of type boolean`))
	add("OptionNotAnInteger", "/api/embeddings", request("m1", "options", opt("num_ctx", "big")),
		apiError(500, `option "num_ctx" must be of type integer`))
	add("OptionBeforeModel", "/api/chat", request("nope", "options", opt("num_ctx", "big")),
		apiError(404, "model 'nope' not found"))
	add("WrongFieldType", "/v1/chat/completions", request("m1", "temperature", "hot"),
		openaiBadRequest("json: cannot unmarshal string into Go struct field ChatCompletionRequest.temperature of type float64"))
	add("WrongFieldType", "/v1/completions", request("m1", "temperature", "hot"),
		openaiBadRequest("json: cannot unmarshal string into Go struct field CompletionRequest.temperature of type float32"))

	// format is checked by the runner once the model is loaded: an answer
	// that was to stream fails before its first chunk, with a plain
	// application/json.
	badFormat := func(raw string) string {
		return "invalid format: " + quoted(raw) + `; expected "json" or a valid JSON Schema object`
	}
	add("InvalidFormat/stream=false", "/api/chat", request("m1", "format", "xml", "stream", false),
		apiError(500, badFormat(`"xml"`)))
	add("InvalidFormat", "/api/chat", request("m1", "format", "xml"),
		failure{500, "application/json", `{"error":` + quoted(badFormat(`"xml"`)) + `}`})
	add("InvalidFormat/stream=false", "/api/generate", request("m1", "format", 5, "stream", false),
		apiError(500, badFormat(`5`)))
	add("InvalidFormat", "/api/generate", request("m1", "format", "JSON"),
		failure{500, "application/json", `{"error":` + quoted(badFormat(`"JSON"`)) + `}`})

	// The router's own answers.
	cases = append(cases,
		tc{"UnknownPath", http.MethodGet, "/api/nope", nil, routing(404, "404 page not found"), ""},
		tc{"WrongMethod", http.MethodGet, "/api/chat", nil, routing(405, "405 method not allowed"), "POST"},
		tc{"WrongMethod", http.MethodPost, "/api/ps", "{}", routing(405, "405 method not allowed"), "GET"},
		tc{"WrongMethod", http.MethodPost, "/api/tags", "{}", routing(405, "405 method not allowed"), "HEAD, GET"},
	)

	for _, tc := range cases {
		t.Run(tc.name+tc.path, func(t *testing.T) {
			r := c.with(t).do(tc.method, tc.path, tc.body)
			if r.status != tc.want.status || string(r.body) != tc.want.body || r.contentType() != tc.want.contentType {
				t.Errorf("%s %s\n got %d %q %q\nwant %d %q %q", tc.method, tc.path,
					r.status, r.contentType(), r.body, tc.want.status, tc.want.contentType, tc.want.body)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
}

// testDisconnect breaks off a long stream after its first chunk, as a client
// that gives up does, and checks that the server goes on serving: the model
// stays loaded and the next request is answered.
func testDisconnect(t *testing.T, c client) {
	for _, path := range []string{"/api/generate", "/api/chat", "/v1/chat/completions"} {
		t.Run(path, func(t *testing.T) {
			c := c.with(t)
			body := map[string]any{"model": "m1", "stream": true, "options": map[string]any{"num_predict": 2000}, "max_tokens": 2000}
			if path == "/api/generate" {
				body["prompt"] = longPrompt
			} else {
				body["messages"] = []map[string]string{{"role": "user", "content": longPrompt}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			resp, err := c.send(ctx, http.MethodPost, path, body)
			if err != nil {
				t.Fatal(err)
			}
			first, err := bufio.NewReader(resp.Body).ReadString('\n')
			if resp.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("status %d, first line %q, %v", resp.StatusCode, first, err)
			}
			cancel()
			resp.Body.Close()
			start := time.Now()
			r := c.post(path, map[string]any{"model": "m1", "stream": false, "prompt": "hello", "messages": hello()}).ok(t, "the request after a disconnect")
			t.Logf("answered %v after the disconnect", time.Since(start))
			if path != "/v1/chat/completions" {
				finished(t, "answer", object(t, r.body), "m1")
			}
			waitPS(t, c, "m1:latest")
		})
	}
}

// longPrompt is a prompt the tiny real model m1 (seed 1) answers at length at
// temperature 0, rather than ending soon with its end-of-text token.
const longPrompt = "x"
