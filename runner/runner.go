package runner

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/spool"
)

// Target is an Ollama server a lane sends jobs to; *ollama.Client is one.
// A Target that also has a Tags method (as *ollama.Client does) tells the
// lanes which models it has installed.
type Target interface {
	Do(ctx context.Context, path string, body []byte, onChunk func(chunk []byte) error) (json.RawMessage, error)
	Running(ctx context.Context) ([]ollama.RunningModel, error)
	Version(ctx context.Context) (string, error)
}

// tagger is a Target that lists its installed models (GET /api/tags).
type tagger interface {
	Tags(ctx context.Context) ([]ollama.Model, error)
}

// Functions resolves the named functions that function jobs call;
// *functions.Registry is one.
type Functions interface {
	Lookup(name string) (*functions.Function, error)
}

// Emitter receives an event for every state change of a job; *hooks.Hooks
// is one. Emit must return quickly: delivery happens elsewhere. It is
// called from every lane at once.
type Emitter interface {
	EmitJob(rec *spool.Record, previous spool.State, job *spool.Job) error
}

// TargetConfig is one Ollama server and the lane that drives it.
type TargetConfig struct {
	Name     string // [a-z0-9-]+: in records (.target), status and metrics
	URL      string // for status; the Target does the talking
	Target   Target
	Parallel int      // requests in flight at once, all of one load key; default 1
	Models   []string // globs of the models this target may run; empty: any
}

// LockLine is what the runner lock file says of the target.
func (t TargetConfig) LockLine() string { return t.Name + " " + t.URL }

// Config configures a Runner. Zero durations take the documented defaults.
type Config struct {
	Spool *spool.Spool
	// Targets are the Ollama servers, one lane each. Empty: the one
	// target given by Target and TargetName.
	Targets    []TargetConfig
	Target     Target
	TargetName string
	Policy     Policy
	Functions  Functions // nil: no functions are defined
	Hooks      Emitter   // nil: no events

	KeepAlive     string        // the job's keep_alive when it gives none; default "-1"
	MaxAttempts   int           // default 3
	Timeout       time.Duration // per job; default 30m
	MaxAge        time.Duration // 0: jobs never expire
	ShutdownGrace time.Duration // default 30s
	Settle        time.Duration // see spool.WatchOptions
	// RetainDone and RetainFailed prune finished records older than this
	// from done/ and failed/, checked every RetentionCheck (default 10m);
	// 0 keeps them forever.
	RetainDone, RetainFailed time.Duration
	RetentionCheck           time.Duration

	RetryBase  time.Duration // first deferral after a failed attempt; default 5s
	RetryMax   time.Duration // cap on deferrals; default 5m
	OutageBase time.Duration // first probe delay when a target is unavailable; default 500ms
	OutageMax  time.Duration // cap on probe delays; default 30s
	// Refresh is how often each target's resident and installed models are
	// asked for besides after each load; default 30s.
	Refresh time.Duration

	// Locked says the caller holds the spool's runner lock already (taken
	// before anything else, so a second serve refuses at once); otherwise
	// Run takes it.
	Locked bool

	// Ready, if set, is called once the runner holds the lock, has recovered
	// the spool and watches it (for systemd's READY=1).
	Ready func()

	Logger *slog.Logger
	Now    func() time.Time
	Jitter func() float64 // in [0,1); default math/rand/v2
}

func (c *Config) fill() {
	c.KeepAlive = cmp.Or(c.KeepAlive, "-1")
	positiveOr(&c.MaxAttempts, 3)
	positiveOr(&c.Timeout, 30*time.Minute)
	positiveOr(&c.ShutdownGrace, 30*time.Second)
	positiveOr(&c.RetryBase, 5*time.Second)
	positiveOr(&c.RetryMax, 5*time.Minute)
	positiveOr(&c.OutageBase, 500*time.Millisecond)
	positiveOr(&c.OutageMax, 30*time.Second)
	positiveOr(&c.Refresh, 30*time.Second)
	positiveOr(&c.RetentionCheck, 10*time.Minute)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Jitter == nil {
		c.Jitter = rand.Float64
	}
	if c.Policy.SameModel == nil {
		c.Policy.SameModel = ollama.SameModel
	}
}

