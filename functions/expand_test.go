package functions

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func TestExpandRendersAGeneratePrompt(t *testing.T) {
	f := loadOne(t, `model: llama3.2
prompt: "Summarize in {{.length}}: {{.text}}"
vars:
  text: {required: true}
  length: {default: one sentence}
options: {temperature: 0.2}
keep_alive: 5m
`)
	body, endpoint, err := f.Expand(json.RawMessage(`{"text": "a <b> & c"}`))
	if err != nil {
		t.Fatal(err)
	}
	if endpoint != "generate" {
		t.Errorf("endpoint = %q, want generate", endpoint)
	}
	if got, want := field[string](t, body, "prompt"), "Summarize in one sentence: a <b> & c"; got != want {
		t.Errorf("prompt = %q, want %q", got, want)
	}
	if got := string(body["prompt"]); strings.Contains(got, `\u003c`) {
		t.Errorf("prompt %s escapes <, > or &", got)
	}
	if got := field[string](t, body, "model"); got != "llama3.2" {
		t.Errorf("model = %q", got)
	}
	if got := string(body["options"]); got != `{"temperature":0.2}` {
		t.Errorf("options = %s", got)
	}
	if got := string(body["keep_alive"]); got != `"5m"` {
		t.Errorf("keep_alive = %s, want \"5m\"", got)
	}
	for _, k := range []string{"messages", "system", "format", "stream"} {
		if _, ok := body[k]; ok {
			t.Errorf("body has %q: %s", k, body[k])
		}
	}
}

func TestExpandGivenVarsWinOverDefaults(t *testing.T) {
	f := loadOne(t, "model: m\nprompt: \"{{.n}} {{.opt}}|\"\nvars: {n: {default: 3}, opt: {}}\n")
	cases := []struct{ vars, want string }{
		{``, "3 |"},
		{`null`, "3 |"},
		{`{}`, "3 |"},
		{`{"n": null}`, "3 |"},
		{`{"n": 12.50}`, "12.50 |"},
		{`{"n": "five", "opt": "x"}`, "five x|"},
	}
	for _, c := range cases {
		body, _, err := f.Expand(json.RawMessage(c.vars))
		if err != nil {
			t.Errorf("Expand(%s): %v", c.vars, err)
			continue
		}
		if got := field[string](t, body, "prompt"); got != c.want {
			t.Errorf("Expand(%s) prompt = %q, want %q", c.vars, got, c.want)
		}
	}
}

func TestExpandBuildsChatMessages(t *testing.T) {
	f := loadOne(t, `model: m
system: "You answer in {{.lang}}."
messages:
  - {role: user, content: "Hi, I am {{.name}}."}
  - {role: assistant, content: Hello!}
prompt: "{{.question}}"
vars:
  lang: {default: English}
  name: {required: true}
  question: {required: true}
format:
  type: object
  properties: {answer: {type: string}}
keep_alive: -1
`)
	body, endpoint, err := f.Expand(json.RawMessage(`{"name": "Ada", "question": "Why?"}`))
	if err != nil {
		t.Fatal(err)
	}
	if endpoint != "chat" {
		t.Errorf("endpoint = %q, want chat", endpoint)
	}
	want := []message{
		{"system", "You answer in English."},
		{"user", "Hi, I am Ada."},
		{"assistant", "Hello!"},
		{"user", "Why?"},
	}
	if got := field[[]message](t, body, "messages"); !slices.Equal(got, want) {
		t.Errorf("messages = %v\nwant %v", got, want)
	}
	if got, want := string(body["format"]), `{"type":"object","properties":{"answer":{"type":"string"}}}`; got != want {
		t.Errorf("format = %s, want the schema itself %s", got, want)
	}
	if got := string(body["keep_alive"]); got != "-1" {
		t.Errorf("keep_alive = %s, want the number -1", got)
	}
	for _, k := range []string{"prompt", "system"} {
		if _, ok := body[k]; ok {
			t.Errorf("a chat body has %q", k)
		}
	}
}

func TestExpandGenerateWithSystem(t *testing.T) {
	f := loadOne(t, "model: m\nendpoint: generate\nsystem: \"be {{.tone}}\"\nprompt: hi\nvars: {tone: {default: kind}}\n")
	body, endpoint, err := f.Expand(nil)
	if err != nil {
		t.Fatal(err)
	}
	if endpoint != "generate" || field[string](t, body, "system") != "be kind" || field[string](t, body, "prompt") != "hi" {
		t.Errorf("endpoint %q, body %v", endpoint, body)
	}
}

func TestExpandMissingRequiredVarNamesIt(t *testing.T) {
	f := loadOne(t, "model: m\nprompt: \"{{.text}} {{.style}}\"\nvars:\n  text: {required: true, description: the text to summarize}\n  style: {required: true}\n")
	f.Name = "summarize"
	_, _, err := f.Expand(json.RawMessage(`{"style": "terse"}`))
	if got, want := asInputError(t, err).Error(), `function "summarize" needs var "text" (the text to summarize)`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	_, _, err = f.Expand(nil)
	if got, want := err.Error(), `function "summarize" needs vars "style" and "text" (the text to summarize)`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestExpandUnknownVarsAreNamed(t *testing.T) {
	f := loadOne(t, "model: m\nprompt: \"{{.text}}\"\nvars: {text: {}}\n")
	_, _, err := f.Expand(json.RawMessage(`{"text": "x", "txet": "y", "b": 1}`))
	if got, want := asInputError(t, err).Error(), `function "fn" has no vars "b", "txet" (it takes "text")`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	g := loadOne(t, minimal)
	_, _, err = g.Expand(json.RawMessage(`{"x": 1}`))
	if got, want := err.Error(), `function "fn" has no var "x" (it takes no vars)`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestExpandVarsMustBeAnObject(t *testing.T) {
	f := loadOne(t, minimal)
	_, _, err := f.Expand(json.RawMessage(`["x"]`))
	if got := asInputError(t, err).Error(); !strings.Contains(got, "must be a JSON object") || !strings.Contains(got, "an array") {
		t.Errorf("got %q", got)
	}
}

func TestExpandTemplateErrorNamesTemplateAndPlace(t *testing.T) {
	f := loadOne(t, "model: m\nmessages:\n  - {role: user, content: \"{{upper .text}}\"}\nvars: {text: {}}\n")
	_, _, err := f.Expand(json.RawMessage(`{"text": {"not": "text"}}`))
	got := asInputError(t, err).Error()
	for _, want := range []string{`function "fn" could not render messages[0].content`, "line 1, column 8, at <.text>", "expected string; got a JSON object"} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q does not say %q", got, want)
		}
	}
}

func TestExpandTemplateHelpers(t *testing.T) {
	f := loadOne(t, `model: m
prompt: '{{json .doc}} {{join ", " .tags}} {{trim .pad | upper}} {{lower "X"}}{{range .tags}} {{.}}{{end}}{{with .doc}} {{.a}} {{$.pad}}{{end}}'
vars: {doc: {}, tags: {}, pad: {}}
`)
	body, _, err := f.Expand(json.RawMessage(`{"doc": {"a": "<1>"}, "tags": ["x", "y"], "pad": "  p  "}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := field[string](t, body, "prompt"), `{"a":"<1>"} x, y P x x y <1>   p  `; got != want {
		t.Errorf("prompt = %q, want %q", got, want)
	}
}
