package runner_test

// Concurrency review of the lanes commit (919fc72). Each test names the
// bug it proves. The first five fail on 919fc72 and pass since "runner:
// fixes from a concurrency review" (5a0e352); the last two
// (TestReviewACancelDuringTheRequeueIsKept and
// TestReviewInFlightJobsOfALaneMarkedDownGoBackInLine) since the fixes
// that followed. They stay as regression tests.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// Bug: Runner.dispatch answers a reload that arrives while it waits with
// `case c := <-r.reload: r.reload <- c`, a blocking send on a one-slot
// channel whose only receiver is the dispatcher itself. A Reconfigure
// (SIGHUP) that lands between that receive and that send fills the slot,
// and the dispatcher blocks for good: no job is claimed any more and Run
// never returns on shutdown (it no longer looks at ctx).
func TestReviewReconfigureCanWedgeTheDispatcher(t *testing.T) {
	h := newHarness(t, nil)
	ready := make(chan struct{})
	h.cfg.Ready = func() { close(ready) }
	r, err := runner.New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		// A wedged dispatcher ignores ctx: each further Reconfigure drains
		// the slot once, which may let it go. (The senders it swaps in
		// stay blocked: this test leaks them when it fails.)
		for range 300 {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
				go r.Reconfigure(h.cfg)
			}
		}
		t.Error("Run did not return after its context was canceled")
	}()
	runtest.Receive(t, ready, 30*time.Second, "the runner to start")
	for round := range 50 {
		// SIGHUPs in quick succession, from the one goroutine that
		// handles them (cmd/hopper's reloadOnHUP).
		hup := make(chan struct{})
		go func() {
			for range 40 {
				r.Reconfigure(h.cfg)
			}
			close(hup)
		}()
		select {
		case <-hup:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Reconfigure has blocked for 10s: the dispatcher is stuck putting a reload back into its own full channel, and a Reconfigure waits behind it", round)
		}
		id := fmt.Sprintf("j%03d", round)
		h.drop(id, chat("m1", "x"))
		if _, err := waitFor(h.s, id, 10*time.Second); err != nil {
			t.Fatalf("round %d: job %s was not run within 10s of the last Reconfigure: the dispatcher is stuck putting a reload back into its own full channel", round, id)
		}
	}
}

// hungInfo is a target whose /api/ps, /api/tags and /api/version never
// answer (a frozen Ollama, or a black-holed host): only the caller's
// deadline ends the call.
type hungInfo struct{ runner.Target }

func (hungInfo) Running(ctx context.Context) ([]ollama.RunningModel, error) {
	<-ctx.Done()
	return nil, fmt.Errorf("get /api/ps: %w", ctx.Err())
}

func (hungInfo) Version(ctx context.Context) (string, error) {
	<-ctx.Done()
	return "", fmt.Errorf("get /api/version: %w", ctx.Err())
}

// Bug: Runner.dispatch runs refreshAll synchronously on every Refresh tick,
// and refreshAll asks every lane — down ones included — with a 5s timeout.
// One target that does not answer stalls the only claimer for 5s per tick:
// slots that free on healthy lanes stay empty meanwhile.
func TestReviewAHungTargetsRefreshStallsEveryLane(t *testing.T) {
	lh := newLanes(t, []string{"a", "b"}, 1, func(c *runner.Config) {
		c.Refresh = 20 * time.Millisecond
		c.Targets[1].Target = hungInfo{c.Targets[1].Target}
	}, func(string) []ollamatest.Option {
		return []ollamatest.Option{ollamatest.WithModels("m1")}
	})
	lh.start()
	// The first refresh marks b down (after its 5s timeout); from then on
	// only a runs jobs, one at a time.
	lh.drop("first", chat("m1", "x"))
	if r := lh.wait("first"); r.State != spool.StateDone {
		t.Fatalf("first: got %s %+v", r.State, r.Error)
	}
	start := time.Now()
	ids := []string{"j1", "j2", "j3"}
	for _, id := range ids {
		lh.drop(id, chat("m1", "x"))
	}
	for _, id := range ids {
		if r := lh.wait(id); r.State != spool.StateDone {
			t.Fatalf("%s: got %s %+v", id, r.State, r.Error)
		}
	}
	// Each job takes a few milliseconds on a; three in a row should take
	// well under a second. With the bug each waits out a 5s refresh.
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("three short jobs on the healthy lane took %s: the dispatcher sat in refreshAll waiting for the hung target b", took.Round(time.Millisecond))
	}
}

// gated is a target whose first inference request is held until release
// is closed and then fails the way a crashed runner does (a 500: the job's
// fault, not the target's).
type gated struct {
	runner.Target
	entered chan struct{}
	release chan struct{}
	first   atomic.Bool
}

func (g *gated) Do(ctx context.Context, path string, body []byte, onChunk func([]byte) error) (json.RawMessage, error) {
	if g.first.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.release
		return nil, &ollama.JobFailedError{Status: 500, Message: ollamatest.RunnerCrashedMessage}
	}
	return g.Target.Do(ctx, path, body, onChunk)
}

