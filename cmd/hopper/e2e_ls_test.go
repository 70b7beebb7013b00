package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	// show says the same: how many run before it.
	if out := w.hopper("show", "low"); !strings.Contains(out, `"position": 2`) {
		t.Errorf("show low: want position 2:\n%s", out)
	}
	if out := w.hopper("show", "high"); !strings.Contains(out, `"position": 0`) {
		t.Errorf("show high: want position 0:\n%s", out)
	}
}

// TestTailOfAFinishedJob: --raw prints the answer object, plain tail the text.
func TestTailOfAFinishedJob(t *testing.T) {
	w := newWorld(t)
	w.serve()
	out := w.hopper("submit", "--wait", "--id", "fin", "-m", "m1", "-p", "hello there")
	if !strings.Contains(out, "fin") {
		t.Fatalf("submit: %s", out)
	}
	if got := w.hopper("tail", "--raw", "fin"); !strings.Contains(got, `"done":true`) {
		t.Errorf("tail --raw of a finished job printed %q, want its answer object", got)
	}
	if got := w.hopper("tail", "fin"); !strings.Contains(got, "reply from m1") {
		t.Errorf("tail of a finished job printed %q, want its answer", got)
	}
}

// TestNonRegularFilesInNewAreIgnoredNotQueued: a FIFO, a symlink or a
// directory named like a job is listed nowhere as queued, counted as
// ignored, and tail says it will never run instead of hanging.
func TestNonRegularFilesInNewAreIgnoredNotQueued(t *testing.T) {
	w := newWorld(t)
	newDir := filepath.Join(w.spool, "new")
	if err := syscall.Mkfifo(filepath.Join(newDir, "fifo.json"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(newDir, "link.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(newDir, "dir.json"), 0o750); err != nil {
		t.Fatal(err)
	}
	if out := w.hopper("ls", "queued"); strings.Contains(out, "fifo") || strings.Contains(out, "link") || strings.Contains(out, "dir") {
		t.Errorf("ls lists ignored files as queued:\n%s", out)
	}
	if out := w.hopper("status"); !strings.Contains(out, "ignored  3") || !strings.Contains(out, "queued 0") {
		t.Errorf("status:\n%s", out)
	}
	out, err := w.hopperErr("tail", "fifo")
	if err == nil || !strings.Contains(out, "never run") {
		t.Errorf("tail fifo: %v\n%s", err, out)
	}
}
