package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"log/slog"
	"math/rand/v2"
	"sync/atomic"

	"time"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/spool"
)

// Target is the Ollama server a runner sends jobs to; *ollama.Client is one.
type Target interface {
	Do(ctx context.Context, path string, body []byte, onChunk func(chunk []byte) error) (json.RawMessage, error)
	Running(ctx context.Context) ([]ollama.RunningModel, error)
	Version(ctx context.Context) (string, error)
}

// Functions resolves the named functions that function jobs call;
// *functions.Registry is one.
type Functions interface {
	Lookup(name string) (*functions.Function, error)
}

// Emitter receives an event for every state change of a job; *hooks.Hooks
// is one. Emit must return quickly: delivery happens elsewhere.
type Emitter interface {
	EmitJob(rec *spool.Record, previous spool.State, job *spool.Job) error
}

// Config configures a Runner. Zero durations take the documented defaults.
type Config struct {
	Spool      *spool.Spool
	Target     Target
	TargetName string // recorded in each record's "target"
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
	OutageBase time.Duration // first probe delay when the target is unavailable; default 500ms
	OutageMax  time.Duration // cap on probe delays; default 30s

	// Ready, if set, is called once the runner holds the lock, has recovered
	// the spool and watches it (for systemd's READY=1).
	Ready func()

	Logger *slog.Logger
	Now    func() time.Time
	Jitter func() float64 // in [0,1); default math/rand/v2
}

