package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseJobEndpoint(t *testing.T) {
	tests := []struct {
		name, job string
		want      Endpoint
	}{
		{"messages means chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "chat"},
		{"prompt means generate", `{"model":"m","prompt":"p"}`, "generate"},
		{"input means embed", `{"model":"m","input":"some text"}`, "embed"},
		{"messages win over prompt", `{"model":"m","prompt":"p","messages":[]}`, "chat"},
		{"prompt wins over input", `{"model":"m","input":"i","prompt":"p"}`, "generate"},
		{"an explicit endpoint wins over inference", `{"model":"m","prompt":"p","endpoint":"openai.completions"}`, "openai.completions"},
		{"embeddings is named explicitly", `{"model":"m","prompt":"p","endpoint":"embeddings"}`, "embeddings"},
		{"openai chat is named explicitly", `{"model":"m","messages":[],"endpoint":"openai.chat"}`, "openai.chat"},
		{"a function job leaves the endpoint to the function", `{"function":"summarize","vars":{"text":"x"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := ParseJob([]byte(tt.job), 0)
			if err != nil {
				t.Fatal(err)
			}
			if j.Endpoint != tt.want {
				t.Errorf("got endpoint %q, want %q", j.Endpoint, tt.want)
			}
			if _, ok := j.Body["endpoint"]; ok {
				t.Error("endpoint left in the body")
			}
		})
	}
}

func TestParseJobFields(t *testing.T) {
	data := `{"model": "llama3.2", "prompt": "p", "endpoint": "generate",
		"vars": {"a": 1}, "webhook": "https://example.com/hook", "meta": {"ticket": 42},
		"priority": -5, "max_attempts": 5, "timeout": "90s", "max_age": "1h",
		"idempotency_key": "k1", "stream": false,
		"options":{"temperature":0.10}, "keep_alive": "5m", "x_future": [1, 2.50, "<&>", 1e400]}`
	j, err := ParseJob([]byte(data), 0)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("hopper fields are parsed", func(t *testing.T) {
		want := Job{Endpoint: "generate", Model: "llama3.2", Webhook: "https://example.com/hook",
			Priority: -5, MaxAttempts: 5, Timeout: 90 * time.Second, MaxAge: time.Hour, IdempotencyKey: "k1"}
		got := *j
		got.Vars, got.Meta, got.Body = nil, nil, nil
		if got.Endpoint != want.Endpoint || got.Model != want.Model || got.Webhook != want.Webhook ||
			got.Priority != want.Priority || got.MaxAttempts != want.MaxAttempts || got.Timeout != want.Timeout ||
			got.MaxAge != want.MaxAge || got.IdempotencyKey != want.IdempotencyKey {
			t.Errorf("got %+v, want %+v", got, want)
		}
		if string(j.Vars) != `{"a": 1}` || string(j.Meta) != `{"ticket": 42}` {
			t.Errorf("got vars %s and meta %s, want them as submitted", j.Vars, j.Meta)
		}
	})

	t.Run("hopper fields are removed from the body", func(t *testing.T) {
		got := slices.Sorted(maps.Keys(j.Body))
		want := []string{"keep_alive", "model", "options", "prompt", "x_future"}
		if !slices.Equal(got, want) {
			t.Errorf("got body keys %q, want %q", got, want)
		}
	})

	t.Run("unknown fields keep their exact bytes", func(t *testing.T) {
		for k, want := range map[string]string{
			"options":  `{"temperature":0.10}`,
			"x_future": `[1, 2.50, "<&>", 1e400]`,
		} {
			if got := string(j.Body[k]); got != want {
				t.Errorf("body[%s]: got %s, want %s", k, got, want)
			}
		}
	})

	t.Run("the request merges hopper's settings over the body", func(t *testing.T) {
		req, err := j.Request(map[string]json.RawMessage{"stream": json.RawMessage("true"), "keep_alive": json.RawMessage("-1")})
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(req, &got); err != nil {
			t.Fatalf("request %s is not a JSON object: %v", req, err)
		}
		if string(got["stream"]) != "true" || string(got["keep_alive"]) != "-1" {
			t.Errorf("got stream %s and keep_alive %s, want true and -1", got["stream"], got["keep_alive"])
		}
		for _, k := range hopperFields {
			if _, ok := got[k]; ok && k != "stream" {
				t.Errorf("hopper field %q sent to the target", k)
			}
		}
		for _, want := range []string{`"temperature":0.10`, `2.50`, `"<&>"`, `1e400`} {
			if !bytes.Contains(req, []byte(want)) {
				t.Errorf("request %s lost %s", req, want)
			}
		}
	})

	t.Run("the request without extras is the body", func(t *testing.T) {
		req, err := j.Request(nil)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(req, &got); err != nil {
			t.Fatal(err)
		}
		if _, ok := got["stream"]; ok {
			t.Error("the job's own stream field reached the target")
		}
		if string(got["model"]) != `"llama3.2"` {
			t.Errorf("got model %s, want llama3.2", got["model"])
		}
	})
}

func TestParseJobTolerates(t *testing.T) {
	tests := []struct {
		name, job string
	}{
		{"a byte order mark", "\xEF\xBB\xBF" + job},
		{"a byte order mark and whitespace", "\xEF\xBB\xBF\n\t " + job + "\n\n"},
		{"null hopper fields", `{"model":"m","prompt":"p","priority":null,"webhook":null,"vars":null,"timeout":null}`},
		{"empty durations", `{"model":"m","prompt":"p","timeout":"","max_age":""}`},
		{"a function job without a model", `{"function":"summarize","vars":{"text":"..."},"priority":3}`},
		{"any JSON as meta", `{"model":"m","prompt":"p","meta":[1,"two"]}`},
		{"a model named through the function's endpoint", `{"function":"f","endpoint":"chat"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseJob([]byte(tt.job), 1<<20); err != nil {
				t.Errorf("got %v, want it accepted", err)
			}
		})
	}
}

func TestParseJobRefuses(t *testing.T) {
	tests := []struct {
		name    string
		job     string
		maxSize int64
		want    string
	}{
		{"malformed JSON, naming line, column and byte offset", "{\"model\": \"m\",\n \"prompt\": }", 0, "line 2, column 12, byte offset 26"},
		{"malformed JSON after a multi-byte character, counting characters and bytes", `{"model": "é", x}`, 0, "line 1, column 16, byte offset 16"},
		{"garbage after the object", `{"model":"m","prompt":"p"} x`, 0, "after top-level value at line 1, column 28"},
		{"a cut-off file", `{"model": "m"`, 0, "ends early at line 1"},
		{"an empty file", ``, 0, "empty"},
		{"only whitespace", " \n\t", 0, "empty"},
		{"only a byte order mark", "\xEF\xBB\xBF", 0, "empty"},
		{"an array", `[{"model":"m","prompt":"p"}]`, 0, "must be a JSON object, got array"},
		{"a string", `"hello"`, 0, "must be a JSON object, got string"},
		{"a number", `42`, 0, "must be a JSON object, got number"},
		{"null", `null`, 0, "must be a JSON object, got null"},
		{"an unknown endpoint", `{"model":"m","prompt":"p","endpoint":"bogus"}`, 0, `unknown endpoint "bogus"`},
		{"an unknown endpoint on a function job", `{"function":"f","endpoint":"bogus"}`, 0, `unknown endpoint "bogus"`},
		{"no way to tell the endpoint", `{"model":"m"}`, 0, "cannot tell which endpoint"},
		{"a missing model", `{"prompt":"p"}`, 0, `"model" is required`},
		{"a blank model", `{"model":"  ","prompt":"p"}`, 0, `"model" is required`},
		{"a numeric model", `{"model":3,"prompt":"p"}`, 0, `"model" must be a string, got the number 3`},
		{"a string priority", `{"model":"m","prompt":"p","priority":"high"}`, 0, `"priority" must be an integer, got the string "high"`},
		{"a fractional priority", `{"model":"m","prompt":"p","priority":10.5}`, 0, `"priority" must be an integer, got the number 10.5, which is not a whole number`},
		{"a fraction too small for a float", `{"model":"m","prompt":"p","priority":1e-400}`, 0, `"priority" must be an integer, got the number 1e-400, which is not a whole number`},
		{"a fractional max_attempts", `{"model":"m","prompt":"p","max_attempts":2.5e0}`, 0, `"max_attempts" must be an integer, got the number 2.5e0, which is not a whole number`},
		{"a huge priority", `{"model":"m","prompt":"p","priority":1e400}`, 0, `"priority" must be an integer, got the number 1e400, which is out of range`},
		{"a priority past int64 in digits", `{"model":"m","prompt":"p","priority":99999999999999999999999}`, 0, `"priority" must be an integer, got the number 99999999999999999999999, which is out of range`},
		{"a priority past what a float tells apart", `{"model":"m","prompt":"p","priority":1e17}`, 0, `which is out of range`},
		{"a boolean priority", `{"model":"m","prompt":"p","priority":true}`, 0, `"priority" must be an integer, got a boolean`},
		{"a negative max_attempts", `{"model":"m","prompt":"p","max_attempts":-1}`, 0, `"max_attempts" must be 1 or more`},
		{"a numeric timeout", `{"model":"m","prompt":"p","timeout":30}`, 0, `"timeout" must be a duration like "90s" or "10m", got the number 30`},
		{"a malformed timeout", `{"model":"m","prompt":"p","timeout":"soon"}`, 0, `"timeout" must be a duration`},
		{"a negative max_age", `{"model":"m","prompt":"p","max_age":"-1h"}`, 0, `"max_age" must be a duration`},
		{"vars that are not an object", `{"function":"f","vars":[1]}`, 0, `"vars" must be a JSON object, got an array`},
		{"a numeric webhook", `{"model":"m","prompt":"p","webhook":1}`, 0, `"webhook" must be a string`},
		{"a boolean function", `{"function":true}`, 0, `"function" must be a string, got a boolean`},
		{"an oversized job", job, 20, "over the limit of 20 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := ParseJob([]byte(tt.job), tt.maxSize)
			if err == nil {
				t.Fatalf("got %+v, want an error", j)
			}
			var bad *BadInputError
			if !errors.As(err, &bad) {
				t.Fatalf("got %T %v, want *BadInputError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	all := Endpoints()
	if !slices.IsSorted(all) || len(all) != 7 {
		t.Errorf("got %q, want the seven endpoints sorted", all)
	}
	for _, e := range all {
		if !e.Valid() || !strings.HasPrefix(e.Path(), "/") {
			t.Errorf("%s: got valid %v, path %q", e, e.Valid(), e.Path())
		}
		if at, ok := EndpointAt(e.Path()); !ok || at != e {
			t.Errorf("EndpointAt(%s): got %q, %v, want %s", e.Path(), at, ok, e)
		}
		if e.OpenAI() != strings.HasPrefix(e.Path(), "/v1/") || e.Native().OpenAI() || e.Native().Streams() != e.Streams() {
			t.Errorf("%s: got OpenAI %v, native %s", e, e.OpenAI(), e.Native())
		}
	}
	if bogus := Endpoint("bogus"); bogus.Valid() || bogus.Path() != "" || bogus.Streams() {
		t.Error("bogus is an endpoint")
	}
	if _, ok := EndpointAt("/api/tags"); ok {
		t.Error("/api/tags is a job endpoint")
	}
	for e, want := range map[Endpoint]bool{EndpointChat: true, EndpointGenerate: true, EndpointOpenAIChat: true, EndpointOpenAICompletions: true,
		EndpointEmbed: false, EndpointEmbeddings: false, EndpointOpenAIEmbeddings: false} {
		if e.Streams() != want {
			t.Errorf("%s.Streams(): got %v, want %v", e, !want, want)
		}
	}
	for e, want := range map[Endpoint]Endpoint{EndpointOpenAIChat: EndpointChat, EndpointOpenAICompletions: EndpointGenerate,
		EndpointOpenAIEmbeddings: EndpointEmbed, EndpointEmbeddings: EndpointEmbeddings} {
		if got := e.Native(); got != want {
			t.Errorf("%s.Native(): got %s, want %s", e, got, want)
		}
	}
}

func TestParseJobIntegers(t *testing.T) {
	tests := []struct {
		name, value string
		want        int
	}{
		{"digits", "7", 7},
		{"a negative number", "-5", -5},
		{"a whole number with a fraction, as Ollama takes for its integer options", "10.0", 10},
		{"a negative one", "-2.000", -2},
		{"an exponent", "1e1", 10},
		{"a fraction and an exponent that make a whole number", "2.5E1", 25},
		{"zero written as a fraction", "-0.0e5", 0},
		{"the largest int in digits", "9223372036854775807", 9223372036854775807},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := ParseJob([]byte(`{"model":"m","prompt":"p","priority":`+tt.value+`,"max_attempts":`+tt.value+`}`), 0)
			if tt.want < 0 {
				// max_attempts must be 1 or more: try priority alone.
				j, err = ParseJob([]byte(`{"model":"m","prompt":"p","priority":`+tt.value+`}`), 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			if j.Priority != tt.want || (tt.want >= 0 && j.MaxAttempts != tt.want) {
				t.Errorf("got priority %d, max_attempts %d, want %d", j.Priority, j.MaxAttempts, tt.want)
			}
		})
	}
}
