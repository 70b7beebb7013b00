package functions

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The example functions in configs/functions/ must load and expand.
const examplesDir = "../configs/functions"

func TestExamplesLoad(t *testing.T) {
	set, err := Load(nil, examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := set.Names(), []string{"classify", "extract", "summarize"}; !slices.Equal(got, want) {
		t.Errorf("examples = %v, want %v", got, want)
	}
	for _, name := range set.Names() {
		f, _ := set.Get(name)
		if f.Description == "" {
			t.Errorf("%s has no description", name)
		}
		if f.Source != filepath.Join(examplesDir, name+".yaml") {
			t.Errorf("%s.Source = %q", name, f.Source)
		}
	}
}

func example(t *testing.T, name string) *Function {
	t.Helper()
	set, err := Load(nil, examplesDir)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := set.Get(name)
	if !ok {
		t.Fatalf("no example %q", name)
	}
	return f
}

func TestExampleSummarize(t *testing.T) {
	f := example(t, "summarize")
	if f.HasSchema() || f.Endpoint != "generate" {
		t.Errorf("schema %v, endpoint %q; want none, generate", f.HasSchema(), f.Endpoint)
	}
	for _, c := range []struct{ vars, want string }{
		{`{"text": "The report."}`, "in one paragraph"},
		{`{"text": "The report.", "length": "short"}`, "in one or two sentences"},
		{`{"text": "The report.", "length": "bullets"}`, "as three to five bullet points"},
	} {
		body, _, err := f.Expand(json.RawMessage(c.vars))
		if err != nil {
			t.Fatal(err)
		}
		p := field[string](t, body, "prompt")
		if !strings.Contains(p, c.want) || !strings.Contains(p, "The report.") {
			t.Errorf("Expand(%s) prompt = %q, want it to say %q and hold the text", c.vars, p, c.want)
		}
	}
	_, _, err := f.Expand(nil)
	if got, want := asInputError(t, err).Error(), `function "summarize" needs var "text" (the text to summarize)`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestExampleExtract(t *testing.T) {
	f := example(t, "extract")
	body, endpoint, err := f.Expand(json.RawMessage(`{"text": "Best, Ada Lovelace — ada@analytical.example"}`))
	if err != nil {
		t.Fatal(err)
	}
	msgs := field[[]message](t, body, "messages")
	if endpoint != "chat" || len(msgs) != 2 || msgs[0].Role != "system" || !strings.Contains(msgs[1].Content, "ada@analytical.example") {
		t.Errorf("endpoint %q, messages %v", endpoint, msgs)
	}
	if !strings.HasPrefix(string(body["format"]), `{"type":"object","properties":{"name":`) {
		t.Errorf("format = %s, want the schema in the order written", body["format"])
	}
	out, err := f.Check(`{"name": "Ada Lovelace", "email": "ada@analytical.example", "company": null}`)
	if err != nil || string(out) != `{"name":"Ada Lovelace","email":"ada@analytical.example","company":null}` {
		t.Errorf("Check(valid) = %s, %v", out, err)
	}
	if _, err := f.Check(`{"name": "Ada", "email": "ada at analytical", "company": null}`); err == nil || !strings.Contains(err.Error(), "/email") {
		t.Errorf("Check(bad email) = %v, want an error at /email", err)
	}
	if _, err := f.Check(`{"name": "Ada"}`); err == nil || !strings.Contains(err.Error(), "missing properties 'email', 'company'") {
		t.Errorf("Check(missing fields) = %v", err)
	}
}

func TestExampleClassify(t *testing.T) {
	f := example(t, "classify")
	if f.Priority != 10 || f.KeepAlive != "10m" {
		t.Errorf("priority %d, keep_alive %q", f.Priority, f.KeepAlive)
	}
	body, endpoint, err := f.Expand(json.RawMessage(`{"text": "It crashes on start.", "title": "Crash"}`))
	if err != nil {
		t.Fatal(err)
	}
	msgs := field[[]message](t, body, "messages")
	last := msgs[len(msgs)-1]
	if endpoint != "chat" || len(msgs) != 4 || last.Role != "user" || last.Content != "Title: Crash\nIt crashes on start.\n" {
		t.Errorf("endpoint %q, messages %q", endpoint, msgs)
	}
	body, _, err = f.Expand(json.RawMessage(`{"text": "How do I change the port?"}`))
	if err != nil {
		t.Fatal(err)
	}
	if msgs := field[[]message](t, body, "messages"); msgs[3].Content != "How do I change the port?\n" {
		t.Errorf("without a title the message is %q", msgs[3].Content)
	}
	for _, label := range []string{"bug", "feature", "question"} {
		if _, err := f.Check(`{"label": "` + label + `"}`); err != nil {
			t.Errorf("Check(%s): %v", label, err)
		}
	}
	if _, err := f.Check(`{"label": "chore"}`); err == nil || !strings.Contains(err.Error(), "value must be one of 'bug', 'feature', 'question'") {
		t.Errorf("Check(chore) = %v", err)
	}
}
