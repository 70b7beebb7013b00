package cluster_test

import (
	"testing"

	"github.com/hopper-dev/hopper/spool"
)

// TestDottedJobIDBreaksNoOtherJob: "report." is a valid job ID; in the
// bucket's keys it must neither be an invalid key (which took the cluster
// lane down again and again, aborting every other job) nor meet the keys
// of another job.
func TestDottedJobIDBreaksNoOtherJob(t *testing.T) {
	h := soloHost(t, slowAnswers...)
	h.run(t)
	h.submit(t, "long", "long one")
	h.serving(t, "the long job to start")
	h.submit(t, "report.", "dotted")
	h.submit(t, "report.r0", "a job whose ID looks like the other's key")
	if r := h.wait(t, "long"); r.State != spool.StateDone || h.fake.RequestsTo("/api/generate") > 3 {
		t.Errorf("long: %s after %d attempts; the target served %d requests", r.State, r.Attempts, h.fake.RequestsTo("/api/generate"))
	}
	for _, id := range []string{"report.", "report.r0"} {
		if r := h.wait(t, id); r.State != spool.StateDone || r.Attempts != 1 {
			t.Errorf("%s: %s after %d attempts", id, r.State, r.Attempts)
		}
	}
}
