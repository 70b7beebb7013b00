package functions

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/yamlconf"
)

const minimal = "model: m\nprompt: hi\n"

func TestLoadReadsFilesAndConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", minimal)
	writeFile(t, dir, "b.yml", minimal)
	writeFile(t, dir, ".hidden.yaml", "this: [is not loaded")
	writeFile(t, dir, "README.md", "not a function")
	writeFile(t, dir, "c.yaml~", "an editor's backup")
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	config := map[string]any{"c": map[string]any{"model": "m", "prompt": "hi"}}
	set, err := Load(config, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := set.Names(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	a, _ := set.Get("a")
	if want := filepath.Join(dir, "a.yaml"); a.Source != want {
		t.Errorf("a.Source = %q, want %q", a.Source, want)
	}
	if c, _ := set.Get("c"); c.Source != "config" {
		t.Errorf("c.Source = %q, want config", c.Source)
	}
}

func TestLoadWithoutDirectoryIsEmpty(t *testing.T) {
	for _, dir := range []string{"", filepath.Join(t.TempDir(), "missing")} {
		set, err := Load(nil, dir)
		if err != nil {
			t.Fatalf("Load(nil, %q): %v", dir, err)
		}
		if len(set.Names()) != 0 {
			t.Errorf("Load(nil, %q) = %v, want none", dir, set.Names())
		}
	}
}

func TestLoadUnknownKeysNameFileLineAndField(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "summarize.yaml", `model: m
prompt: "{{.text}}"
vars:
  text:
    requird: true
promt: typo
`)
	msgs := loadErrors(t, nil, dir)
	wantProblem(t, msgs, path+":6: promt: unknown key", `did you mean "prompt"?`)
	wantProblem(t, msgs, path+":5: vars.text.requird: unknown key", `did you mean "required"?`)
}

func TestLoadUnknownKeyInConfigNamesFunctionAndField(t *testing.T) {
	config := map[string]any{"greet": map[string]any{"model": "m", "prompt": "hi", "temprature": 0.5}}
	msgs := loadErrors(t, config, "")
	wantProblem(t, msgs, "config functions.greet.temprature: unknown key")
}

func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "nomodel.yaml", "prompt: hi\n")
	writeFile(t, dir, "noprompt.yaml", "model: m\n")
	writeFile(t, dir, "badtemplate.yaml", "model: m\nprompt: \"{{.text\"\nvars: {text: {required: true}}\n")
	writeFile(t, dir, "undeclared.yaml", "model: m\nprompt: \"{{.txt}}\"\nvars: {text: {}}\n")
	writeFile(t, dir, "badschema.yaml", "model: m\nprompt: hi\nformat: {type: objec}\n")
	writeFile(t, dir, "badduration.yaml", "model: m\nprompt: hi\ntimeout: 10 minutes\nmax_age: 5\n")
	writeFile(t, dir, "badyaml.yaml", "model: m\nprompt: [unclosed\n")
	writeFile(t, dir, "empty.yaml", "")
	writeFile(t, dir, "bad name.yaml", minimal)
	writeFile(t, dir, "good.yaml", minimal)
	msgs := loadErrors(t, nil, dir)
	wantProblem(t, msgs, "nomodel.yaml", "model: is required")
	wantProblem(t, msgs, "noprompt.yaml", "needs a prompt or messages")
	wantProblem(t, msgs, "badtemplate.yaml:2: prompt: line 1:", "unclosed action")
	wantProblem(t, msgs, "undeclared.yaml:2: prompt: uses var \"txt\"", `declares "text"`)
	wantProblem(t, msgs, "badschema.yaml:3: format: not a valid JSON schema", "at /type")
	wantProblem(t, msgs, "badduration.yaml:3: timeout: must be a duration", `"10 minutes"`)
	wantProblem(t, msgs, "badduration.yaml:4: max_age: must be a duration")
	wantProblem(t, msgs, "badyaml.yaml: not valid YAML")
	wantProblem(t, msgs, "empty.yaml: the file is empty")
	wantProblem(t, msgs, `"bad name" cannot name a function`)
	if len(msgs) != 10 {
		t.Errorf("got %d problems, want 10:\n  %s", len(msgs), strings.Join(msgs, "\n  "))
	}
}

