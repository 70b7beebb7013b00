package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

func TestLanes(t *testing.T) {
	t.Run("ThreeTargetsRunEveryJobOnceWithoutSwappingUnderRunningRequests", func(t *testing.T) {
		models := []string{"m1", "m2", "m3", "m4", "m5", "m6"}
		lh := newLanes(t, []string{"a", "b", "c"}, 2, nil, func(string) []ollamatest.Option {
			return []ollamatest.Option{ollamatest.WithModels(models...), ollamatest.WithMaxLoaded(1),
				ollamatest.WithParallel(2), ollamatest.WithTokenDelay(time.Millisecond)}
		})
		var ids []string
		for i := range 90 {
			id := fmt.Sprintf("j%03d", i)
			lh.drop(id, chat(models[i%len(models)], id))
			ids = append(ids, id)
		}
		lh.start()
		used := map[string]int{}
		for _, id := range ids {
			r := lh.wait(id)
			if r.State != spool.StateDone || r.Attempts != 1 {
				t.Fatalf("%s: got %s after %d attempts, want done after 1", id, r.State, r.Attempts)
			}
			used[r.Target]++
			if r.ModelDigest == "" {
				t.Errorf("%s: the record names no model digest", id)
			}
		}
		if loads := ollamatest.CheckSlots(t, lh.fakes, 2); loads > 9 {
			t.Errorf("%d model loads over 3 targets for 6 models, want at most 9", loads)
		}
		if len(used) < 2 {
			t.Errorf("jobs ran on %v: want the work spread over the targets", used)
		}
		done, _ := lh.s.List(spool.StateDone)
		if len(done) != len(ids) {
			t.Errorf("%d records in done/, want %d", len(done), len(ids))
		}
	})

	t.Run("ALaneFillsEverySlotWithOneModel", func(t *testing.T) {
		lh := newLanes(t, []string{"gpu"}, 4, nil, func(string) []ollamatest.Option {
			return []ollamatest.Option{ollamatest.WithModels("m1"), ollamatest.WithParallel(4), ollamatest.WithTokenDelay(5 * time.Millisecond)}
		})
		for i := range 8 {
			lh.drop(fmt.Sprintf("j%d", i), chat("m1", "x"))
		}
		lh.start()
		for i := range 8 {
			lh.wait(fmt.Sprintf("j%d", i))
		}
		if got := lh.fakes["gpu"].MaxServing(); got != 4 {
			t.Errorf("at most %d requests were served at once, want all 4 slots used", got)
		}
	})

	t.Run("TwoNumCtxValuesAreTwoLoadKeysAndDrainSeparately", func(t *testing.T) {
		lh := newLanes(t, []string{"gpu"}, 2, nil, func(string) []ollamatest.Option {
			return []ollamatest.Option{ollamatest.WithModels("m1"), ollamatest.WithParallel(2)}
		})
		for i := range 10 {
			opts := ""
			if i%2 == 1 {
				opts = `,"options":{"num_ctx":8192}`
			}
			lh.drop(fmt.Sprintf("j%d", i), fmt.Sprintf(`{"model":"m1","prompt":"x"%s}`, opts))
		}
		lh.start()
		for i := range 10 {
			if r := lh.wait(fmt.Sprintf("j%d", i)); r.State != spool.StateDone {
				t.Fatalf("j%d: %s %+v", i, r.State, r.Error)
			}
		}
		f := lh.fakes["gpu"]
		if got := f.Loads(); got != 2 {
			t.Errorf("%d loads, want 2: one per num_ctx", got)
		}
		if got := f.MaxModelsInFlight(); got != 1 {
			t.Errorf("%d load keys in flight at once, want 1", got)
		}
	})

	t.Run("ATargetThatGoesDownStopsOnlyItsLaneAndChargesNoAttempt", func(t *testing.T) {
		events := &transitions{}
		lh := newLanes(t, []string{"a", "b"}, 2, func(c *runner.Config) { c.Hooks = events }, func(string) []ollamatest.Option {
			return []ollamatest.Option{ollamatest.WithModels("m1"), ollamatest.WithParallel(2), ollamatest.WithTokenDelay(20 * time.Millisecond)}
		})
		var ids []string
		for i := range 12 {
			id := fmt.Sprintf("j%02d", i)
			lh.drop(id, chat("m1", strings.Repeat("word ", 5)))
			ids = append(ids, id)
		}
		lh.start()
		a := lh.fakes["a"]
		eventually(t, "target a to serve a request", func() bool { return a.InFlight() > 0 })
		a.Stop()
		eventually(t, "lane a to be reported down", func() bool {
			pub, err := lh.s.ReadTargets()
			return err == nil && !pub.Targets[0].Up
		})
		requeued := 0
		for _, id := range ids {
			r := lh.wait(id)
			if r.State != spool.StateDone || r.Attempts != 1 {
				t.Errorf("%s: got %s after %d attempts on %s, want done after 1", id, r.State, r.Attempts, r.Target)
			}
			// A job sent back in line says so once (queued after
			// working), not again when a lane takes it up anew.
			for _, ev := range events.chain(t, id) {
				if ev[1] == spool.StateQueued && ev[0] != "" {
					requeued++
				}
			}
		}
		if requeued == 0 {
			t.Error("no job went back in line when its target stopped")
		}
		a.Start()
		eventually(t, "lane a to rejoin", func() bool {
			pub, err := lh.s.ReadTargets()
			return err == nil && pub.Targets[0].Up
		})
	})

	t.Run("AModelOneTargetLacksRunsOnATargetThatHasIt", func(t *testing.T) {
		lh := newLanes(t, []string{"a", "b"}, 1, func(c *runner.Config) {
			for i := range c.Targets {
				c.Targets[i].Target = untagged{c.Targets[i].Target}
			}
		}, func(name string) []ollamatest.Option {
			if name == "a" {
				return []ollamatest.Option{ollamatest.WithModels("only-a")}
			}
			return []ollamatest.Option{ollamatest.WithModels("only-b")}
		})
		lh.drop("x", chat("only-b", "hi"))
		lh.start()
		r := lh.wait("x")
		if r.State != spool.StateDone || r.Target != "b" || r.Attempts != 1 {
			t.Errorf("got %s on %q after %d attempts (%+v), want done on b after 1", r.State, r.Target, r.Attempts, r.Error)
		}
		lh.drop("nope", chat("nope", "hi"))
		r = lh.wait("nope")
		if r.State != spool.StateFailed || r.Error.Status != 404 || r.Error.Message != "model 'nope' not found" {
			t.Errorf("got %s %+v, want failed with Ollama's 404 once no target has it", r.State, r.Error)
		}
	})

	t.Run("StatusIsPublishedForEachTarget", func(t *testing.T) {
		lh := newLanes(t, []string{"a", "b"}, 3, nil, func(string) []ollamatest.Option {
			return []ollamatest.Option{ollamatest.WithModels("m1"), ollamatest.WithParallel(3)}
		})
		lh.drop("x", chat("m1", "hi"))
		lh.start()
		r := lh.wait("x")
		var pub *spool.Targets
		eventually(t, "the done job in the published status", func() bool {
			var err error
			pub, err = lh.s.ReadTargets()
			return err == nil && pub.Targets[0].Done+pub.Targets[1].Done == 1
		})
		names := []string{pub.Targets[0].Name, pub.Targets[1].Name}
		if !slices.Equal(names, []string{"a", "b"}) {
			t.Errorf("targets %v, want [a b] in configuration order", names)
		}
		for _, ts := range pub.Targets {
			if !ts.Up || ts.Slots != 3 {
				t.Errorf("%s: up %v slots %d, want up with 3 slots", ts.Name, ts.Up, ts.Slots)
			}
			if ts.Name == r.Target && (ts.Loads != 1 || !slices.Contains(ts.Resident, "m1:latest")) {
				t.Errorf("%s ran the job: loads %d resident %v, want 1 load and m1 resident", ts.Name, ts.Loads, ts.Resident)
			}
		}
		data, _ := json.Marshal(pub)
		t.Logf("published: %s", data)
	})
}