// Bug: job.outcome asks l.alive(ctx) with the runner's context. During the
// shutdown grace that context is canceled, so the probe always fails: a job
// that failed on its own (500, a broken stream) while hopper was stopping is
// taken for a target that went away. Its attempt is not charged, it goes
// back in line as queued instead of deferred, and the lane is marked down
// (and published as down) although the target answers.
func TestReviewAJobFailingDuringShutdownGraceIsNotATargetOutage(t *testing.T) {
	g := &gated{entered: make(chan struct{}), release: make(chan struct{})}
	h := newHarness(t, func(c *runner.Config) {
		g.Target = c.Target
		c.Target = g
		c.ShutdownGrace = 30 * time.Second
	})
	h.start()
	h.drop("j", chat("m1", "x"))
	runtest.Receive(t, g.entered, 30*time.Second, "the job to reach the target")
	h.stop()         // SIGTERM: the running job has its grace
	close(g.release) // ... and fails within it, with a 500
	h.shutdown()
	rec, err := h.s.Get("j")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != spool.StateDeferred || rec.Attempts != 1 {
		t.Errorf("got state %s with %d attempts charged (error %+v); want deferred after 1 attempt: the target answered, the job failed", rec.State, rec.Attempts, rec.Error)
	}
	pub, err := h.s.ReadTargets()
	if err != nil {
		t.Fatal(err)
	}
	if ts := pub.Targets[0]; !ts.Up {
		t.Errorf("the target is published as down (%q) after shutdown, but it never stopped answering", ts.Error)
	}
}

// cancelThenGone is a target whose first inference request sees `hopper
// cancel` arrive for the job and then loses its connection (the target
// went away).
type cancelThenGone struct {
	runner.Target
	s       *spool.Spool
	id      string
	first   atomic.Bool
	running atomic.Bool
}

func (c *cancelThenGone) Do(ctx context.Context, path string, body []byte, onChunk func([]byte) error) (json.RawMessage, error) {
	if c.first.CompareAndSwap(false, true) {
		running, err := c.s.Cancel(c.id, "")
		c.running.Store(err == nil && running)
		return nil, &ollama.UnavailableError{Err: errors.New("connection reset by peer")}
	}
	return c.Target.Do(ctx, path, body, onChunk)
}

// Bug: spool.Requeue (called by job.requeue when the target went away)
// removes cur/ID.cancel with the run files. A cancel request that came in
// after the attempt's last poll — `hopper cancel` answered "running" — is
// thrown away, and the job runs again to done when it is claimed from
// deferred/. (Recover carries a waiting cancel over as Claimed.Canceled;
// claimDeferred does not.)
func TestReviewACancelThatArrivesAsTheTargetGoesAwayIsKept(t *testing.T) {
	var tgt *cancelThenGone
	h := newHarness(t, func(c *runner.Config) {
		tgt = &cancelThenGone{Target: c.Target, s: c.Spool, id: "j"}
		c.Target = tgt
	})
	h.start()
	h.drop("j", chat("m1", "x"))
	rec := h.wait("j")
	if !tgt.running.Load() {
		t.Fatal("hopper cancel did not find the job running")
	}
	if rec.State != spool.StateFailed || rec.Error == nil || rec.Error.Kind != spool.KindCanceled {
		t.Errorf("got %s (%+v) after `hopper cancel` said the job was running; want failed (canceled)", rec.State, rec.Error)
	}
}

// Bug: Pick lets an idle lane leave a free key to another idle lane whose
// target has it resident — but that other lane skips resident keys whose
// model is pinned. Two idle lanes with a pinned model resident and no
// /api/tags list (untagged targets, or a failed Tags call) defer to each
// other: the job waits, both lanes idle, until max_wait (10m by default).
func TestReviewPickTwoIdleLanesWithAPinnedModelResidentDeferToEachOther(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	q := spool.NewKeyedQueue(func(e spool.Entry) string { return ollama.LoadKey(e.Model, e.Options) })
	q.Put(spool.Entry{Dir: spool.DirNew, Name: "e.json", Model: "embed", Arrived: now.Add(-time.Minute)})
	lanes := []runner.LaneState{
		{Name: "a", Up: true, Slots: 1, Resident: []string{ollama.LoadKey("embed", nil)}},
		{Name: "b", Up: true, Slots: 1, Resident: []string{ollama.LoadKey("embed", nil)}},
	}
	p := runner.Policy{Pinned: []string{"embed"}, SameModel: ollama.SameModel}
	for self := range lanes {
		if e, ok := runner.Pick(q, lanes, self, now, p); ok {
			t.Logf("lane %s takes %s", lanes[self].Name, e.Name)
			return
		}
	}
	t.Errorf("neither idle lane takes the only job: each leaves it to the other, whose target has it resident (pinned)")
}

// cancelDuringRequeue is a target whose first inference request loses its
// connection (the target went away); as the runner then writes the job's
// record back to the queue, `hopper cancel` arrives for it.
type cancelDuringRequeue struct {
	runner.Target
	s       *spool.Spool
	id      string
	first   atomic.Bool
	caught  chan struct{} // closed once the cancel was sent mid-requeue
	running atomic.Bool
}

