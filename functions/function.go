package functions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
)

// Function is one named LLM call, checked and compiled by Load. Its exported
// fields describe it as written; treat them as read-only, since a Function
// is shared by every job that calls it.
type Function struct {
	Name        string
	Description string
	// Endpoint is "chat" or "generate": chat when messages or system is
	// given, else generate, unless the definition sets it.
	Endpoint string
	Model    string
	// System and Prompt are text/template templates over the vars; either
	// may be empty.
	System, Prompt string
	Messages       []Message
	Vars           map[string]Var
	Options        map[string]any
	// Format is what Ollama's "format" takes: a JSON schema, or the string
	// "json". Nil when the function sets none.
	Format json.RawMessage
	// KeepAlive is as written: a number of seconds or a duration; "" when
	// the function sets none.
	KeepAlive   string
	Timeout     time.Duration // 0: the job's or the configured one
	MaxAge      time.Duration // 0: the job's or the configured one
	MaxAttempts int           // 0: the job's or the configured one
	Priority    int           // the priority of jobs that give none
	Webhook     string        // notified of jobs that name no webhook
	// Source is where the function was defined: "config", or the path of
	// its file.
	Source string

	system, prompt *template.Template
	messages       []*template.Template
	defaults       map[string]any // each var's default, decoded from JSON
	schema         *jsonschema.Schema
	keepAlive      json.RawMessage
	options        json.RawMessage
}

// Message is one message of a chat function; Content is a template.
type Message struct {
	Role    string
	Content string
}

// Var declares one input of a function.
type Var struct {
	Required    bool
	Default     any // nil: none; a var that is not required and not given is ""
	Description string
}

// HasSchema reports whether the function's answers are validated against
// a JSON schema (and parsed into the record's output).
func (f *Function) HasSchema() bool { return f.schema != nil }

// InputError is bad input to a function: an unknown function, a missing or
// unknown var, vars a template cannot render. Its message is a sentence for
// the person who submitted the job.
type InputError struct {
	Function string
	Reason   string
}

func (e *InputError) Error() string { return e.Reason }

func inputError(fn, format string, args ...any) error {
	return &InputError{Function: fn, Reason: fmt.Sprintf(format, args...)}
}

// Expand renders the function with vars (a JSON object; nil or null means
// none) into an Ollama request body and returns it with the endpoint
// ("chat" or "generate"). The body holds "model"; "messages" (chat) or
// "prompt" and "system" (generate); and "options", "format" (the schema
// itself, as Ollama's structured outputs take it) and "keep_alive" when the
// function sets them. It never sets "stream".
//
// Declared vars that are not given take their default, or "" when they have
// none; a var given as null counts as not given. Every error is an
// *InputError naming the missing or unknown vars, or the template that could
// not be rendered and why.
func (f *Function) Expand(vars json.RawMessage) (body map[string]json.RawMessage, endpoint string, err error) {
	given, err := f.decodeVars(vars)
	if err != nil {
		return nil, "", err
	}
	if err := f.checkVars(given); err != nil {
		return nil, "", err
	}
	data := make(map[string]any, len(f.Vars))
	for name := range f.Vars {
		switch v, ok := given[name]; {
		case ok && v != nil:
			data[name] = v
		case f.defaults[name] != nil:
			data[name] = f.defaults[name]
		default:
			data[name] = ""
		}
	}
	render := func(t *template.Template) (string, error) {
		b := &limitedBuilder{limit: maxRendered}
		if err := t.Execute(b, data); err != nil {
			if errors.Is(err, errTooLong) {
				return "", inputError(f.Name, "function %q renders %s longer than %d MiB with these vars", f.Name, t.Name(), maxRendered>>20)
			}
			return "", inputError(f.Name, "function %q could not render %s with these vars: %s", f.Name, t.Name(), templateError(t.Name(), err))
		}
		return b.String(), nil
	}

	body = map[string]json.RawMessage{"model": encode(f.Model)}
	var system, prompt string
	if f.system != nil {
		if system, err = render(f.system); err != nil {
			return nil, "", err
		}
	}
	if f.prompt != nil {
		if prompt, err = render(f.prompt); err != nil {
			return nil, "", err
		}
	}
	switch f.Endpoint {
	case "generate":
		body["prompt"] = encode(prompt)
		if f.system != nil {
			body["system"] = encode(system)
		}
	case "chat":
		type message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		}
		var msgs []message
		if f.system != nil {
			msgs = append(msgs, message{"system", system})
		}
		for i, t := range f.messages {
			content, err := render(t)
			if err != nil {
				return nil, "", err
			}
			msgs = append(msgs, message{f.Messages[i].Role, content})
		}
		if f.prompt != nil {
			msgs = append(msgs, message{"user", prompt})
		}
		body["messages"] = encode(msgs)
	}
	if f.options != nil {
		body["options"] = f.options
	}
	if f.Format != nil {
		body["format"] = f.Format
	}
	if f.keepAlive != nil {
		body["keep_alive"] = f.keepAlive
	}
	return body, f.Endpoint, nil
}