// TestLanesShutdownLetsEveryRunningJobFinish: SIGTERM's grace covers the
// jobs of every lane.
func TestLanesShutdownLetsEveryRunningJobFinish(t *testing.T) {
	lh := newLanes(t, []string{"a", "b"}, 2, func(c *runner.Config) { c.ShutdownGrace = 30 * time.Second }, func(string) []ollamatest.Option {
		return []ollamatest.Option{ollamatest.WithModels("m1"), ollamatest.WithParallel(2), ollamatest.WithTokenDelay(10 * time.Millisecond)}
	})
	// Ten jobs: a deep enough backlog that the second lane helps.
	for i := range 10 {
		lh.drop(fmt.Sprintf("j%d", i), chat("m1", strings.Repeat("w ", 10)))
	}
	lh.start()
	eventually(t, "four requests in flight", func() bool {
		return lh.fakes["a"].InFlight()+lh.fakes["b"].InFlight() == 4
	})
	lh.shutdown()
	done, err := lh.s.List(spool.StateDone)
	if err != nil {
		t.Fatal(err)
	}
	running, _ := lh.s.List(spool.StateWorking)
	if len(done) < 4 || len(running) != 0 {
		t.Errorf("%d done and %d still running after shutdown, want the 4 running ones done within the grace", len(done), len(running))
	}
	for _, r := range done {
		if r.Attempts != 1 {
			t.Errorf("%s: %d attempts", r.ID, r.Attempts)
		}
	}
}

