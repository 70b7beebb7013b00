package functions

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/internal/yamlconf"
)

// FuzzCompile feeds arbitrary YAML definitions to the checker: it must
// return a function or problems, never panic, and a function it returns
// must expand without panicking.
func FuzzCompile(f *testing.F) {
	f.Add(contactSchema)
	f.Add("model: m\nsystem: \"{{.a}}\"\nmessages: [{role: user, content: \"{{range .a}}{{.}}{{end}}\"}]\nvars: {a: {default: [1, 2]}}\n")
	f.Add("model: m\nprompt: hi\nkeep_alive: 1e3\ntimeout: 0\noptions: {stop: [a]}\n")
	f.Add("model: m\nprompt: hi\nformat: {$defs: {a: {$ref: '#/$defs/a'}}, $ref: '#/$defs/a'}\n")
	f.Fuzz(func(t *testing.T, text string) {
		file, err := yamlconf.Parse("fn.yaml", []byte(text))
		if err != nil || file.Empty() {
			return
		}
		var def any
		if file.Decode("", &def) != nil {
			return
		}
		fn, errs := compile("fn", "fn.yaml", def, origin{file: file})
		if (fn == nil) == (len(errs) == 0) {
			t.Fatalf("compile returned %v and %d problems", fn, len(errs))
		}
		if fn == nil || strings.Contains(text, "range") {
			return // {{range 1e12}}{{end}} loops for as long as it says
		}
		if _, _, err := fn.Expand(json.RawMessage(`{}`)); err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Expand error %v is not an *InputError", err)
			}
		}
	})
}

// FuzzExpand feeds arbitrary vars to a function: every error must be bad
// input, and every body must be valid JSON.
func FuzzExpand(f *testing.F) {
	f.Add(`{"text": "x"}`)
	f.Add(`{"text": {"a": [1, null]}, "n": 1e400}`)
	f.Add(`[]`)
	f.Add(`{"text": "\ud800"}`)
	dir := f.TempDir()
	path := dir + "/fn.yaml"
	if err := writeFileF(path, "model: m\nprompt: \"{{.text}} {{upper .text}} {{json .n}} {{join \\\",\\\" .text}}\"\nvars: {text: {required: true}, n: {default: 2}}\n"); err != nil {
		f.Fatal(err)
	}
	set, err := Load(nil, dir)
	if err != nil {
		f.Fatal(err)
	}
	fn, _ := set.Get("fn")
	f.Fuzz(func(t *testing.T, vars string) {
		body, _, err := fn.Expand(json.RawMessage(vars))
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Expand(%q) error %v is not an *InputError", vars, err)
			}
			return
		}
		b, err := json.Marshal(body)
		if err != nil || !json.Valid(b) {
			t.Fatalf("Expand(%q) body is not JSON: %v", vars, err)
		}
	})
}
