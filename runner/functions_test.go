package runner_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/batchtest"
	"github.com/hopper-dev/hopper/internal/functionstest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// withLabel gives the runner the function "label" (functionstest.Label)
// of model m1, tried twice.
func withLabel(t *testing.T) func(*runner.Config) {
	reg := functionstest.Registry(t, map[string]string{"label": functionstest.Label("m1", 2)})
	return func(c *runner.Config) { c.Functions = reg }
}

// replyByPrompt answers with the text after "say:" in the last message, so a
// test scripts valid and invalid answers.
func replyByPrompt(req ollamatest.Request) string {
	var body struct {
		Messages []struct{ Content string } `json:"messages"`
	}
	json.Unmarshal(req.Body, &body)
	if n := len(body.Messages); n > 0 {
		if _, say, ok := strings.Cut(body.Messages[n-1].Content, "say:"); ok {
			return say
		}
	}
	return `{"label":"question"}`
}

func TestFunctionJobs(t *testing.T) {
	newFnHarness := func(t *testing.T) *harness {
		return newHarness(t, withLabel(t), ollamatest.WithReply(replyByPrompt))
	}
	t.Run("ASchemaValidAnswerIsParsedIntoOutput", func(t *testing.T) {
		h := newFnHarness(t)
		h.start()
		h.drop("ok", `{"function":"label","vars":{"text":"how do I say:{\"label\":\"question\"}"}}`)
		r := h.wait("ok")
		if r.State != spool.StateDone || string(r.Output) == "" {
			t.Fatalf("got %s, error %+v, output %s", r.State, r.Error, r.Output)
		}
		var out struct{ Label string }
		if err := json.Unmarshal(r.Output, &out); err != nil || out.Label != "question" {
			t.Errorf("got output %s", r.Output)
		}
		if r.Function != "label" || r.Model != "m1" || r.Endpoint != "chat" || len(r.Vars) == 0 || len(r.Request) == 0 {
			t.Errorf("record lacks the function's name, model, endpoint, vars or request: %+v", r)
		}
		var sent map[string]json.RawMessage
		for _, req := range h.fake.Requests() {
			if req.Path == "/api/chat" {
				json.Unmarshal(req.Body, &sent)
			}
		}
		if !strings.Contains(string(sent["format"]), `"enum"`) {
			t.Errorf("the schema was not sent as format: %s", sent["format"])
		}
	})
	t.Run("ASchemaInvalidAnswerCostsAnAttemptThenFails", func(t *testing.T) {
		h := newFnHarness(t)
		h.start()
		h.drop("bad", `{"function":"label","vars":{"text":"say:{\"label\":\"rant\"}"}}`)
		r := h.wait("bad")
		if r.State != spool.StateFailed || r.Attempts != 2 || !strings.Contains(r.Error.Message, "label") || len(r.Response) == 0 {
			t.Errorf("got %s after %d attempts, error %+v; want failed after 2 with the validation errors", r.State, r.Attempts, r.Error)
		}
	})
	t.Run("AMissingRequiredVarIsBadInputNamingIt", func(t *testing.T) {
		h := newFnHarness(t)
		h.start()
		if r := h.wantBadInput("novar", `{"function":"label","vars":{}}`, `"text"`); r.Attempts != 0 {
			t.Errorf("got %d attempts, want 0", r.Attempts)
		}
	})
	t.Run("AnUnknownFunctionIsBadInputNamingIt", func(t *testing.T) {
		h := newFnHarness(t)
		h.start()
		h.wantBadInput("nofn", `{"function":"summarise","vars":{"text":"x"}}`, `"summarise"`)
	})
}

// A batch of function calls: each line's answer carries the parsed output,
// as POST /functions/NAME answers; a line with bad vars fails on its own.
func TestFunctionBatch(t *testing.T) {
	h := newHarness(t, withLabel(t), ollamatest.WithReply(replyByPrompt))
	h.start()
	batchtest.Drop(t, h.s.Path(), "labels", `{"custom_id": "q", "function": "label", "vars": {"text": "how?"}}
{"custom_id": "b", "function": "label", "vars": {"text": "it broke say:{\"label\":\"bug\"}"}}
{"custom_id": "novar", "function": "label", "vars": {}}
`)
	b := h.waitBatch("labels")
	if b.State != batch.Completed || b.Done != 2 || b.Failed != 1 {
		t.Fatalf("batch: %+v", b)
	}
	out := batchtest.Read(t, h.path(b.Output))
	for i, want := range []string{"question", "bug"} {
		var body struct {
			ID     string
			Output struct{ Label string }
		}
		if err := json.Unmarshal(out[i].Response.Body, &body); err != nil || body.ID != b.LineID(i+1) || body.Output.Label != want {
			t.Errorf("line %d: body %s (%v), want output.label %q", i+1, out[i].Response.Body, err, want)
		}
	}
	var failed struct {
		Error struct{ Code, Message string }
	}
	if out[2].Response == nil || out[2].Response.StatusCode != 400 || json.Unmarshal(out[2].Response.Body, &failed) != nil ||
		failed.Error.Code != "bad_input" || !strings.Contains(failed.Error.Message, `needs var "text"`) {
		t.Errorf("line 3: got %+v, want 400 naming the missing var", out[2].Response)
	}
}
