package functions

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes a function file into dir, atomically, as an editor that
// saves by rename would.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeFileF(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }

// loadOne loads a single function from YAML text written to a file.
func loadOne(t *testing.T, yaml string) *Function {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "fn.yaml", yaml)
	set, err := Load(nil, dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	f, ok := set.Get("fn")
	if !ok {
		t.Fatal("fn not loaded")
	}
	return f
}

// loadErrors loads from dir and returns each problem's message.
func loadErrors(t *testing.T, config map[string]any, dir string) []string {
	t.Helper()
	set, err := Load(config, dir)
	if err == nil {
		t.Fatalf("Load succeeded with %v, want errors", set.Names())
	}
	if set != nil {
		t.Error("Load returned a set with its error")
	}
	var msgs []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			msgs = append(msgs, e.Error())
		}
	} else {
		msgs = append(msgs, err.Error())
	}
	return msgs
}

// wantProblem fails unless some message contains every one of parts.
func wantProblem(t *testing.T, msgs []string, parts ...string) {
	t.Helper()
	for _, m := range msgs {
		ok := true
		for _, p := range parts {
			if !strings.Contains(m, p) {
				ok = false
				break
			}
		}
		if ok {
			return
		}
	}
	t.Errorf("no problem mentions all of %q; got:\n  %s", parts, strings.Join(msgs, "\n  "))
}

// field decodes one field of an expanded body.
func field[T any](t *testing.T, body map[string]json.RawMessage, key string) T {
	t.Helper()
	var v T
	raw, ok := body[key]
	if !ok {
		t.Fatalf("body has no %q: %v", key, body)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("body %q = %s: %v", key, raw, err)
	}
	return v
}

func asInputError(t *testing.T, err error) *InputError {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v (%T) is not an *InputError", err, err)
	}
	return ie
}
