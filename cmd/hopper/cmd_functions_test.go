package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/hopper-dev/hopper/functions"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// functionsApp returns an app with the functions commands, a spool, and a
// config defining one function in the config and the rest in fnDir.
func functionsApp(t *testing.T, files map[string]string) (run func(stdin string, args ...string) (int, string, string), spoolDir string) {
	t.Helper()
	dir := t.TempDir()
	spoolDir = filepath.Join(dir, "spool")
	if _, err := spool.Init(spoolDir, spool.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	fnDir := filepath.Join(dir, "functions")
	if err := os.Mkdir(fnDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(fnDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "hopper.yaml")
	cfg := "spool: " + spoolDir + "\nhttp: off\nfunctions_dir: " + fnDir + `
functions:
  shout:
    model: m2
    prompt: "{{.text}}!"
    vars: {text: {required: true, description: what to shout}}
    priority: 5
`
	if err := os.WriteFile(config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	run = func(stdin string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		a := newApp(&stdout, &stderr, []string{"HOPPER_CONFIG=" + config})
		has := map[string]bool{}
		for _, c := range a.root.Commands() {
			has[c.Name()] = true
		}
		if !has["functions"] {
			a.root.AddCommand(newFunctionsCmd(a), newInvokeCmd(a))
		}
		a.root.SetIn(strings.NewReader(stdin))
		code := execute(context.Background(), a, args)
		return code, stdout.String(), stderr.String()
	}
	return run, spoolDir
}

const summarizeYAML = `description: sum it up
model: m1
prompt: "Summarize in {{.length}}: {{.text}}"
vars:
  text: {required: true, description: the text to summarize}
  length: {default: one sentence}
format:
  type: object
  properties: {summary: {type: string}}
`

func TestFunctionsListsThem(t *testing.T) {
	run, _ := functionsApp(t, map[string]string{"summarize.yaml": summarizeYAML})
	code, out, errOut := run("", "functions")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("output:\n%s", out)
	}
	for _, want := range [][]string{
		{"NAME", "MODEL", "ENDPOINT", "VARS", "SCHEMA", "SOURCE"},
		{"shout", "m2", "generate", "text*", "no", "config"},
		{"summarize", "m1", "generate", "length,", "text*", "yes", "summarize.yaml"},
	} {
		found := false
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) >= len(want) && f[0] == want[0] {
				found = strings.Join(f[:len(want)-1], " ") == strings.Join(want[:len(want)-1], " ") && strings.HasSuffix(f[len(f)-1], want[len(want)-1])
			}
		}
		if !found {
			t.Errorf("no line %q in:\n%s", want, out)
		}
	}

	code, out, errOut = run("", "functions", "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d: %s", code, errOut)
	}
	var infos []functions.Info
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if len(infos) != 2 || infos[1].Name != "summarize" || !infos[1].Schema || !infos[1].Vars["text"].Required || infos[1].Vars["length"].Default != "one sentence" {
		t.Errorf("--json = %+v", infos)
	}
}

func TestFunctionsValidate(t *testing.T) {
	run, _ := functionsApp(t, map[string]string{"summarize.yaml": summarizeYAML})
	code, out, errOut := run("", "functions", "validate")
	if code != 0 || out != "ok: 2 functions: shout, summarize\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	run, _ = functionsApp(t, map[string]string{"a.yaml": "model: m\nprmpt: hi\n", "b.yaml": "prompt: hi\n"})
	code, out, errOut = run("", "functions", "validate")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"hopper: the functions have 3 problems:", `a.yaml:2: prmpt: unknown key (did you mean "prompt"?)`, "a.yaml: prompt: a function needs a prompt or messages", "b.yaml: model: is required"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	if out != "" {
		t.Errorf("stdout = %q", out)
	}
}