// maxRendered bounds one rendered template, so that vars fed to nested
// ranges cannot make the runner build a request without end.
const maxRendered = 64 << 20

var errTooLong = errors.New("rendered text too long")

// limitedBuilder is a strings.Builder that fails writes past its limit.
type limitedBuilder struct {
	strings.Builder
	limit int
}

func (b *limitedBuilder) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		return 0, errTooLong
	}
	return b.Builder.Write(p)
}

// decodeVars decodes a job's vars, keeping numbers as written.
func (f *Function) decodeVars(vars json.RawMessage) (map[string]any, error) {
	vars = bytes.TrimSpace(vars)
	if len(vars) == 0 || bytes.Equal(vars, []byte("null")) {
		return nil, nil
	}
	if vars[0] != '{' {
		return nil, inputError(f.Name, "the vars of function %q must be a JSON object like {\"name\": \"value\"}, got %s", f.Name, describeJSON(vars))
	}
	dec := json.NewDecoder(bytes.NewReader(vars))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, inputError(f.Name, "the vars of function %q are not valid JSON: %v", f.Name, err)
	}
	return m, nil
}

// checkVars refuses unknown vars and missing required ones, naming them.
func (f *Function) checkVars(given map[string]any) error {
	var unknown []string
	for name := range given {
		if _, ok := f.Vars[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		takes := "it takes no vars"
		if len(f.Vars) > 0 {
			takes = "it takes " + quoteList(slices.Sorted(maps.Keys(f.Vars)))
		}
		return inputError(f.Name, "function %q has no %s %s (%s)", f.Name, plural(len(unknown), "var", "vars"), quoteList(unknown), takes)
	}
	var missing []string
	for _, name := range slices.Sorted(maps.Keys(f.Vars)) {
		if v := f.Vars[name]; v.Required && given[name] == nil {
			s := fmt.Sprintf("%q", name)
			if v.Description != "" {
				s += " (" + v.Description + ")"
			}
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return inputError(f.Name, "function %q needs %s %s", f.Name, plural(len(missing), "var", "vars"), andList(missing))
	}
	return nil
}

// AnswerError is a model's answer that is not what the function's format
// asks for: not JSON, or not valid against the schema. Problems lists each
// reason, as a person would read it.
type AnswerError struct {
	Function string
	Problems []string
}

func (e *AnswerError) Error() string {
	return fmt.Sprintf("the answer does not match the schema of function %q: %s", e.Function, strings.Join(e.Problems, "; "))
}

// Check validates the model's answer text (the message content, or the
// generated response) against the function's format and returns it parsed,
// as compact JSON, for the record's output. A function with no format
// returns (nil, nil). With format "json" the answer need only be JSON.
// A Markdown code fence around the JSON is tolerated. Every error is an
// *AnswerError.
func (f *Function) Check(content string) (json.RawMessage, error) {
	if f.Format == nil {
		return nil, nil
	}
	text := []byte(stripFence(content))
	if !json.Valid(text) {
		var v any
		err := json.Unmarshal(text, &v)
		problem := "it is not JSON"
		if len(bytes.TrimSpace(text)) == 0 {
			problem = "it is empty, not JSON"
		} else if err != nil {
			problem = fmt.Sprintf("it is not JSON (%v): it begins %q", err, excerpt(string(text), 40))
		}
		return nil, &AnswerError{Function: f.Name, Problems: []string{problem}}
	}
	var out bytes.Buffer
	if err := json.Compact(&out, text); err != nil {
		return nil, &AnswerError{Function: f.Name, Problems: []string{err.Error()}}
	}
	if f.schema != nil {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
		if err != nil {
			return nil, &AnswerError{Function: f.Name, Problems: []string{err.Error()}}
		}
		if err := f.schema.Validate(doc); err != nil {
			return nil, &AnswerError{Function: f.Name, Problems: validationProblems(err)}
		}
	}
	return out.Bytes(), nil
}

// stripFence removes a Markdown code fence (```json … ```) around the text,
// which some models add even when asked for JSON.
func stripFence(s string) string {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "```")
	if !ok || !strings.HasSuffix(rest, "```") {
		return s
	}
	rest = strings.TrimSuffix(rest, "```")
	if i := strings.IndexByte(rest, '\n'); i >= 0 && !strings.ContainsAny(rest[:i], "{[\"") {
		rest = rest[i+1:] // the info string: "json"
	}
	return strings.TrimSpace(rest)
}

// decodeJSON decodes one JSON value, keeping numbers as written.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// encode marshals v without escaping <, > and &, which prompts use freely.
func encode(v any) json.RawMessage {
	b, err := jsonfmt.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("functions: encode %T: %v", v, err)) // strings and checked values only
	}
	return b
}

func describeJSON(raw []byte) string {
	switch raw[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

func excerpt(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// andList joins items as a sentence does: "a", "a and b", "a, b and c".
func andList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