func (c *cancelDuringRequeue) Do(ctx context.Context, path string, body []byte, onChunk func([]byte) error) (json.RawMessage, error) {
	if !c.first.CompareAndSwap(false, true) {
		return c.Target.Do(ctx, path, body, onChunk)
	}
	// Nothing writes cur/ID.json between this answer and the runner's
	// requeue, so the first staging file for it (.ID.json.*) that shows up
	// is spool.Requeue's: the runner looked for a cancel request already.
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			entries, _ := c.s.ReadDir(spool.DirCur)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "."+c.id+".json.") {
					running, err := c.s.Cancel(c.id, "")
					c.running.Store(err == nil && running)
					close(c.caught)
					return
				}
			}
		}
	}()
	return nil, &ollama.UnavailableError{Err: errors.New("connection reset by peer")}
}

// Bug (left after "runner: fixes from a concurrency review", 5a0e352):
// job.requeue looks for a cancel request and then calls spool.Requeue,
// which removes cur/ID.cancel after moving the record to deferred/. A
// `hopper cancel` that lands in between — while Requeue writes and fsyncs
// the record, milliseconds with fsync: true — finds the job in cur/, is
// told "running", and its request is deleted: the job runs again to done.
func TestReviewACancelDuringTheRequeueIsKept(t *testing.T) {
	var tgt *cancelDuringRequeue
	h := newHarness(t, func(c *runner.Config) {
		c.Spool = newSpool(t, t.TempDir(), spool.Options{Fsync: true})
		tgt = &cancelDuringRequeue{Target: c.Target, s: c.Spool, id: "j", caught: make(chan struct{})}
		c.Target = tgt
	})
	h.start()
	h.drop("j", chat("m1", "x"))
	rec := h.wait("j")
	select {
	case <-tgt.caught:
	default:
		t.Fatal("the test did not catch the requeue in progress; inconclusive")
	}
	if !tgt.running.Load() {
		t.Skip("hopper cancel came after the requeue (not running); inconclusive")
	}
	if rec.State != spool.StateFailed || rec.Error == nil || rec.Error.Kind != spool.KindCanceled {
		t.Errorf("got %s (%+v) after `hopper cancel` said the job was running; want failed (canceled)", rec.State, rec.Error)
	}
}

// partitioned is a target cut off from hopper (a network partition, a
// frozen host) while it serves its first request: that request and every
// later call get no answer at all, until the caller gives up.
type partitioned struct {
	runner.Target
	cut     atomic.Bool
	entered chan struct{}
}

func (p *partitioned) Do(ctx context.Context, path string, body []byte, onChunk func([]byte) error) (json.RawMessage, error) {
	if p.cut.CompareAndSwap(false, true) {
		close(p.entered)
	}
	<-ctx.Done()
	return nil, fmt.Errorf("post %s: %w", path, ctx.Err())
}

func (p *partitioned) Running(ctx context.Context) ([]ollama.RunningModel, error) {
	if p.cut.Load() {
		<-ctx.Done()
		return nil, fmt.Errorf("get /api/ps: %w", ctx.Err())
	}
	return p.Target.Running(ctx)
}

func (p *partitioned) Version(ctx context.Context) (string, error) {
	if p.cut.Load() {
		<-ctx.Done()
		return "", fmt.Errorf("get /api/version: %w", ctx.Err())
	}
	return p.Target.Version(ctx)
}

// Bug (design gap, still at HEAD): Lane.down stops new work on a lane but
// leaves the requests already in flight there alone. When the target is
// cut off rather than refusing connections, a request waiting for its
// first byte (queued or loading on the server: no stall timer yet) hangs
// until the job's timeout and then fails for good as a timeout — although
// the lane was marked down seconds in, another lane is idle, and DESIGN §4
// says a down target's in-flight jobs return to the queue with no attempt
// charged.
func TestReviewInFlightJobsOfALaneMarkedDownGoBackInLine(t *testing.T) {
	var a *partitioned
	lh := newLanes(t, []string{"a", "b"}, 1, func(c *runner.Config) {
		c.Refresh = 20 * time.Millisecond
		c.Timeout = 20 * time.Second
		a = &partitioned{Target: c.Targets[0].Target, entered: make(chan struct{})}
		c.Targets[0].Target = a
		c.Targets[1].Target = untagged{c.Targets[1].Target} // so lane a takes the first job
	}, func(string) []ollamatest.Option {
		return []ollamatest.Option{ollamatest.WithModels("m1")}
	})
	lh.start()
	lh.drop("j", chat("m1", "x"))
	runtest.Receive(t, a.entered, 30*time.Second, "lane a to take the job")
	eventually(t, "lane a to be reported down", func() bool {
		pub, err := lh.s.ReadTargets()
		return err == nil && !pub.Targets[0].Up
	})
	rec := lh.wait("j")
	if rec.State != spool.StateDone || rec.Target != "b" || rec.Attempts != 1 {
		t.Errorf("got %s on %q after %d attempts (%+v); want done on b after 1: a's lane was down, its in-flight job should have gone back in line", rec.State, rec.Target, rec.Attempts, rec.Error)
	}
}
