package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/spooltest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

func TestDroppedFileBecomesDoneRecord(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.drop("hello", chat("m1", "why is the sky blue?"))
	r := h.wait("hello")
	if r.State != spool.StateDone {
		t.Fatalf("got state %s (%+v), want done", r.State, r.Error)
	}
	if got := content(t, r); !strings.Contains(got, "why is the sky blue?") {
		t.Errorf("got answer %q, want the fake's reply to the prompt", got)
	}
	if r.Attempts != 1 || !r.ModelLoaded || r.Target != h.fake.URL || r.StartedAt == nil || r.FinishedAt == nil {
		t.Errorf("got attempts=%d model_loaded=%v target=%q started=%v finished=%v", r.Attempts, r.ModelLoaded, r.Target, r.StartedAt, r.FinishedAt)
	}
	var job map[string]any
	if err := json.Unmarshal(r.Job, &job); err != nil || job["model"] != "m1" {
		t.Errorf("got job %s, want the job as submitted", r.Job)
	}
	if h.s.Exists(spool.DirCur, "hello.out") {
		t.Errorf("cur/hello.out left behind")
	}
}

func TestStreamsIntoOutputFileWhileRunning(t *testing.T) {
	h := newHarness(t, nil, ollamatest.WithTokens(20), ollamatest.WithTokenDelay(5*time.Millisecond))
	h.start()
	h.drop("live", chat("m1", "count"))
	var lines int
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := h.s.Follow(ctx, "live", func(line []byte) error {
		if !json.Valid(line) {
			t.Errorf("output line is not JSON: %q", line)
		}
		lines++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != spool.StateDone || lines < 2 {
		t.Errorf("got state %s after %d streamed lines, want done after several", r.State, lines)
	}
}

func TestSendsKeepAliveAndStreamAsOllamaWants(t *testing.T) {
	h := newHarness(t, func(c *runner.Config) { c.KeepAlive = "3600" })
	h.start()
	h.drop("a", `{"model":"m1","prompt":"hi","stream":false,"priority":3,"meta":{"x":1},"options":{"temperature":0.10}}`)
	h.drop("b", `{"model":"m1","prompt":"hi","keep_alive":"10m"}`)
	h.wait("a")
	h.wait("b")
	bodies := map[string]map[string]json.RawMessage{}
	for _, req := range h.fake.Requests() {
		if req.Path != "/api/generate" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(req.Body, &m); err != nil {
			t.Fatal(err)
		}
		bodies[string(m["keep_alive"])] = m
	}
	a, ok := bodies["3600"]
	if !ok {
		t.Fatalf("no request carried keep_alive 3600 as a JSON number; got %v", bodies)
	}
	if string(a["stream"]) != "true" || a["priority"] != nil || a["meta"] != nil || string(a["options"]) != `{"temperature":0.10}` {
		t.Errorf("got request %v, want stream true, hopper fields stripped, options byte for byte", a)
	}
	if _, ok := bodies[`"10m"`]; !ok {
		t.Errorf("the job's own keep_alive \"10m\" was not sent as given; got %v", bodies)
	}
}

func TestFailures(t *testing.T) {
	for _, tt := range []struct {
		name  string
		fault func(*ollamatest.Server)
	}{
		{"A500IsDeferredThenDone", func(f *ollamatest.Server) { f.FailNext(1, 500, "boom") }},
		{"ADropMidStreamIsRetried", func(f *ollamatest.Server) { f.DropMidStream(1) }},
		{"AnErrorLineInsideTheStreamIsRetried", func(f *ollamatest.Server) { f.ErrorMidStream(1, "runner crashed") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			tt.fault(h.fake)
			h.start()
			h.drop("j", chat("m1", "x"))
			r := h.wait("j")
			if r.State != spool.StateDone || r.Attempts != 2 {
				t.Errorf("got %s after %d attempts, want done after 2", r.State, r.Attempts)
			}
		})
	}
	t.Run("AttemptsRunOutThenFailed", func(t *testing.T) {
		h := newHarness(t, func(c *runner.Config) { c.MaxAttempts = 2 })
		h.fake.FailNext(5, 500, "boom")
		h.start()
		h.drop("j", chat("m1", "x"))
		r := h.wait("j")
		if r.State != spool.StateFailed || r.Attempts != 2 || r.Error.Kind != spool.KindTarget || r.Error.Status != 500 || !strings.Contains(r.Error.Message, "boom") {
			t.Errorf("got %s after %d attempts, error %+v; want failed after 2 with the target's message", r.State, r.Attempts, r.Error)
		}
	})
	t.Run("ModelNotFoundFailsAtOnceWithOllamasMessage", func(t *testing.T) {
		h := newHarness(t, nil)
		h.start()
		h.drop("j", chat("nope", "x"))
		r := h.wait("j")
		if r.State != spool.StateFailed || r.Attempts != 1 || r.Error.Status != 404 || r.Error.Message != "model 'nope' not found" {
			t.Errorf("got %s after %d attempts, error %+v", r.State, r.Attempts, r.Error)
		}
	})
	t.Run("OverTimeoutFails", func(t *testing.T) {
		h := newHarness(t, nil)
		h.fake.HangNext(1)
		h.start()
		h.drop("j", `{"model":"m1","prompt":"x","timeout":"200ms"}`)
		r := h.wait("j")
		if r.State != spool.StateFailed || r.Error.Kind != spool.KindTimeout {
			t.Errorf("got %s, error %+v; want failed (timeout)", r.State, r.Error)
		}
	})
	t.Run("OlderThanMaxAgeExpires", func(t *testing.T) {
		h := newHarness(t, func(c *runner.Config) { c.Now = func() time.Time { return time.Now().Add(time.Hour) } })
		h.start()
		h.drop("j", `{"model":"m1","prompt":"x","max_age":"10m"}`)
		r := h.wait("j")
		if r.State != spool.StateFailed || r.Error.Kind != spool.KindExpired || r.Attempts != 0 {
			t.Errorf("got %s, error %+v, attempts %d; want failed (expired) without running", r.State, r.Error, r.Attempts)
		}
	})
	t.Run("BadInputFailsWithItsBytesKept", func(t *testing.T) {
		h := newHarness(t, nil)
		h.start()
		h.drop("bad", `{"model": "m1", "prompt": `)
		r := h.wait("bad")
		if r.State != spool.StateFailed || r.Error.Kind != spool.KindBadInput || r.JobRaw == nil || *r.JobRaw != `{"model": "m1", "prompt": ` {
			t.Errorf("got %s, error %+v, job_raw %v", r.State, r.Error, r.JobRaw)
		}
		if n := len(h.fake.Requests()); n > 0 {
			for _, req := range h.fake.Requests() {
				if strings.HasPrefix(req.Path, "/api/chat") || strings.HasPrefix(req.Path, "/api/generate") {
					t.Errorf("bad input reached the target: %s", req.Path)
				}
			}
		}
	})
	t.Run("AnUnknownFunctionFailsAsBadInput", func(t *testing.T) {
		h := newHarness(t, nil)
		h.start()
		h.wantBadInput("fn", `{"function":"summarize","vars":{"text":"x"}}`, `"summarize"`)
	})
}

func TestTargetOutageChargesNoAttempt(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.Stop()
	h.start()
	h.drop("a", chat("m1", "x"))
	h.drop("b", chat("m2", "y"))
	// The lane is stopped and keeps probing; the jobs wait in line.
	eventually(t, "the lane to be reported down", func() bool {
		pub, err := h.s.ReadTargets()
		return err == nil && !pub.Targets[0].Up && pub.Targets[0].Error != ""
	})
	h.fake.Start()
	for _, id := range []string{"a", "b"} {
		r := h.wait(id)
		if r.State != spool.StateDone || r.Attempts != 1 {
			t.Errorf("%s: got %s after %d attempts, want done after 1", id, r.State, r.Attempts)
		}
	}
}

func TestBusyTargetChargesNoAttempt(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.FailNext(3, 503, "")
	h.start()
	h.drop("a", chat("m1", "x"))
	r := h.wait("a")
	if r.State != spool.StateDone || r.Attempts != 1 {
		t.Errorf("got %s after %d attempts, want done after 1", r.State, r.Attempts)
	}
}

func TestCancel(t *testing.T) {
	t.Run("AQueuedJob", func(t *testing.T) {
		h := newHarness(t, nil)
		h.drop("q", chat("m1", "x"))
		if running, err := h.s.Cancel("q", "changed my mind"); err != nil || running {
			t.Fatalf("Cancel: running=%v err=%v", running, err)
		}
		h.start()
		r := h.wait("q")
		if r.State != spool.StateFailed || r.Error.Kind != spool.KindCanceled || r.Attempts != 0 {
			t.Errorf("got %s, error %+v, attempts %d", r.State, r.Error, r.Attempts)
		}
	})
	t.Run("ARunningJob", func(t *testing.T) {
		h := newHarness(t, nil)
		h.fake.HangNext(1)
		h.start()
		h.drop("run", chat("m1", "x"))
		eventually(t, "the request to reach the target", func() bool { return h.fake.InFlight() == 1 })
		running, err := h.s.Cancel("run", "stop")
		if err != nil || !running {
			r, _ := h.s.Get("run")
			t.Fatalf("Cancel: running=%v err=%v (record %+v %+v)", running, err, r, r.Error)
		}
		r := h.wait("run")
		if r.State != spool.StateFailed || r.Error.Kind != spool.KindCanceled {
			t.Errorf("got %s, error %+v", r.State, r.Error)
		}
		eventually(t, "the target to see the request end", func() bool { return h.fake.InFlight() == 0 })
		// The runner goes on with the next job.
		h.drop("next", chat("m1", "y"))
		if r := h.wait("next"); r.State != spool.StateDone {
			t.Errorf("next job: got %s", r.State)
		}
	})
}

func TestShutdown(t *testing.T) {
	t.Run("TheRunningJobFinishesWithinTheGrace", func(t *testing.T) {
		h := newHarness(t, func(c *runner.Config) { c.ShutdownGrace = 30 * time.Second },
			ollamatest.WithTokens(10), ollamatest.WithTokenDelay(20*time.Millisecond))
		h.start()
		h.drop("j", chat("m1", "x"))
		eventually(t, "the request to reach the target", func() bool { return h.fake.InFlight() == 1 })
		h.shutdown()
		r, err := h.s.Get("j")
		if err != nil || r.State != spool.StateDone {
			t.Fatalf("got %v, %v; want done", r, err)
		}
	})
	t.Run("PastTheGraceTheJobStaysQueuedUncharged", func(t *testing.T) {
		h := newHarness(t, func(c *runner.Config) { c.ShutdownGrace = 50 * time.Millisecond })
		h.fake.HangNext(1)
		h.start()
		h.drop("j", chat("m1", "x"))
		eventually(t, "the request to reach the target", func() bool { return h.fake.InFlight() == 1 })
		h.shutdown()
		r, err := h.s.Get("j")
		if err != nil || r.State != spool.StateQueued || r.Attempts != 0 {
			t.Fatalf("got %+v, %v; want queued with no attempt charged", r, err)
		}
		// The next start runs it first.
		h.start()
		if r := h.wait("j"); r.State != spool.StateDone || r.Attempts != 1 {
			t.Errorf("after restart: got %s after %d attempts", r.State, r.Attempts)
		}
	})
}

func TestRecoveredJobRunsAgainFirst(t *testing.T) {
	h := newHarness(t, nil)
	// Leave cur/ as a crash mid-job would: a working record and partial output.
	rec := &spool.Record{ID: "crashed", State: spool.StateWorking, Endpoint: "chat", Model: "m1",
		Job: json.RawMessage(chat("m1", "x")), Attempts: 1, SubmittedAt: time.Now()}
	data, _ := rec.Marshal()
	spooltest.Put(t, h.s, spool.DirCur, "crashed.json", data)
	spooltest.Put(t, h.s, spool.DirCur, "crashed.out", []byte(`{"message":{"content":"par"}}`+"\n"))
	h.start()
	r := h.wait("crashed")
	if r.State != spool.StateDone || r.Attempts != 2 {
		t.Errorf("got %s after %d attempts, want done after 2", r.State, r.Attempts)
	}
}

func TestRecoveredJobWithAttemptsSpentIsInterrupted(t *testing.T) {
	h := newHarness(t, func(c *runner.Config) { c.MaxAttempts = 1 })
	rec := &spool.Record{ID: "crashed", State: spool.StateWorking, Endpoint: "chat", Model: "m1",
		Job: json.RawMessage(chat("m1", "x")), Attempts: 1, SubmittedAt: time.Now()}
	data, _ := rec.Marshal()
	spooltest.Put(t, h.s, spool.DirCur, "crashed.json", data)
	h.start()
	r := h.wait("crashed")
	if r.State != spool.StateFailed || r.Error.Kind != spool.KindInterrupted {
		t.Errorf("got %s, error %+v; want failed (interrupted)", r.State, r.Error)
	}
}

func TestSecondRunnerOnTheSameSpoolIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.drop("a", chat("m1", "x"))
	h.wait("a") // the first runner holds the lock by now
	r, err := runner.New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(context.Background())
	if !errors.Is(err, spool.ErrLocked) || !strings.Contains(err.Error(), h.s.Path()) {
		t.Errorf("got %v, want ErrLocked naming the spool", err)
	}
}

func TestPausedRunnerClaimsNothing(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.s.Pause(); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.drop("p", chat("m1", "x"))
	// A negative: nothing may happen for a while. Wait out a fixed window.
	<-time.After(300 * time.Millisecond)
	if !h.s.Exists(spool.DirNew, "p.json") {
		t.Fatalf("job left new/ while paused")
	}
	if err := h.s.Resume(); err != nil {
		t.Fatal(err)
	}
	if r := h.wait("p"); r.State != spool.StateDone {
		t.Errorf("after resume: got %s", r.State)
	}
}

// scheduleRun drops n jobs over three models in interleaved order while the
// runner is paused, then runs them all and returns the fake's loads.
func scheduleRun(t *testing.T, schedule string, n int) (loads, changes int) {
	h := newHarness(t, func(c *runner.Config) { c.Policy.Schedule = schedule },
		ollamatest.WithMaxLoaded(1), ollamatest.WithLoadDelay(time.Millisecond))
	h.s.Pause()
	h.start()
	models := []string{"m1", "m2", "m3"}
	for i := range n {
		h.drop(fmt.Sprintf("j%04d", i), chat(models[i%3], fmt.Sprint(i)))
	}
	h.s.Resume()
	for i := range n {
		if r := h.wait(fmt.Sprintf("j%04d", i)); r.State != spool.StateDone {
			t.Fatalf("j%04d: %s %+v", i, r.State, r.Error)
		}
	}
	if got := h.fake.MaxInFlight(); got != 1 {
		t.Errorf("got %d requests in flight at once, want 1", got)
	}
	last := ""
	for _, req := range h.fake.Requests() {
		if req.Path != "/api/chat" {
			continue
		}
		var m struct{ Model string }
		json.Unmarshal(req.Body, &m)
		if m.Model != last {
			changes++
			last = m.Model
		}
	}
	return h.fake.Loads(), changes
}

func TestDrainByModelLoadsEachModelOnce(t *testing.T) {
	loads, _ := scheduleRun(t, runner.ScheduleDrain, 60)
	if loads > 3 {
		t.Errorf("got %d loads for 3 models, want at most 3", loads)
	}
}

func TestFIFOLoadsOnEveryModelChange(t *testing.T) {
	loads, changes := scheduleRun(t, runner.ScheduleFIFO, 30)
	if loads != changes || changes != 30 {
		t.Errorf("got %d loads and %d model changes, want both 30", loads, changes)
	}
}

func TestRetentionPrunesOldRecords(t *testing.T) {
	h := newHarness(t, func(c *runner.Config) {
		c.RetainDone = time.Hour
		c.RetentionCheck = 20 * time.Millisecond
	})
	h.start()
	h.drop("old", chat("m1", "x"))
	h.drop("new", chat("m1", "y"))
	h.wait("old")
	h.wait("new")
	spooltest.Age(t, h.s, spool.DirDone, "old.json", 2*time.Hour)
	eventually(t, "the old record to be pruned", func() bool { return !h.s.Exists(spool.DirDone, "old.json") })
	if !h.s.Exists(spool.DirDone, "new.json") {
		t.Errorf("the recent record was pruned too")
	}
}

func TestShutdownDuringAnOutageChargesNothing(t *testing.T) {
	h := newHarness(t, func(c *runner.Config) { c.MaxAttempts = 5 })
	h.fake.FailNext(1, 500, "boom") // attempt 1 fails: the job is deferred with 1 attempt
	h.start()
	h.drop("j", chat("m1", "x"))
	eventually(t, "the first attempt to fail", func() bool {
		r, err := h.s.Get("j")
		return err == nil && r.Attempts == 1 && r.State == spool.StateDeferred
	})
	h.fake.Stop()
	eventually(t, "the retry to find the target down", func() bool {
		r, err := h.s.Get("j")
		return err == nil && r.State == spool.StateQueued && r.Attempts == 1
	})
	h.shutdown()
	r, err := h.s.Get("j")
	if err != nil || r.Attempts != 1 || r.State != spool.StateQueued {
		t.Fatalf("got %+v, %v; want queued with the 1 attempt it really made", r, err)
	}
}

// A drop-in job whose front went away (its client's connection with it) is
// not run for nobody; one whose front still serves, or with a webhook or an
// idempotency key, runs.
func TestJobsOfAFrontThatIsGoneAreNotRun(t *testing.T) {
	h := newHarness(t, nil)
	live, releaseLive, err := h.s.HoldFront()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseLive()
	gone, releaseGone, err := h.s.HoldFront()
	if err != nil {
		t.Fatal(err)
	}
	releaseGone()
	for id, o := range map[string]spool.SubmitOptions{
		"live": {ID: "live", Waited: live}, "gone": {ID: "gone", Waited: gone},
	} {
		if _, err := h.s.Submit([]byte(chat("m1", id)), o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.s.Submit([]byte(`{"model":"m1","prompt":"x","idempotency_key":"k1"}`), spool.SubmitOptions{ID: "keyed", Waited: gone}); err != nil {
		t.Fatal(err)
	}
	h.start()
	for id, want := range map[string]spool.State{"live": spool.StateDone, "gone": spool.StateFailed, "keyed": spool.StateDone} {
		r := h.wait(id)
		if r.State != want {
			t.Errorf("%s: got %s (%+v), want %s", id, r.State, r.Error, want)
		}
		if want == spool.StateFailed && (r.Error.Kind != spool.KindCanceled || r.Attempts != 0) {
			t.Errorf("%s: got %+v after %d attempts, want canceled without an attempt", id, r.Error, r.Attempts)
		}
	}
}