func (c *Config) fill() {
	if c.KeepAlive == "" {
		c.KeepAlive = "-1"
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Minute
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 5 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.OutageBase <= 0 {
		c.OutageBase = 500 * time.Millisecond
	}
	if c.OutageMax <= 0 {
		c.OutageMax = 30 * time.Second
	}
	if c.RetentionCheck <= 0 {
		c.RetentionCheck = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
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

// Runner runs the jobs of one spool against one target.
type Runner struct {
	cfg    Config
	log    *slog.Logger
	queue  *spool.Queue
	reload chan Config
	// retention is read by the retain goroutine; the loop swaps it on reload.
	retention atomic.Pointer[[2]time.Duration]
	// cur is the job being run: the state last announced for it, and the
	// job (nil for bad input), for its events.
	cur struct {
		state spool.State
		job   *spool.Job
	}
	batches *batches
	// models is what the target had loaded when next last asked, so the
	// attempt that follows need not ask again; nil: ask.
	models []string
}

// cancelPoll is how often a running job's cancel request (cur/ID.cancel) is
// looked for. Polling one file is cheaper than watching cur/, where every
// streamed chunk is a write event.
const cancelPoll = 100 * time.Millisecond

// New checks the configuration and returns a Runner; Run starts it.
func New(cfg Config) (*Runner, error) {
	if cfg.Spool == nil || cfg.Target == nil {
		return nil, errors.New("runner: a spool and a target are required")
	}
	cfg.fill()
	r := &Runner{
		cfg:    cfg,
		log:    cfg.Logger,
		queue:  spool.NewQueue(ollama.NormalizeModel),
		reload: make(chan Config, 1),
	}
	r.retention.Store(&[2]time.Duration{cfg.RetainDone, cfg.RetainFailed})
	emitBatch := func(*spool.Batch) {}
	if be, ok := cfg.Hooks.(BatchEmitter); ok && cfg.Hooks != nil {
		emitBatch = func(b *spool.Batch) {
			if err := be.EmitBatch(b); err != nil {
				r.log.Error("cannot record the batch event", "batch", b.ID, "err", err)
			}
		}
	}
	r.batches = newBatches(cfg.Spool, r.queue, cfg.Logger, emitBatch)
	return r, nil
}

// Reconfigure hands the runner new settings (after SIGHUP). They apply from
// the next job on; the running job keeps its own. The spool, the target and
// the logger cannot change: those need a restart.
func (r *Runner) Reconfigure(c Config) {
	select {
	case <-r.reload: // a newer one replaces a pending one
	default:
	}
	r.reload <- c
}

// applyReload adopts pending settings, if any. Only the loop goroutine calls
// it, between jobs.
func (r *Runner) applyReload() {
	select {
	case c := <-r.reload:
		c.Spool, c.Target, c.TargetName, c.Logger = r.cfg.Spool, r.cfg.Target, r.cfg.TargetName, r.cfg.Logger
		if c.Now == nil {
			c.Now = r.cfg.Now
		}
		c.fill()
		r.cfg = c
		r.retention.Store(&[2]time.Duration{c.RetainDone, c.RetainFailed})
		r.log.Info("settings reloaded", "schedule", c.Policy.Schedule, "max_wait", c.Policy.MaxWait, "max_attempts", c.MaxAttempts, "timeout", c.Timeout)
	default:
	}
}

// Causes of an aborted request.
var (
	errCanceled = errors.New("canceled")
	errShutdown = errors.New("hopper is shutting down")
	errTimeout  = errors.New("timeout")
)

// Run takes the spool's runner lock, recovers what a crash left, and runs
// jobs until ctx is done. Then it claims nothing new, lets the running job
// finish within ShutdownGrace, and otherwise aborts it and leaves it queued
// without charging an attempt.
func (r *Runner) Run(ctx context.Context) error {
	s := r.cfg.Spool
	lock, err := s.Lock(r.cfg.TargetName)
	if err != nil {
		return err
	}
	defer lock.Unlock()

	rec, err := s.Recover()
	if err != nil {
		r.log.Error("recovery was incomplete", "err", err)
	}
	if rec != nil && (len(rec.Finished) > 0 || len(rec.Rerun) > 0 || rec.TmpRemoved > 0) {
		r.log.Info("recovered the spool", "finished", len(rec.Finished), "rerun", len(rec.Rerun), "tmp_removed", rec.TmpRemoved)
	}
	if rec != nil {
		// A crash may have come before their final event was recorded:
		// emit it again (webhooks are at-least-once).
		for _, f := range rec.Finished {
			r.cur.job, r.cur.state = nil, spool.StateWorking // the job is read from the record
			r.announce(f)
		}
	}
	w, err := s.NewWatcher(r.queue, spool.WatchOptions{
		Settle: r.cfg.Settle,
		Logger: r.log,
	})
	if err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = w.Run(wctx)
	}()
	retainDone := make(chan struct{})
	go func() {
		defer close(retainDone)
		r.retain(wctx, r.cfg.RetentionCheck)
	}()
	if err := r.batches.open(); err != nil {
		r.log.Error("cannot take up every batch", "err", err)
	}
	batchesDone := make(chan struct{})
	go func() {
		defer close(batchesDone)
		r.batches.run(wctx)
	}()
	defer func() {
		stopWatch()
		<-watchDone
		<-retainDone
		<-batchesDone
	}()

	if r.cfg.Ready != nil {
		r.cfg.Ready()
	}
	if rec != nil {
		for _, c := range rec.Rerun {
			if ctx.Err() != nil {
				return nil
			}
			r.run(ctx, c)
		}
	}
	return r.loop(ctx)
}

// retain prunes done/ and failed/ per the retention settings, at start and
// then every RetentionCheck, until ctx ends.
func (r *Runner) retain(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		keep := r.retention.Load()
		for _, p := range []struct {
			keep  time.Duration
			state spool.State
		}{{keep[0], spool.StateDone}, {keep[1], spool.StateFailed}} {
			if p.keep <= 0 {
				continue
			}
			n, err := r.cfg.Spool.Prune(time.Now().Add(-p.keep), p.state)
			if err != nil {
				r.log.Error("retention", "state", p.state, "err", err)
			} else if n.Records > 0 || n.Batches > 0 {
				r.log.Info("retention pruned records", "state", p.state, "removed", n.Records, "batches", n.Batches, "older_than", p.keep)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// loop claims and runs jobs until ctx is done.
func (r *Runner) loop(ctx context.Context) error {
	s := r.cfg.Spool
	pausePoll := time.NewTicker(time.Second)
	defer pausePoll.Stop()
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for ctx.Err() == nil {
		r.applyReload()
		if s.Paused() {
			select {
			case <-ctx.Done():
			case <-pausePoll.C:
			}
			continue
		}
		e, ok := r.next(ctx)
		if !ok {
			d := time.Hour
			if due := r.queue.Promote(r.cfg.Now()); !due.IsZero() {
				d = max(due.Sub(r.cfg.Now()), time.Millisecond)
			}
			wait.Reset(d)
			select {
			case <-ctx.Done():
			case <-r.queue.Changed():
			case <-wait.C:
			case <-pausePoll.C:
			case c := <-r.reload:
				r.reload <- c // applied at the top of the loop
			}
			continue
		}
		r.queue.Remove(e.Dir, e.Name)
		c, err := s.Claim(e)
		if err != nil {
			if !errors.Is(err, spool.ErrGone) {
				r.log.Error("claim failed", "file", e.Dir+"/"+e.Name, "err", err)
			}
			continue
		}
		r.run(ctx, c)
	}
	return nil
}

// next picks the next entry: bad input first (it costs the target nothing),
// then by Pick.
func (r *Runner) next(ctx context.Context) (spool.Entry, bool) {
	if e, ok := r.queue.Bad(); ok {
		return e, true
	}
	r.queue.Promote(r.cfg.Now())
	if _, ok := r.queue.TopPriority(); !ok {
		return spool.Entry{}, false
	}
	r.models = nil
	if r.cfg.Policy.Schedule != ScheduleFIFO {
		r.models = r.resident(ctx)
	}
	return Pick(r.queue, r.models, r.cfg.Now(), r.cfg.Policy)
}

// resident asks the target which models are loaded; on error, none.
func (r *Runner) resident(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	models, err := r.cfg.Target.Running(ctx)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(models))
	for _, m := range models {
		names = append(names, m.Name)
	}
	return names
}

// isResident reports whether model is loaded on the target, using what
// next just learned if it asked.
func (r *Runner) isResident(ctx context.Context, model string) bool {
	models := r.models
	r.models = nil
	if models == nil {
		models = r.resident(ctx)
	}
	for _, m := range models {
		if ollama.SameModel(m, model) {
			return true
		}
	}
	return false
}

// run takes one claimed job to its next resting place: done/, deferred/,
// failed/, or (on shutdown) left queued in cur/ for the next start.
func (r *Runner) run(ctx context.Context, c *spool.Claimed) {
	rec := c.Record
	r.cur.job, r.cur.state = c.Job, rec.State
	if rec.State == spool.StateQueued && !c.Recovered {
		r.cur.state = ""
		r.announce(rec) // job.queued: the runner has taken it up
	}
	log := r.log.With("job", rec.ID)
	now := r.cfg.Now()
	switch {
	case c.Canceled || r.cfg.Spool.CancelRequested(rec.ID):
		r.fail(rec, spool.KindCanceled, "canceled before it ran", 0)
		return
	case c.BadInput != nil:
		r.fail(rec, spool.KindBadInput, c.BadInput.Error(), 0)
		return
	case r.batchCanceled(rec.ID, c.Job):
		r.fail(rec, spool.KindCanceled, "the batch was canceled", 0)
		return
	}
	job := c.Job
	fn, err := r.expand(rec, job)
	if err != nil {
		r.fail(rec, spool.KindBadInput, err.Error(), 0)
		return
	}
	maxAttempts := r.cfg.MaxAttempts
	if job.MaxAttempts > 0 {
		maxAttempts = job.MaxAttempts
	}
	if c.Recovered && rec.Attempts >= maxAttempts && rec.State != spool.StateQueued && rec.State != spool.StateDeferred {
		r.fail(rec, spool.KindInterrupted, fmt.Sprintf("hopper stopped while the job was running, and all %d attempts are spent", maxAttempts), 0)
		return
	}
	maxAge := r.cfg.MaxAge
	if job.MaxAge > 0 {
		maxAge = job.MaxAge
	}
	if maxAge > 0 && now.Sub(rec.SubmittedAt) > maxAge {
		r.fail(rec, spool.KindExpired, fmt.Sprintf("the job waited %s, longer than its max_age of %s", now.Sub(rec.SubmittedAt).Round(time.Second), maxAge), 0)
		return
	}
	body, err := job.Request(r.extraFields(job))
	if err != nil {
		r.fail(rec, spool.KindBadInput, err.Error(), 0)
		return
	}
	timeout := r.cfg.Timeout
	if job.Timeout > 0 {
		timeout = job.Timeout
	}
	for outage := 0; ; outage++ {
		res := r.attempt(ctx, rec, job, body, timeout)
		var unavailable *ollama.UnavailableError
		switch {
		case res.err == nil && fn != nil && r.checkAnswer(rec, fn, res.response, maxAttempts):
			return // the answer did not match the function's schema
		case res.err == nil:
			t := r.cfg.Now()
			rec.State, rec.Response, rec.Error, rec.FinishedAt, rec.NotBefore = spool.StateDone, res.response, nil, &t, nil
			r.finish(rec)
			log.Info("done", "model", job.Model, "attempts", rec.Attempts, "took", t.Sub(*rec.StartedAt).Round(time.Millisecond))
			return
		case errors.Is(res.cause, errCanceled):
			r.fail(rec, spool.KindCanceled, "canceled while running", 0)
			return
		case errors.Is(res.cause, errShutdown):
			rec.Attempts-- // not the job's fault
			r.requeue(rec, "hopper shut down while the job was running")
			return
		case errors.Is(res.cause, errTimeout):
			r.fail(rec, spool.KindTimeout, fmt.Sprintf("the job ran longer than its timeout of %s", timeout), 0)
			return
		case errors.As(res.err, &unavailable):
			log.Warn("target unavailable; waiting for it", "err", res.err)
			rec.Attempts-- // not the job's fault
			rec.State, r.cur.state = spool.StateQueued, spool.StateQueued
			if err := r.cfg.Spool.Update(rec); err != nil {
				log.Error("cannot write the record", "err", err)
			}
			if !r.awaitTarget(ctx, rec.ID, outage) {
				if ctx.Err() != nil {
					r.requeue(rec, "hopper shut down while the target was unavailable")
				} else {
					r.fail(rec, spool.KindCanceled, "canceled while waiting for the target", 0)
				}
				return
			}
			continue
		}
		var rejected *ollama.RejectedError
		if errors.As(res.err, &rejected) {
			r.fail(rec, spool.KindTarget, rejected.Message, rejected.Status)
			return
		}
		status := 0
		var failed *ollama.JobFailedError
		if errors.As(res.err, &failed) {
			status = failed.Status
		}
		if rec.Attempts >= maxAttempts {
			r.fail(rec, spool.KindTarget, fmt.Sprintf("%v (after %d attempts)", res.err, rec.Attempts), status)
			return
		}
		r.deferJob(rec, res.err, status)
		return
	}
}

// batchCanceled reports whether a job is a line of a batch that is being
// canceled: the batches goroutine fails the queued ones, but the runner
// may have claimed one first.
func (r *Runner) batchCanceled(id string, job *spool.Job) bool {
	if job == nil || job.Batch == "" {
		return false
	}
	name, _, ok := spool.LineOf(id)
	return ok && name == job.Batch && r.cfg.Spool.BatchCancelRequested(name)
}

// expand turns a function job into the request it stands for: the
// function's expansion of the vars, plus the job's own pass-through fields,
// with the job's settings winning over the function's. It returns the
// function (nil for an ordinary job); an error is bad input.
func (r *Runner) expand(rec *spool.Record, job *spool.Job) (*functions.Function, error) {
	if job.Function == "" {
		return nil, nil
	}
	if r.cfg.Functions == nil {
		return nil, fmt.Errorf("unknown function %q: no functions are defined", job.Function)
	}
	fn, err := r.cfg.Functions.Lookup(job.Function)
	if err != nil {
		return nil, err
	}
	body, endpoint, err := fn.Expand(job.Vars)
	if err != nil {
		return nil, err
	}
	for k, v := range job.Body {
		if _, clash := body[k]; clash {
			return nil, fmt.Errorf("function %q sets %q; a job calling it cannot", fn.Name, k)
		}
		body[k] = v
	}
	job.Body, job.Endpoint, job.Model = body, endpoint, fn.Model
	if job.MaxAttempts == 0 {
		job.MaxAttempts = fn.MaxAttempts
	}
	if job.Timeout == 0 {
		job.Timeout = fn.Timeout
	}
	if job.MaxAge == 0 {
		job.MaxAge = fn.MaxAge
	}
	if job.Webhook == "" {
		job.Webhook = fn.Webhook
	}
	rec.Endpoint, rec.Model, rec.Function, rec.Vars = endpoint, fn.Model, fn.Name, job.Vars
	if rec.Request, err = job.Request(nil); err != nil {
		return nil, err
	}
	return fn, nil
}

// checkAnswer validates a function job's answer against its schema. A
// valid answer's parsed object goes in the record's output and checkAnswer
// returns false; an invalid one costs the attempt (deferred, or failed once
// attempts are spent) and checkAnswer returns true.
func (r *Runner) checkAnswer(rec *spool.Record, fn *functions.Function, response json.RawMessage, maxAttempts int) bool {
	out, err := fn.Check(ollama.AnswerText(response))
	if err == nil {
		rec.Output = out
		return false
	}
	rec.Response = response // keep the answer that failed, to look at
	if rec.Attempts >= maxAttempts {
		r.fail(rec, spool.KindTarget, fmt.Sprintf("%v (after %d attempts)", err, rec.Attempts), 0)
	} else {
		r.deferJob(rec, err, 0)
	}
	return true
}

// extraFields are the request fields hopper sets: stream, and keep_alive
// when the job gives none (or gives a numeric string, which Ollama rejects).
func (r *Runner) extraFields(job *spool.Job) map[string]json.RawMessage {
	extra := map[string]json.RawMessage{}
	if spool.Streams(job.Endpoint) {
		extra["stream"] = json.RawMessage("true")
		if job.Endpoint == "openai.chat" || job.Endpoint == "openai.completions" {
			extra["stream_options"] = json.RawMessage(`{"include_usage":true}`)
		}
	}
	if job.Endpoint == "openai.chat" || job.Endpoint == "openai.completions" || job.Endpoint == "openai.embeddings" {
		return extra // the OpenAI endpoints take no keep_alive
	}
	if raw, ok := job.Body["keep_alive"]; ok {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if ka := ollama.KeepAlive(s); ka != nil {
				extra["keep_alive"] = ka
			}
		}
	} else if ka := ollama.KeepAlive(r.cfg.KeepAlive); ka != nil {
		extra["keep_alive"] = ka
	}
	return extra
}

type result struct {
	response json.RawMessage
	err      error
	cause    error // why the request was aborted, if hopper aborted it
}

// attempt sends the job once, streaming into cur/ID.out. The request runs in
// its own goroutine while this one watches for a cancel request, the
// timeout and shutdown.
func (r *Runner) attempt(ctx context.Context, rec *spool.Record, job *spool.Job, body []byte, timeout time.Duration) result {
	s := r.cfg.Spool
	log := r.log.With("job", rec.ID)
	now := r.cfg.Now()
	rec.Attempts++
	rec.StartedAt, rec.Target, rec.NotBefore = &now, r.cfg.TargetName, nil
	rec.ModelLoaded = !r.isResident(ctx, job.Model)
	rec.State = spool.StateWorking
	if rec.ModelLoaded {
		rec.State = spool.StateLoading
	}
	if err := s.Update(rec); err != nil {
		log.Error("cannot write the record", "err", err)
	}
	r.announce(rec)
	out, err := s.CreateOutput(rec.ID)
	if err != nil {
		return result{err: fmt.Errorf("create output: %w", err)}
	}
	defer out.Close()

	jobCtx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	jobCtx, cancelTimeout := context.WithTimeoutCause(jobCtx, timeout, errTimeout)
	defer cancelTimeout()

	var line bytes.Buffer
	first := true
	onChunk := func(chunk []byte) error {
		if first && rec.State == spool.StateLoading {
			first = false
			rec.State = spool.StateWorking
			if err := s.Update(rec); err != nil {
				log.Warn("cannot write the record", "err", err)
			}
			r.announce(rec)
		}
		line.Reset()
		line.Write(bytes.TrimRight(chunk, "\r\n"))
		line.WriteByte('\n')
		_, err := out.Write(line.Bytes())
		return err
	}
	done := make(chan result, 1)
	go func() {
		resp, err := r.cfg.Target.Do(jobCtx, spool.EndpointPath(job.Endpoint), body, onChunk)
		done <- result{response: resp, err: err}
	}()
	if s.CancelRequested(rec.ID) {
		cancel(errCanceled)
	}
	var grace <-chan time.Time
	stopping := ctx.Done()
	poll := time.NewTicker(cancelPoll)
	defer poll.Stop()
	for {
		select {
		case res := <-done:
			if res.err != nil {
				res.cause = context.Cause(jobCtx)
				if res.cause == context.Canceled {
					res.cause = nil
				}
			}
			return res
		case <-poll.C:
			if s.CancelRequested(rec.ID) && context.Cause(jobCtx) == nil {
				log.Info("cancel requested; aborting the request")
				cancel(errCanceled)
			}
		case <-stopping:
			stopping = nil
			log.Info("shutting down: letting the running job finish", "grace", r.cfg.ShutdownGrace)
			timer := time.NewTimer(r.cfg.ShutdownGrace)
			defer timer.Stop()
			grace = timer.C
		case <-grace:
			log.Warn("shutdown grace is over; aborting the running job and leaving it queued")
			cancel(errShutdown)
		}
	}
}

// awaitTarget probes the target's /api/version with capped exponential
// backoff until it answers. It returns false if ctx ends or the job is
// canceled first.
func (r *Runner) awaitTarget(ctx context.Context, id string, round int) bool {
	delay := r.cfg.OutageBase
	for i := 0; i < round && delay < r.cfg.OutageMax; i++ {
		delay *= 2
	}
	poll := time.NewTicker(cancelPoll)
	defer poll.Stop()
	for {
		delay = min(delay, r.cfg.OutageMax)
		t := time.NewTimer(r.jitter(delay))
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-poll.C:
				if r.cfg.Spool.CancelRequested(id) {
					t.Stop()
					return false
				}
			case <-t.C:
				break wait
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := r.cfg.Target.Version(pctx)
		cancel()
		if err == nil {
			r.log.Info("target is back", "target", r.cfg.TargetName)
			return true
		}
		delay *= 2
	}
}

// jitter spreads d by ±20%.
func (r *Runner) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*r.cfg.Jitter()))
}