// positiveOr sets *v to def unless it is positive.
func positiveOr[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Runner runs the jobs of one spool against its targets: a lane per
// target, fed by one dispatcher, beside the keeper's work (recovery,
// deferred release, retention, batches).
type Runner struct {
	log   *slog.Logger
	spool *spool.Spool
	queue *spool.Queue
	// pending holds settings handed over by Reconfigure until the
	// dispatcher adopts them.
	pending atomic.Pointer[Config]
	// cfg holds the settings in force; jobs take a snapshot when they start.
	cfg atomic.Pointer[Config]
	// retention is read by the retain goroutine; the dispatcher swaps it
	// on reload.
	retention atomic.Pointer[[2]time.Duration]
	batches   *batches
	lanes     []*Lane

	// mu guards every lane's scheduling state (lane.st and its counters).
	mu sync.Mutex
	// wake tells the dispatcher that a lane freed a slot or changed state.
	// It has one receiver, so a coalesced signal is never lost.
	wake chan struct{}
	jobs sync.WaitGroup // running jobs and lane probes
	// dirty marks the targets' published state as stale.
	dirty atomic.Bool
	// runCtx is Run's context, for the lanes' probes.
	runCtx context.Context
	// problem says what keeps the runner from working normally (a record
	// that cannot be written), for status; nil when nothing does.
	problem atomic.Pointer[string]
}

// cancelPoll is how often a running job's cancel request (cur/ID.cancel) is
// looked for. Polling one file is cheaper than watching cur/, where every
// streamed chunk is a write event.
const cancelPoll = 100 * time.Millisecond

// New checks the configuration and returns a Runner; Run starts it.
func New(cfg Config) (*Runner, error) {
	if cfg.Spool == nil {
		return nil, errors.New("runner: a spool is required")
	}
	targets := cfg.Targets
	if len(targets) == 0 {
		if cfg.Target == nil {
			return nil, errors.New("runner: a target is required")
		}
		targets = []TargetConfig{{Name: cfg.TargetName, Target: cfg.Target}}
	}
	cfg.fill()
	r := &Runner{
		log:   cfg.Logger,
		spool: cfg.Spool,
		wake:  make(chan struct{}, 1),
	}
	if err := checkTargets(targets, len(cfg.Targets) > 0); err != nil {
		return nil, err
	}
	for i, t := range targets {
		if t.Target == nil {
			return nil, fmt.Errorf("runner: targets[%d] (%s) has no target", i, t.Name)
		}
		if t.Parallel == 0 {
			t.Parallel = 1
		}
		r.lanes = append(r.lanes, newLane(r, t))
	}
	r.cfg.Store(&cfg)
	r.queue = spool.NewKeyedQueue(r.keyOf)
	r.retention.Store(&[2]time.Duration{cfg.RetainDone, cfg.RetainFailed})
	emitBatch := func(*batch.Record) {}
	if be, ok := cfg.Hooks.(BatchEmitter); ok && cfg.Hooks != nil {
		emitBatch = func(b *batch.Record) {
			if err := be.EmitBatch(b); err != nil {
				r.log.Error("cannot record the batch event", "batch", b.ID, "err", err)
			}
		}
	}
	r.batches = newBatches(cfg.Spool, r.queue, cfg.Logger, emitBatch)
	return r, nil
}

// keyOf is an entry's load key: its model and the options that make Ollama
// reload a model, a function job's from its function.
func (r *Runner) keyOf(e spool.Entry) string {
	model, options := e.Model, e.Options
	if e.Function != "" {
		if fns := r.cfg.Load().Functions; fns != nil {
			if fn, err := fns.Lookup(e.Function); err == nil {
				model, options = fn.Model, mergeOptions(fn.Options, options)
			}
		}
	}
	return ollama.LoadKey(model, options)
}

// jobKey is a claimed job's load key.
func (r *Runner) jobKey(c *spool.Claimed) string {
	if c.Job == nil {
		return ""
	}
	return r.keyOf(spool.Entry{Model: c.Job.Model, Function: c.Job.Function, Options: c.Job.Body["options"]})
}

// mergeOptions lays a job's own options over its function's.
func mergeOptions(fn map[string]any, job json.RawMessage) json.RawMessage {
	if len(fn) == 0 {
		return job
	}
	merged := map[string]any{}
	for k, v := range fn {
		merged[k] = v
	}
	var own map[string]any
	if json.Unmarshal(job, &own) == nil {
		for k, v := range own {
			merged[k] = v
		}
	}
	data, err := json.Marshal(merged)
	if err != nil {
		return job
	}
	return data
}

// Reconfigure hands the runner new settings (after SIGHUP). They apply from
// the next job on; running jobs keep their own. The spool, the targets and
// the logger cannot change: those need a restart.
func (r *Runner) Reconfigure(c Config) {
	r.pending.Store(&c) // a newer one replaces a pending one
	r.signal()
}

// applyReload adopts pending settings, if any. Only the dispatcher calls it.
func (r *Runner) applyReload() {
	if p := r.pending.Swap(nil); p != nil {
		c := *p
		cur := r.cfg.Load()
		c.Spool, c.Targets, c.Target, c.TargetName, c.Logger = cur.Spool, cur.Targets, cur.Target, cur.TargetName, cur.Logger
		if c.Now == nil {
			c.Now = cur.Now
		}
		c.fill()
		r.cfg.Store(&c)
		r.retention.Store(&[2]time.Duration{c.RetainDone, c.RetainFailed})
		r.log.Info("settings reloaded", "schedule", c.Policy.Schedule, "max_wait", c.Policy.MaxWait, "max_attempts", c.MaxAttempts, "timeout", c.Timeout)
	}
}

// signal wakes the dispatcher without blocking.
func (r *Runner) signal() { poke(r.wake) }

// poke sends on ch without blocking: a wake-up already pending is as good.
func poke(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Causes of an aborted request.
var (
	errCanceled = errors.New("canceled")
	errShutdown = errors.New("hopper is shutting down")
	errHeld     = errors.New("held")
	errTimeout  = errors.New("timeout")
	// errTargetDown aborts the requests in flight on a lane that went
	// down: they go back in line.
	errTargetDown = errors.New("the target went down")
)

// Run takes the spool's runner lock, recovers what a crash left, and runs
// jobs on every lane until ctx is done. Then it claims nothing new, lets
// the running jobs finish within ShutdownGrace, and otherwise aborts them
// and leaves them queued without charging an attempt. It returns once every
// goroutine it started has ended.
func (r *Runner) Run(ctx context.Context) error {
	s := r.spool
	r.runCtx = ctx
	if !r.cfg.Load().Locked {
		names := make([]string, len(r.lanes))
		for i, l := range r.lanes {
			names[i] = l.cfg.LockLine()
		}
		lock, err := s.Lock(names...)
		if err != nil {
			return err
		}
		defer lock.Unlock()
	}

	k, err := r.startKeeper()
	if err != nil {
		return err
	}
	defer k.stop()
	r.refreshAll(ctx)
	r.publish()
	if cfg := r.cfg.Load(); cfg.Ready != nil {
		cfg.Ready()
	}
	r.dispatch(ctx)
	r.jobs.Wait()
	r.publish()
	return nil
}

// dispatch hands queued jobs to lanes with free slots until ctx is done.
// It is the only goroutine that claims jobs.
func (r *Runner) dispatch(ctx context.Context) {
	s := r.spool
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	refresh := time.NewTicker(r.cfg.Load().Refresh)
	defer refresh.Stop()
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	var published time.Time
	for ctx.Err() == nil {
		r.applyReload()
		// At most once a second: it is a file write, not for every job.
		if now := time.Now(); now.Sub(published) >= time.Second && r.dirty.Swap(false) {
			r.publish()
			published = now
		}
		if !s.Paused() {
			r.fill(ctx)
		}
		d := time.Hour
		if due := r.queue.Promote(r.cfg.Load().Now()); !due.IsZero() {
			d = max(due.Sub(r.cfg.Load().Now()), time.Millisecond)
		}
		wait.Reset(d)
		select {
		case <-ctx.Done():
		case <-r.queue.Changed():
		case <-r.wake:
		case <-wait.C:
		case <-poll.C:
		case <-refresh.C:
			r.refreshIdle(ctx)
		}
	}
}

// fill gives every lane with a free slot the job Pick chooses for it, until
// none takes another.
func (r *Runner) fill(ctx context.Context) {
	r.failUnservable(ctx)
	for ctx.Err() == nil {
		if e, ok := r.queue.Bad(); ok {
			// Bad input costs no target: fail it here, first.
			r.queue.Remove(e.Dir, e.Name)
			if c := r.claim(e); c != nil {
				r.newJob(nil, c).run(ctx)
			}
			continue
		}
		cfg := r.cfg.Load()
		r.queue.Promote(cfg.Now())
		started := false
		for i, l := range r.lanes {
			r.mu.Lock()
			states := r.laneStates()
			e, ok := Pick(r.queue, states, i, cfg.Now(), cfg.Policy)
			if ok {
				l.reserve(e.Key)
			}
			r.mu.Unlock()
			if !ok {
				continue
			}
			r.queue.Remove(e.Dir, e.Name)
			c := r.claim(e)
			if c == nil {
				r.mu.Lock()
				l.release()
				r.mu.Unlock()
				continue
			}
			key := e.Key
			if key == spool.UnreadKey {
				// The lane was idle: its key is this job's, now known —
				// unless its target may not run the model.
				key = r.jobKey(c)
				r.mu.Lock()
				st := l.state()
				ok := st.eligible(ollama.KeyModel(key))
				if ok {
					l.key = key
				} else {
					l.release()
				}
				r.mu.Unlock()
				if !ok {
					if err := r.spool.Requeue(c.Record); err != nil {
						r.log.Error("cannot return the job to the queue", "job", c.Record.ID, "err", err)
					}
					continue
				}
			}
			started = true
			j := r.newJob(l, c)
			j.key = key
			r.jobs.Go(func() { j.run(ctx) })
		}
		if !started {
			return
		}
	}
}

// failUnservable fails the queued jobs whose model no target may run: every
// target answered "not found" for it (they fail with the target's words),
// or no target's models patterns allow it.
func (r *Runner) failUnservable(ctx context.Context) {
	for _, p := range r.queue.Priorities() {
		for _, k := range r.queue.Keys(p) {
			model := ollama.KeyModel(k.Key)
			if model == "" || k.Key == spool.UnreadKey {
				continue
			}
			r.mu.Lock()
			why, status, ok := r.unservable(model)
			r.mu.Unlock()
			if ok {
				continue
			}
			r.queue.Remove(k.Oldest.Dir, k.Oldest.Name)
			if c := r.claim(k.Oldest); c != nil {
				j := r.newJob(nil, c)
				if j.prepare() {
					kind := spool.KindTarget
					if status == 0 {
						kind = spool.KindBadInput
					}
					j.fail(kind, why, status)
				}
			}
			// One job a pass: the next pass sees the key's next job.
			r.signal()
		}
	}
}

// unservable reports whether some lane may run model (ok), else why none
// may. The caller holds r.mu.
func (r *Runner) unservable(model string) (why string, status int, ok bool) {
	for _, l := range r.lanes {
		st := l.state()
		if st.eligible(model) {
			return "", 0, true
		}
		if m, lacks := l.missing[model]; lacks {
			why, status = m.message, 404
		}
	}
	if why == "" {
		why = fmt.Sprintf("no target may run model %q: every target's models patterns leave it out", model)
	}
	return why, status, false
}

// claim takes an entry into cur/; nil if it is gone or cannot be taken.
func (r *Runner) claim(e spool.Entry) *spool.Claimed {
	c, err := r.spool.Claim(e)
	if err != nil {
		if !errors.Is(err, spool.ErrGone) {
			r.log.Error("claim failed", "file", e.Dir+"/"+e.Name, "err", err)
		}
		return nil
	}
	return c
}

// laneStates snapshots every lane for Pick. The caller holds r.mu.
func (r *Runner) laneStates() []LaneState {
	out := make([]LaneState, len(r.lanes))
	for i, l := range r.lanes {
		out[i] = l.state()
	}
	return out
}

// refreshAll asks every target that is up which models it has loaded and
// installed, all at once, and waits for the answers (each within a few
// seconds).
func (r *Runner) refreshAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, l := range r.lanes {
		wg.Go(func() { l.refresh(ctx) })
	}
	wg.Wait()
	r.signal()
}

// refreshIdle asks each target that is up, in the background, what it has
// loaded and installed, unless it is being asked already: a target that
// hangs never holds up the dispatcher.
func (r *Runner) refreshIdle(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lanes {
		if !l.up || l.refreshing {
			continue
		}
		l.refreshing = true
		r.jobs.Go(func() {
			l.refresh(ctx)
			r.mu.Lock()
			l.refreshing = false
			r.mu.Unlock()
			r.signal()
		})
	}
}

// jitter spreads d by ±20%.
func jitter(cfg *Config, d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*cfg.Jitter()))
}
