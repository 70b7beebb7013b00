package main

import (
	"strings"
	"testing"
)

// TestLsListsQueuedJobsInRunOrder: priority first, then arrival, with
// positions; --limit cuts the list.
func TestLsListsQueuedJobsInRunOrder(t *testing.T) {
	w := newWorld(t)
	for _, j := range []struct{ id, prio string }{{"low", "0"}, {"high", "10"}, {"mid", "5"}} {
		w.hopper("submit", "--id", j.id, "--priority", j.prio, "-m", "m1", "-p", "x")
	}
	out := w.hopper("ls", "queued")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "POS") || !strings.Contains(lines[0], "PRIO") {
		t.Fatalf("ls:\n%s", out)
	}
	for i, want := range []struct{ id, pos, prio string }{{"high", "1", "10"}, {"mid", "2", "5"}, {"low", "3", "0"}} {
		f := strings.Fields(lines[i+1])
		if f[0] != want.id || f[2] != want.pos || f[3] != want.prio {
			t.Errorf("row %d: %q, want %s at position %s with priority %s", i+1, lines[i+1], want.id, want.pos, want.prio)
		}
	}
	if got := strings.Count(strings.TrimSpace(w.hopper("ls", "queued", "--limit", "1")), "\n"); got != 1 {
		t.Errorf("--limit 1 listed %d jobs", got)
	}
}
