package cluster_test

import (
	"testing"

	"github.com/hopper-dev/hopper/internal/functionstest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// TestInvalidAnswerIsRunAgain: a function job whose answer does not match
// its schema is tried again (max_attempts: 2) and then fails, as on one
// host: the target sees two requests. The second attempt must not take
// the first one's answer from the bucket (the origin judged it already).
func TestInvalidAnswerIsRunAgain(t *testing.T) {
	h := soloHost(t, ollamatest.WithReply(func(ollamatest.Request) string { return `{"label":"nope"}` }))
	// The answers must be one of three labels; the fake target never gives
	// one, so every attempt's answer is invalid.
	reg := functionstest.Registry(t, map[string]string{"label": functionstest.Label("tiny", 2)})
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
