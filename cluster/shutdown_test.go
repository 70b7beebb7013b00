package cluster_test

import (
	"testing"

	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// TestStoppedExecutorChargesNoAttempt: a host whose executor stops
// gracefully while it runs a job lets the job finish (or hands it back);
// either way the job is done after one attempt: a stop is not the job's
// fault, and handing a job back charges nothing.
func TestStoppedExecutorChargesNoAttempt(t *testing.T) {
	h := soloHost(t, slowAnswers...)
	h.runRunner(t, func(c *runner.Config) { c.MaxAttempts = 3 })
	stopFirst := h.runExecutor(t, "first")
	h.submit(t, "j1", "long one")
	h.serving(t, "the job to start")
	stopFirst()
	h.runExecutor(t, "second")
	if r := h.wait(t, "j1"); r.State != spool.StateDone || r.Attempts != 1 {
		t.Errorf("ended %s on %q after %d attempts, want done after 1; the target served %d requests",
			r.State, r.Target, r.Attempts, h.fake.RequestsTo("/api/generate"))
	}
}