func TestInvokeQueuesAFunctionJob(t *testing.T) {
	run, spoolDir := functionsApp(t, map[string]string{"summarize.yaml": summarizeYAML})
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte("a long report"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("", "invoke", "summarize", "--var", "text=@"+text, "--var", "length=a, b", "--priority", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	data, err := os.ReadFile(filepath.Join(spoolDir, "new", id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var job map[string]any
	if err := json.Unmarshal(data, &job); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"function": "summarize", "vars": map[string]any{"text": "a long report", "length": "a, b"}, "priority": 3.0}
	if got, _ := json.Marshal(job); string(got) != mustJSON(t, want) {
		t.Errorf("job = %s, want %s", got, mustJSON(t, want))
	}

	code, out, _ = run("hi", "invoke", "shout", "--var", "text=@-")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	data, _ = os.ReadFile(filepath.Join(spoolDir, "new", strings.TrimSpace(out)+".json"))
	if want := `{"function":"shout","priority":5,"vars":{"text":"hi"}}`; string(data) != want {
		t.Errorf("job = %s, want %s (the function's priority)", data, want)
	}
}

func TestInvokeRefusesBadInputAndWritesNothing(t *testing.T) {
	run, spoolDir := functionsApp(t, map[string]string{"summarize.yaml": summarizeYAML})
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"invoke", "summarize"}, 1, `job refused, nothing was queued: function "summarize" needs var "text" (the text to summarize)`},
		{[]string{"invoke", "summarize", "--var", "text=x", "--var", "tone=dry"}, 1, `function "summarize" has no var "tone" (it takes "length", "text")`},
		{[]string{"invoke", "sumarize", "--var", "text=x"}, 1, `unknown function "sumarize": no function of that name is defined (defined: shout, summarize)`},
		{[]string{"invoke", "summarize", "--var", "text"}, 2, `--var "text": want name=value`},
		{[]string{"invoke", "summarize", "--var", "text=@/nonexistent/file"}, 1, "no such file"},
		{[]string{"invoke"}, 2, "accepts 1 arg"},
	} {
		code, out, errOut := run("", c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d saying %q", c.args, code, out, errOut, c.code, c.want)
		}
	}
	if jobs, err := os.ReadDir(filepath.Join(spoolDir, "new")); err != nil || len(jobs) != 0 {
		t.Errorf("refused invocations wrote %v (%v)", jobs, err)
	}
}

func TestInvokeWaitPrintsTheOutput(t *testing.T) {
	run, spoolDir := functionsApp(t, map[string]string{"summarize.yaml": summarizeYAML})
	s, err := spool.Open(spoolDir, spool.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := spool.NewQueue(nil)
	w, err := s.NewWatcher(q, spool.WatchOptions{Settle: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	watched, finished := make(chan struct{}), make(chan struct{})
	defer func() { cancel(); <-watched; <-finished }()
	go func() { defer close(watched); w.Run(ctx) }()
	// A stand-in runner: finish the job with a schema-checked output.
	go func() {
		defer close(finished)
		for {
			select {
			case <-ctx.Done():
				return
			case <-q.Changed():
			}
			p, ok := q.TopPriority()
			if !ok {
				continue
			}
			e, _ := q.Oldest(p)
			c, err := s.Claim(e)
			if err != nil {
				continue
			}
			now := time.Now()
			c.Record.State, c.Record.FinishedAt = spool.StateDone, &now
			c.Record.Response = json.RawMessage(`{"model":"m1","response":"{\"summary\": \"short\"}","done":true}`)
			c.Record.Output = json.RawMessage(`{"summary":"short"}`)
			if err := s.Finish(c.Record); err != nil {
				t.Error(err)
			}
			return
		}
	}()
	code, out, errOut := run("", "invoke", "summarize", "--var", "text=x", "--wait", "--id", "w1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	id, answer, _ := strings.Cut(out, "\n")
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(answer)); err != nil || id != "w1" || compact.String() != `{"summary":"short"}` {
		t.Errorf("stdout = %q, want the ID, then the output {\"summary\":\"short\"}", out)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