func TestLoadChecksFieldShapes(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"endpoint must be chat or generate", "model: m\nprompt: hi\nendpoint: embed\n", []string{"endpoint: must be chat or generate"}},
		{"generate takes no messages", "model: m\nendpoint: generate\nmessages: [{role: user, content: hi}]\n", []string{"messages: endpoint generate takes a prompt"}},
		{"a message needs a known role", "model: m\nmessages: [{role: robot, content: hi}]\n", []string{"messages[0].role: must be one of"}},
		{"a message needs content", "model: m\nmessages: [{role: user}]\n", []string{"messages[0].content: is required"}},
		{"messages must be a list", "model: m\nmessages: hi\n", []string{"messages: must be a list"}},
		{"format must be json or a schema", "model: m\nprompt: hi\nformat: xml\n", []string{"format: must be \"json\" or a JSON schema"}},
		{"schema refs stay inside", "model: m\nprompt: hi\nformat: {$ref: 'https://example.com/s.json'}\n", []string{"format: $ref", "points outside the schema"}},
		{"keep_alive must be seconds or a duration", "model: m\nprompt: hi\nkeep_alive: forever\n", []string{"keep_alive: must be a number of seconds"}},
		{"max_attempts must be an integer", "model: m\nprompt: hi\nmax_attempts: many\n", []string{"max_attempts: must be an integer"}},
		{"max_attempts must not be negative", "model: m\nprompt: hi\nmax_attempts: -1\n", []string{"max_attempts: must be 1 or more"}},
		{"webhook must be a URL", "model: m\nprompt: hi\nwebhook: example.com\n", []string{"webhook: must be an http or https URL"}},
		{"var names must be identifiers", "model: m\nprompt: hi\nvars: {my-var: {}}\n", []string{`vars.my-var: "my-var" cannot name a var`}},
		{"a required var has no default", "model: m\nprompt: \"{{.a}}\"\nvars: {a: {required: true, default: x}}\n", []string{"vars.a: is required and has a default"}},
		{"required must be a boolean", "model: m\nprompt: hi\nvars: {a: {required: yes please}}\n", []string{"vars.a.required: must be true or false"}},
		{"options must be a mapping", "model: m\nprompt: hi\noptions: [1]\n", []string{"options: must be a mapping"}},
		{"prompt must be text", "model: m\nprompt: {a: b}\n", []string{"prompt: must be text, got a mapping"}},
		{"model must not be blank", "model: ' '\nprompt: hi\n", []string{"model: is required"}},
		{"a definition must be a mapping", "- model: m\n", []string{"must be a mapping of settings"}},
		{"one document per file", minimal + "---\n" + minimal, []string{"more than one YAML document"}},
		{"duplicate keys", "model: m\nmodel: n\nprompt: hi\n", []string{"fn.yaml:2: model: set twice (first on line 1)"}},
		{"a template calls no unknown function", "model: m\nprompt: \"{{shout .a}}\"\nvars: {a: {}}\n", []string{"prompt: line 1:", `function "shout" not defined`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "fn.yaml", c.yaml)
			wantProblem(t, loadErrors(t, nil, dir), c.want...)
		})
	}
}

func TestLoadNameDefinedTwiceIsAnError(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "dup.yaml", minimal)
	writeFile(t, dir, "twin.yaml", minimal)
	writeFile(t, dir, "twin.yml", minimal)
	config := map[string]any{"dup": map[string]any{"model": "m", "prompt": "hi"}}
	msgs := loadErrors(t, config, dir)
	wantProblem(t, msgs, filepath.Join(dir, "dup.yaml"), `function "dup" is defined twice: it is also in the config`)
	wantProblem(t, msgs, filepath.Join(dir, "twin.yml"), `function "twin" is defined twice: it is also in `+filepath.Join(dir, "twin.yaml"))
}

func TestLoadErrorsAreDefinitionErrors(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "fn.yaml", "model: m\nprompt: hi\ntimeout: soon\n")
	_, err := Load(nil, dir)
	var de *DefinitionError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DefinitionError", err)
	}
	if de.Function != "fn" || de.Source != path || de.Line != 3 || de.Field != "timeout" {
		t.Errorf("got %+v, want function fn, source %s, line 3, field timeout", de, path)
	}
}

