package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

// lanesWorld is a world whose hopper drives several fake targets, named in
// a hopper.yaml, each with `slots` slots and one model loaded at a time.
func lanesWorld(t *testing.T, names []string, slots int, models []string, opts ...ollamatest.Option) (*world, map[string]*ollamatest.Server) {
	t.Helper()
	w := newWorld(t)
	fakes := map[string]*ollamatest.Server{}
	var conf strings.Builder
	conf.WriteString("targets:\n")
	for _, n := range names {
		f := ollamatest.NewServer(t, append([]ollamatest.Option{ollamatest.WithModels(models...), ollamatest.WithMaxLoaded(1),
			ollamatest.WithParallel(slots)}, opts...)...)
		fakes[n] = f
		fmt.Fprintf(&conf, "  - {name: %s, url: %q, parallel: %d}\n", n, f.URL, slots)
	}
	w.config(conf.String())
	return w, fakes
}

// TestThreeTargetsTwoSlotsEach: 180 jobs interleaved over 6 models on three
// targets of two slots, one model loaded at a time: every job runs once,
// no target ever has two models in flight or more requests than its slots,
// at most 9 loads; a target killed mid-run costs no failed job.
func TestThreeTargetsTwoSlotsEach(t *testing.T) {
	models := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
	w, fakes := lanesWorld(t, []string{"gpu1", "gpu2", "gpu3"}, 2, models,
		ollamatest.WithTokenDelay(10*time.Millisecond), ollamatest.WithLoadDelay(20*time.Millisecond))
	w.hopper("pause")
	srv := w.serve()
	const n = 180
	for i := range n {
		w.drop(fmt.Sprintf("job%04d", i), chatJob(models[i%len(models)], fmt.Sprintf("question %d with some words", i)))
	}
	w.hopper("resume")
	waitFor(t, "gpu2 to be busy", func() bool { return fakes["gpu2"].InFlight() > 0 })
	fakes["gpu2"].Stop() // as if that Ollama were killed mid-request
	waitFor(t, "every job", func() bool { return w.count("done")+w.count("failed") == n })
	if got := w.count("failed"); got != 0 {
		t.Errorf("%d jobs failed, want none", got)
	}
	targets := map[string]int{}
	for i := range n {
		r := w.record("done", fmt.Sprintf("job%04d", i))
		targets[r.Target]++
		if r.Attempts != 1 {
			t.Errorf("%s ran %d attempts, want 1", r.ID, r.Attempts)
		}
	}
	if loads := ollamatest.CheckSlots(t, fakes, 2); loads > 9 {
		t.Errorf("%d loads, want at most 9", loads)
	}
	// gpu2's jobs in flight when it was stopped ran elsewhere: its records
	// may name another target, but it served requests before.
	if len(targets) < 2 || len(fakes["gpu2"].Requests()) == 0 {
		t.Errorf("jobs ran on %v (gpu2 got %d requests), want the work spread over the targets", targets, len(fakes["gpu2"].Requests()))
	}

	// The serve publishes its targets' state at most once a second.
	var st status
	waitFor(t, "status to count every job", func() bool {
		st = w.status()
		done := 0
		for _, ts := range st.Targets {
			done += ts.Done
		}
		return done == n
	})
	if st.Source != "serve" || len(st.Targets) != 3 {
		t.Fatalf("status: source %q, %d targets; want the serve's three", st.Source, len(st.Targets))
	}
	for _, ts := range st.Targets {
		if ts.Name == "gpu2" && ts.Up {
			t.Errorf("status says gpu2 is up after it was stopped")
		}
		if ts.Slots != 2 {
			t.Errorf("%s: %d slots, want 2", ts.Name, ts.Slots)
		}
	}
	text := w.hopper("status")
	for _, want := range []string{"gpu1", "gpu2", "gpu3", "DOWN", "slots 0/2"} {
		if !strings.Contains(text, want) {
			t.Errorf("hopper status does not say %q:\n%s", want, text)
		}
	}
	fakes["gpu2"].Start()
	waitFor(t, "gpu2 to rejoin", func() bool {
		st := w.status()
		return len(st.Targets) == 3 && st.Targets[1].Up
	})
	srv.stop(t, syscall.SIGTERM)
	if !strings.Contains(srv.log.String(), "gpu2") {
		t.Errorf("the log does not name the target that went down:\n%s", srv.log.String())
	}
}

// TestStatusAsksTheRunningServe: status reports the target the running
// serve uses (given by --ollama), not its own configuration's.
func TestStatusAsksTheRunningServe(t *testing.T) {
	w := newWorld(t)
	other := ollamatest.NewServer(t, ollamatest.WithModels("m1"))
	w.serve("--ollama", other.URL)
	waitFor(t, "the serve to publish its targets", func() bool { return fileExists(filepath.Join(w.spool, ".hopper", "targets.json")) })
	st := w.status()
	if st.Source != "serve" || st.Targets[0].URL != other.URL || !st.Targets[0].Up {
		t.Errorf("status: %+v; want the serve's target %s, up", st.Targets, other.URL)
	}
	if st.Target.URL != other.URL {
		t.Errorf("status .target.url %q, want %q", st.Target.URL, other.URL)
	}
}

// TestASecondServeRefusesBeforeItListens: the lock comes before the port and
// the banner.
func TestASecondServeRefusesBeforeItListens(t *testing.T) {
	w := newWorld(t)
	w.serve()
	waitFor(t, "the first serve to hold the lock", func() bool {
		data, _ := os.ReadFile(filepath.Join(w.spool, ".hopper", "runner.lock"))
		return strings.Contains(string(data), "pid")
	})
	w.env = append(w.env, "HOPPER_HTTP=127.0.0.1:0")
	out, err := w.hopperErr("serve")
	if err == nil {
		t.Fatal("a second serve on the same spool started")
	}
	if !strings.Contains(out, "already served") || strings.Contains(out, "paused") || strings.Contains(out, "spool   ") {
		t.Errorf("the second serve said:\n%s\nwant only the refusal, no banner", out)
	}
}