// transitions records the events the runner emits, as (previous, state)
// pairs by job.
type transitions struct {
	mu  sync.Mutex
	job map[string][][2]spool.State
}

func (tr *transitions) EmitJob(rec *spool.Record, previous spool.State, _ *spool.Job) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.job == nil {
		tr.job = map[string][][2]spool.State{}
	}
	tr.job[rec.ID] = append(tr.job[rec.ID], [2]spool.State{previous, rec.State})
	return nil
}

// chain checks that id's events are one chain of state changes: the first
// says no previous state, each other names the state of the one before
// and differs from it. It returns the events.
func (tr *transitions) chain(t *testing.T, id string) [][2]spool.State {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	evs := tr.job[id]
	for i, ev := range evs {
		want := spool.State("")
		if i > 0 {
			want = evs[i-1][1]
		}
		if ev[0] != want || ev[0] == ev[1] {
			t.Errorf("%s: event %d is %s after %q, want a change from %q; all: %v", id, i+1, ev[1], ev[0], want, evs)
		}
	}
	return evs
}

// flakyRelay is a Relay over a fake Ollama whose cluster loses its quorum
// for a moment: the first attempt of job "b" finds it gone (and Version
// fails until release), while job "a", handed on before, waits for its
// answer until release.
type flakyRelay struct {
	runner.Target
	down    atomic.Bool
	started chan string   // job a was handed on
	release chan struct{} // closed: the quorum is back, a's answer comes
	mu      sync.Mutex
	calls   map[string]int
}

var errNoQuorum = &ollama.UnavailableError{Err: errors.New("no quorum")}

func (f *flakyRelay) Version(ctx context.Context) (string, error) {
	select {
	case <-f.release: // the quorum is back
	default:
		if f.down.Load() {
			return "", errNoQuorum
		}
	}
	return f.Target.Version(ctx)
}

func (f *flakyRelay) Relay(ctx context.Context, req runner.RelayRequest, onStart func(runner.Where), _ func([]byte) error) (runner.RelayResult, error) {
	f.mu.Lock()
	f.calls[req.ID]++
	first := f.calls[req.ID] == 1
	f.mu.Unlock()
	if req.ID == "b" && first {
		f.down.Store(true)
		return runner.RelayResult{}, errNoQuorum
	}
	where := runner.Where{Node: "elsewhere", Target: "gpu"}
	onStart(where)
	if req.ID == "a" {
		f.started <- req.ID
		select {
		case <-f.release:
		case <-ctx.Done():
			return runner.RelayResult{}, ctx.Err()
		}
	}
	return runner.RelayResult{Response: json.RawMessage(`{"model":"m1","message":{"role":"assistant","content":"hi"},"done":true}`), Where: where}, nil
}

// TestRelayLaneKeepsItsJobsThroughAnOutage: a cluster that loses its
// quorum stops its lane from handing on more, but the jobs it holds are
// not taken back and handed on again (each would run twice): they wait for
// their answers.
func TestRelayLaneKeepsItsJobsThroughAnOutage(t *testing.T) {
	relay := &flakyRelay{started: make(chan string, 1), release: make(chan struct{}), calls: map[string]int{}}
	lh := newLanes(t, []string{"cluster"}, 4, func(c *runner.Config) {
		relay.Target = c.Targets[0].Target
		c.Targets[0].Target = relay
	}, func(string) []ollamatest.Option { return []ollamatest.Option{ollamatest.WithModels("m1")} })
	lh.drop("a", chat("m1", "first"))
	lh.start()
	runtest.Receive(t, (<-chan string)(relay.started), 30*time.Second, "job a to be handed on")
	lh.drop("b", chat("m1", "second"))
	eventually(t, "the lane to be reported down", func() bool {
		pub, err := lh.s.ReadTargets()
		return err == nil && len(pub.Targets) == 1 && !pub.Targets[0].Up
	})
	close(relay.release)
	for _, id := range []string{"a", "b"} {
		if r := lh.wait(id); r.State != spool.StateDone || r.Attempts != 1 {
			t.Errorf("%s: got %s after %d attempts, want done after 1", id, r.State, r.Attempts)
		}
	}
	relay.mu.Lock()
	defer relay.mu.Unlock()
	if relay.calls["a"] != 1 {
		t.Errorf("job a was handed on %d times, want once: the outage took it back", relay.calls["a"])
	}
}