func TestLoadKeepsTheSettings(t *testing.T) {
	f := loadOne(t, `description: d
model: llama3.2
system: be brief
prompt: "{{.q}}"
vars:
  q: {required: true, description: the question}
  n: {default: 3}
  opt:
options: {temperature: 0.5}
keep_alive: 300
timeout: 90s
max_age: 1h
max_attempts: 5
priority: 7
webhook: https://example.com/hook
`)
	if f.Model != "llama3.2" || f.Description != "d" || f.System != "be brief" || f.Prompt != "{{.q}}" {
		t.Errorf("model, description, system, prompt = %q, %q, %q, %q", f.Model, f.Description, f.System, f.Prompt)
	}
	if f.Endpoint != "chat" {
		t.Errorf("Endpoint = %q, want chat (a system prompt is given)", f.Endpoint)
	}
	if f.Timeout != 90*time.Second || f.MaxAge != time.Hour || f.MaxAttempts != 5 || f.Priority != 7 {
		t.Errorf("timeout, max_age, max_attempts, priority = %v, %v, %d, %d", f.Timeout, f.MaxAge, f.MaxAttempts, f.Priority)
	}
	if f.KeepAlive != "300" || f.Webhook != "https://example.com/hook" {
		t.Errorf("keep_alive, webhook = %q, %q", f.KeepAlive, f.Webhook)
	}
	want := map[string]Var{"q": {Required: true, Description: "the question"}, "n": {Default: 3}, "opt": {}}
	for name, w := range want {
		if got := f.Vars[name]; got != w {
			t.Errorf("Vars[%q] = %+v, want %+v", name, got, w)
		}
	}
	if f.Options["temperature"] != 0.5 {
		t.Errorf("Options = %v", f.Options)
	}
}

func TestLoadKeepsSchemaPropertyOrder(t *testing.T) {
	f := loadOne(t, `model: m
prompt: hi
format:
  type: object
  properties:
    reasoning: {type: string}
    answer: {type: string}
  required: [reasoning, answer]
`)
	want := `{"type":"object","properties":{"reasoning":{"type":"string"},"answer":{"type":"string"}},"required":["reasoning","answer"]}`
	if string(f.Format) != want {
		t.Errorf("Format = %s\nwant     %s", f.Format, want)
	}
	if !f.HasSchema() {
		t.Error("HasSchema() = false")
	}
}

func TestSectionNamesLinesAndKeepsSchemaPropertyOrder(t *testing.T) {
	file, err := yamlconf.Parse("hopper.yaml", []byte(`spool: /tmp/s
functions:
  fn:
    model: m
    prompt: hi
    format: {properties: {z: {type: string}, a: {type: string}}}
  bad:
    model: m
    prompt: hi
    timeout: soon
`))
	if err != nil {
		t.Fatal(err)
	}
	config, err := Section(file, "functions")
	if err != nil {
		t.Fatal(err)
	}
	msgs := loadErrors(t, config, "")
	wantProblem(t, msgs, `config hopper.yaml:10: functions.bad.timeout: must be a duration`)
	delete(config, "bad")
	set, err := Load(config, "")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := set.Get("fn")
	if want := `{"properties":{"z":{"type":"string"},"a":{"type":"string"}}}`; string(f.Format) != want {
		t.Errorf("Format = %s, want %s", f.Format, want)
	}
	if f.Source != "config" {
		t.Errorf("Source = %q, want config", f.Source)
	}
	if empty, err := Section(file, "nothing"); err != nil || len(empty) != 0 {
		t.Errorf("Section of a key not written: got %v, %v; want none", empty, err)
	}
}

func TestLoadTakesASchemaAsJSONText(t *testing.T) {
	config := map[string]any{"fn": map[string]any{
		"model": "m", "prompt": "hi",
		"format": `{"type": "object", "properties": {"z": {"type": "string"}, "a": {"type": "string"}}}`,
	}}
	set, err := Load(config, "")
	if err != nil {
		t.Fatal(err)
	}
	f, _ := set.Get("fn")
	if want := `{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"string"}}}`; string(f.Format) != want {
		t.Errorf("Format = %s, want %s", f.Format, want)
	}
	if !f.HasSchema() {
		t.Error("HasSchema() = false")
	}
}

func TestLoadFormatJSONHasNoSchema(t *testing.T) {
	f := loadOne(t, "model: m\nprompt: hi\nformat: json\n")
	if string(f.Format) != `"json"` || f.HasSchema() {
		t.Errorf("Format = %s, HasSchema = %v; want \"json\", false", f.Format, f.HasSchema())
	}
}

func TestLookupUnknownFunctionIsASentence(t *testing.T) {
	set, err := Load(map[string]any{"a": map[string]any{"model": "m", "prompt": "hi"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = set.Lookup("summarise")
	ie := asInputError(t, err)
	if want := `unknown function "summarise": no function of that name is defined (defined: a)`; ie.Error() != want {
		t.Errorf("got %q, want %q", ie.Error(), want)
	}
}