// deferJob records a failed attempt and parks the job in deferred/ until
// its backoff has passed.
func (r *Runner) deferJob(rec *spool.Record, cause error, status int) {
	delay := r.cfg.RetryBase
	for i := 1; i < rec.Attempts && delay < r.cfg.RetryMax; i++ {
		delay *= 2
	}
	delay = r.jitter(min(delay, r.cfg.RetryMax))
	nb := r.cfg.Now().Add(delay)
	rec.State, rec.NotBefore = spool.StateDeferred, &nb
	rec.Error = &spool.JobError{Kind: spool.KindTarget, Message: cause.Error(), Status: status}
	r.finish(rec)
	r.log.Warn("attempt failed; deferred", "job", rec.ID, "attempt", rec.Attempts, "retry_in", delay.Round(time.Millisecond), "err", cause)
}

// requeue leaves an aborted job in cur/ as queued, so the next start runs
// it first. The caller has already uncharged the aborted attempt.
func (r *Runner) requeue(rec *spool.Record, why string) {
	rec.State = spool.StateQueued
	if err := r.cfg.Spool.Update(rec); err != nil {
		r.log.Error("cannot write the record", "job", rec.ID, "err", err)
	}
	r.log.Info(why+"; it stays queued", "job", rec.ID)
}

func (r *Runner) fail(rec *spool.Record, kind spool.ErrorKind, msg string, status int) {
	t := r.cfg.Now()
	rec.State, rec.FinishedAt, rec.NotBefore = spool.StateFailed, &t, nil
	rec.Error = &spool.JobError{Kind: kind, Message: msg, Status: status}
	r.finish(rec)
	r.log.Warn("failed", "job", rec.ID, "kind", kind, "err", msg)
}

// finish moves the record to its final place, emitting its event once the
// record is durable and before it moves: a crash in between leaves it in
// cur/, and recovery emits the event again.
func (r *Runner) finish(rec *spool.Record) {
	if err := r.cfg.Spool.FinishAnd(rec, func() { r.announce(rec) }); err != nil {
		r.log.Error("cannot finish the record", "job", rec.ID, "err", err)
		return
	}
	if rec.State.Terminal() {
		r.batches.Ended(rec)
	}
}

// announce emits the event for the record's new state, once it is on disk.
// A failure to record an event is logged; it never changes the job.
func (r *Runner) announce(rec *spool.Record) {
	prev := r.cur.state
	r.cur.state = rec.State
	if r.cfg.Hooks == nil {
		return
	}
	if err := r.cfg.Hooks.EmitJob(rec, prev, r.cur.job); err != nil {
		r.log.Error("cannot record the event", "job", rec.ID, "state", rec.State, "err", err)
	}
}
