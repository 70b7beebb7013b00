package cluster_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// labelFunction is a function whose answers must be one of three labels;
// the fake target below never gives one, so every attempt's answer is
// invalid.
const labelFunction = `model: tiny
system: 'Classify the message. Answer {"label": "..."}.'
prompt: "{{.text}}"
vars:
  text: {required: true}
format:
  type: object
  properties:
    label: {type: string, enum: [bug, feature, question]}
  required: [label]
max_attempts: 2
`

// TestInvalidAnswerIsRunAgain: a function job whose answer does not match
// its schema is tried again (max_attempts: 2) and then fails, as on one
// host: the target sees two requests. The second attempt must not take
// the first one's answer from the bucket (the origin judged it already).
func TestInvalidAnswerIsRunAgain(t *testing.T) {
	h := soloHost(t, ollamatest.WithReply(func(ollamatest.Request) string { return `{"label":"nope"}` }))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "label.yaml"), []byte(labelFunction), 0o640); err != nil {
		t.Fatal(err)
	}
	reg, err := functions.NewRegistry(nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.runRunner(t, func(c *runner.Config) { c.Functions = reg })
	h.runExecutor(t, "gpu")
	if _, err := h.spool.Submit([]byte(`{"function":"label","vars":{"text":"hello"}}`), spool.SubmitOptions{ID: "fn1"}); err != nil {
		t.Fatal(err)
	}
	if r := h.wait(t, "fn1"); r.State != spool.StateFailed || r.Attempts != 2 {
		t.Errorf("ended %s after %d attempts, want failed after 2", r.State, r.Attempts)
	}
	if got := h.fake.RequestsTo("/api/chat"); got != 2 {
		t.Errorf("the target served %d requests, want 2 (one per attempt)", got)
	}
}
