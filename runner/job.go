package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/spool"
)

// job is one claimed job on its way to its next resting place: done/,
// deferred/, failed/, back in the queue (its target went away), or (on
// shutdown) left queued in cur/ for the next start. It belongs to the
// goroutine that runs it.
type job struct {
	r   *Runner
	l   *Lane   // nil for bad input, which never reaches a target
	cfg *Config // the settings when it started
	c   *spool.Claimed
	rec *spool.Record
	log *slog.Logger
	// prev is the state last announced for the job.
	prev spool.State
	// key is the load key the lane reserved its slot under.
	key string
	// taken is set once a host of the cluster has taken a relayed job up.
	taken atomic.Bool

	// Set by prepare.
	fn          *functions.Function
	body        []byte
	maxAttempts int
	timeout     time.Duration
}

func (r *Runner) newJob(l *Lane, c *spool.Claimed) *job {
	return &job{r: r, l: l, cfg: r.cfg.Load(), c: c, rec: c.Record, prev: c.Record.State, log: r.log.With("job", c.Record.ID)}
}

// run takes the job through one attempt and to its next resting place,
// then frees its lane's slot.
func (j *job) run(ctx context.Context) {
	defer j.release()
	rec := j.rec
	if rec.State == spool.StateQueued && !j.c.Recovered && !j.c.Resumed {
		j.prev = ""
		j.announce() // job.queued: the runner has taken it up
	}
	if !j.prepare() {
		return
	}
	if j.l == nil { // parsed after all: back in line for a lane
		if err := j.r.spool.Requeue(rec); err != nil {
			j.log.Error("cannot return the job to the queue", "err", err)
		}
		return
	}
	j.outcome(ctx, j.attempt(ctx))
}

// release frees the job's lane slot, if it has one.
func (j *job) release() {
	if j.l == nil {
		return
	}
	j.r.mu.Lock()
	j.l.release()
	j.r.mu.Unlock()
}

// prepare checks everything that can end the job before it is sent: a
// cancel request, bad input, a canceled batch, an unknown function,
// attempts spent at a crash, max_age. It reports whether the job may run;
// if not, it has ended it.
func (j *job) prepare() bool {
	rec, c, cfg := j.rec, j.c, j.cfg
	switch {
	case c.Canceled || j.r.spool.CancelRequested(rec.ID):
		j.fail(spool.KindCanceled, "canceled before it ran", 0)
		return false
	case c.BadInput != nil:
		j.fail(spool.KindBadInput, c.BadInput.Error(), 0)
		return false
	case j.batchCanceled():
		j.fail(spool.KindCanceled, "the batch was canceled", 0)
		return false
	case j.clientGone():
		j.fail(spool.KindCanceled, "the HTTP client that waited for the answer is gone (its front stopped)", 0)
		return false
	}
	job := c.Job
	fn, err := j.expand()
	if err != nil {
		j.fail(spool.KindBadInput, err.Error(), 0)
		return false
	}
	j.fn = fn
	j.maxAttempts = cfg.MaxAttempts
	if job.MaxAttempts > 0 {
		j.maxAttempts = job.MaxAttempts
	}
	if c.Recovered && rec.Attempts >= j.maxAttempts && rec.State != spool.StateQueued && rec.State != spool.StateDeferred {
		j.fail(spool.KindInterrupted, fmt.Sprintf("hopper stopped while the job was running, and all %d attempts are spent", j.maxAttempts), 0)
		return false
	}
	maxAge := cfg.MaxAge
	if job.MaxAge > 0 {
		maxAge = job.MaxAge
	}
	now := cfg.Now()
	if maxAge > 0 && now.Sub(rec.SubmittedAt) > maxAge {
		j.fail(spool.KindExpired, fmt.Sprintf("the job waited %s, longer than its max_age of %s", now.Sub(rec.SubmittedAt).Round(time.Second), maxAge), 0)
		return false
	}
	if j.body, err = job.Request(j.extraFields()); err != nil {
		j.fail(spool.KindBadInput, err.Error(), 0)
		return false
	}
	j.timeout = cfg.Timeout
	if job.Timeout > 0 {
		j.timeout = job.Timeout
	}
	return true
}

// outcome takes the job where the attempt's result sends it.
func (j *job) outcome(ctx context.Context, res result) {
	rec, l := j.rec, j.l
	var unavailable *ollama.UnavailableError
	var rejected *ollama.RejectedError
	var failed *ollama.JobFailedError
	switch {
	case res.err == nil && j.fn != nil && j.checkAnswer(res.response):
		return // the answer did not match the function's schema
	case res.err == nil:
		t := j.cfg.Now()
		rec.State, rec.Response, rec.Error, rec.FinishedAt, rec.NotBefore = spool.StateDone, res.response, nil, &t, nil
		if res.relayed != nil {
			rec.ModelDigest = res.relayed.ModelDigest
		} else {
			rec.ModelDigest = l.digest(context.WithoutCancel(ctx), j.c.Job.Model)
		}
		if !j.finish() {
			return
		}
		j.log.Info("done", "model", j.c.Job.Model, "target", l.cfg.Name, "attempts", rec.Attempts, "took", t.Sub(*rec.StartedAt).Round(time.Millisecond))
		return
	case errors.Is(res.cause, errCanceled):
		j.fail(spool.KindCanceled, "canceled while running", 0)
		return
	case errors.Is(res.cause, errHeld):
		rec.Attempts-- // it never ran
		j.prev = rec.State
		if err := j.r.spool.HoldClaimed(rec); err != nil {
			j.log.Error("cannot hold the job", "err", err)
			return
		}
		j.announce()
		return
	case errors.Is(res.cause, errShutdown):
		rec.Attempts-- // not the job's fault
		j.stayQueued("hopper shut down while the job was running")
		return
	case errors.Is(res.cause, errTargetDown):
		j.targetGone(fmt.Errorf("%w: %v", errTargetDown, res.err))
		return
	case errors.Is(res.cause, errTimeout):
		j.fail(spool.KindTimeout, fmt.Sprintf("the job ran longer than its timeout of %s", j.timeout), 0)
		return
	case errors.As(res.err, &unavailable):
		j.targetGone(res.err)
		return
	case errors.As(res.err, &rejected):
		if rejected.Status == 404 && j.c.Job.Model != "" && l.relayOf() == nil && j.notFoundElsewhere(rejected.Message) {
			rec.Attempts-- // another target may have the model
			j.log.Info("the target lacks the model; another target may have it", "target", l.cfg.Name, "model", j.c.Job.Model)
			j.requeue()
			return
		}
		j.fail(spool.KindTarget, rejected.Message, rejected.Status)
		return
	case errors.As(res.err, &failed) && !l.alive(ctx):
		// The request broke and the target does not answer: it went
		// away, not the job.
		j.targetGone(res.err)
		return
	}
	status := 0
	if failed != nil {
		status = failed.Status
	}
	if rec.Attempts >= j.maxAttempts {
		j.fail(spool.KindTarget, fmt.Sprintf("%v (after %d attempts)", res.err, rec.Attempts), status)
		return
	}
	j.deferJob(res.err, status)
}

// targetGone returns the job to the queue with its attempt uncharged, and
// stops its lane until the target answers again.
func (j *job) targetGone(err error) {
	j.rec.Attempts-- // not the job's fault
	j.r.mu.Lock()
	j.l.down(err)
	j.r.mu.Unlock()
	j.log.Warn("target unavailable; the job goes back in line", "target", j.l.cfg.Name, "err", err)
	j.requeue()
}

// notFoundElsewhere records that the job's target lacks its model and
// reports whether another target may have it.
func (j *job) notFoundElsewhere(message string) bool {
	model := ollama.KeyModel(j.key)
	if model == "" {
		model = ollama.NormalizeModel(j.c.Job.Model)
	}
	j.r.mu.Lock()
	defer j.r.mu.Unlock()
	return j.l.lacks(model, message)
}

// requeue puts the job back in line for any lane — unless a cancel
// request came for it meanwhile, which then wins.
func (j *job) requeue() {
	if j.r.spool.CancelRequested(j.rec.ID) {
		j.rec.Attempts++ // the attempt was made; it was uncharged for the requeue
		j.fail(spool.KindCanceled, "canceled while running", 0)
		return
	}
	j.prev = j.rec.State
	if err := j.r.spool.Requeue(j.rec); err != nil {
		j.log.Error("cannot return the job to the queue", "err", err)
		return
	}
	j.announce()
}

// batchCanceled reports whether the job is a line of a batch that is being
// canceled: the batches goroutine fails the queued ones, but a lane may
// have claimed one first.
func (j *job) batchCanceled() bool {
	job := j.c.Job
	if job == nil || job.Batch == "" {
		return false
	}
	name, _, ok := spool.LineOf(j.rec.ID)
	return ok && name == job.Batch && j.r.batches.st.CancelRequested(name)
}

// clientGone reports whether the job was submitted by a drop-in client
// whose connection died with its front process: an answer would reach
// nobody. A job with an idempotency key or a webhook is still wanted.
func (j *job) clientGone() bool {
	job := j.c.Job
	return job != nil && job.Waited != "" && job.IdempotencyKey == "" && job.Webhook == "" && !j.r.spool.FrontAlive(job.Waited)
}

// expand turns a function job into the request it stands for: the
// function's expansion of the vars, plus the job's own pass-through fields,
// with the job's settings winning over the function's. It returns the
// function (nil for an ordinary job); an error is bad input.
func (j *job) expand() (*functions.Function, error) {
	rec, job := j.rec, j.c.Job
	if job.Function == "" {
		return nil, nil
	}
	if j.cfg.Functions == nil {
		return nil, fmt.Errorf("unknown function %q: no functions are defined", job.Function)
	}
	fn, err := j.cfg.Functions.Lookup(job.Function)
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
	job.Body, job.Endpoint, job.Model = body, spool.Endpoint(endpoint), fn.Model
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
	rec.Endpoint, rec.Model, rec.Function, rec.Vars = job.Endpoint, fn.Model, fn.Name, job.Vars
	if rec.Request, err = job.Request(nil); err != nil {
		return nil, err
	}
	return fn, nil
}

// checkAnswer validates a function job's answer against its schema. A
// valid answer's parsed object goes in the record's output and checkAnswer
// returns false; an invalid one costs the attempt (deferred, or failed once
// attempts are spent) and checkAnswer returns true.
func (j *job) checkAnswer(response json.RawMessage) bool {
	rec := j.rec
	out, err := j.fn.Check(ollama.AnswerText(response))
	if err == nil {
		rec.Output = out
		return false
	}
	rec.Response = response // keep the answer that failed, to look at
	if rec.Attempts >= j.maxAttempts {
		j.fail(spool.KindTarget, fmt.Sprintf("%v (after %d attempts)", err, rec.Attempts), 0)
	} else {
		j.deferJob(err, 0)
	}
	return true
}

// extraFields are the request fields hopper sets: stream, and keep_alive
// when the job gives none (or gives a numeric string, which Ollama rejects).
func (j *job) extraFields() map[string]json.RawMessage {
	endpoint := j.c.Job.Endpoint
	extra := map[string]json.RawMessage{}
	if endpoint.Streams() {
		extra["stream"] = json.RawMessage("true")
		if endpoint.OpenAI() {
			extra["stream_options"] = json.RawMessage(`{"include_usage":true}`)
		}
	}
	if endpoint.OpenAI() {
		return extra // Ollama's OpenAI layer drops keep_alive: see keepLoaded
	}
	if ka, set := j.keepAlive(); set {
		extra["keep_alive"] = ka
	}
	return extra
}

// keepAlive is the keep_alive the job's model should get, as Ollama takes
// it, and whether hopper sets it in the request: the job's own — a string
// as ollama.KeepAlive converts it (set), any other value as given (not
// set: it reaches the target in the body) — else the configured one (set).
// It is nil when there is none to give.
func (j *job) keepAlive() (json.RawMessage, bool) {
	if raw, ok := j.c.Job.Body["keep_alive"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return raw, false
		}
		ka := ollama.KeepAlive(s)
		return ka, ka != nil
	}
	ka := ollama.KeepAlive(j.cfg.KeepAlive)
	return ka, ka != nil
}

// keepLoadedTimeout bounds keepLoaded's request: it loads nothing, so
// Ollama answers at once unless it is stuck.
const keepLoadedTimeout = 30 * time.Second

// keepLoaded gives the job's model its keep_alive after an OpenAI-style
// request loaded it. Ollama's OpenAI layer builds the native request
// without one (openai.FromChatRequest, FromCompleteRequest and the
// embeddings middleware set no KeepAlive), so the model would go after
// OLLAMA_KEEP_ALIVE (5m) whatever the job or the configuration says.
// Hopper sends the native endpoint behind it the request Ollama reads as
// "load only" — the model and keep_alive, with no messages, prompt or
// input — which finds the model resident, generates nothing and sets its
// keep_alive. Later requests that give none leave it as it is (Ollama's
// Scheduler.useLoadedRunner), so once per load is enough. A failure is
// logged: the job's answer stands.
func (j *job) keepLoaded(ctx context.Context) {
	endpoint := j.c.Job.Endpoint
	ka, _ := j.keepAlive()
	if !endpoint.OpenAI() || ka == nil {
		return
	}
	body, err := jsonfmt.Marshal(map[string]any{"model": j.c.Job.Model, "keep_alive": ka})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, keepLoadedTimeout)
	defer cancel()
	if _, err := j.l.cfg.Target.Do(ctx, endpoint.Native().Path(), body, nil); err != nil {
		j.log.Warn("cannot set the model's keep_alive after an OpenAI-style request", "model", j.c.Job.Model, "target", j.l.cfg.Name, "err", err)
	}
}

type result struct {
	relayed  *RelayResult // where a relayed job ran
	response json.RawMessage
	err      error
	cause    error // why the request was aborted, if hopper aborted it
}

// attempt sends the job once to its lane's target, streaming into
// cur/ID.out. The request runs in its own goroutine while this one watches
// for a cancel request, the timeout and shutdown.
func (j *job) attempt(ctx context.Context) result {
	s, rec, l := j.r.spool, j.rec, j.l
	now := j.cfg.Now()
	rec.Attempts++
	rec.StartedAt, rec.Target, rec.NotBefore, rec.ModelDigest, rec.Node = &now, l.cfg.Name, nil, "", ""
	relay := l.relayOf()
	if relay == nil {
		j.r.mu.Lock()
		rec.ModelLoaded = l.startLoad(j.key)
		j.r.mu.Unlock()
	} else {
		rec.ModelLoaded = false
	}
	rec.State = spool.StateWorking
	if relay != nil {
		// Handed on: queued until a host takes it up (onStart).
		rec.State, rec.Target = spool.StateQueued, ""
		if err := s.Update(rec); err != nil {
			j.log.Error("cannot write the record", "err", err)
		}
	} else if rec.ModelLoaded {
		// A load is worth saying in the record: loading, until the first
		// byte. Otherwise cur/ID.out, made next, marks the attempt as
		// begun (spool.AttemptMarked): one file fewer on the hot path.
		rec.State = spool.StateLoading
		if err := s.Update(rec); err != nil {
			j.log.Error("cannot write the record", "err", err)
		}
	}
	j.announce()
	// cur/ID.out marks the attempt as begun (spool.AttemptMarked): a relayed
	// job makes it when a host takes it up, so a crash before that charges
	// no attempt.
	var out *os.File
	openOutput := func() error {
		if out != nil {
			return nil
		}
		f, err := s.CreateOutput(rec.ID)
		if err != nil {
			return fmt.Errorf("create output: %w", err)
		}
		out = f
		return nil
	}
	if relay == nil {
		if err := openOutput(); err != nil {
			return result{err: err}
		}
	}
	defer func() {
		if out != nil {
			out.Close()
		}
	}()

	jobCtx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	jobCtx, cancelTimeout := context.WithTimeoutCause(jobCtx, j.timeout, errTimeout)
	defer cancelTimeout()
	j.r.mu.Lock()
	if !l.up {
		cancel(errTargetDown) // it went down since the job was given it
	}
	l.running[j] = cancel
	j.r.mu.Unlock()
	defer func() {
		j.r.mu.Lock()
		delete(l.running, j)
		j.r.mu.Unlock()
	}()

	var line bytes.Buffer
	var firstAt time.Time
	onChunk := func(chunk []byte) error {
		if firstAt.IsZero() {
			firstAt = time.Now()
			if rec.State == spool.StateLoading {
				rec.State = spool.StateWorking
				if err := s.Update(rec); err != nil {
					j.log.Warn("cannot write the record", "err", err)
				}
				j.announce()
			}
		}
		line.Reset()
		line.Write(bytes.TrimRight(chunk, "\r\n"))
		line.WriteByte('\n')
		if err := openOutput(); err != nil {
			return err
		}
		_, err := out.Write(line.Bytes())
		return err
	}
	started := time.Now()
	done := make(chan result, 1)
	go func() {
		if relay != nil {
			done <- j.relay(jobCtx, relay, openOutput, onChunk)
			return
		}
		resp, err := l.cfg.Target.Do(jobCtx, j.c.Job.Endpoint.Path(), j.body, onChunk)
		done <- result{response: resp, err: err}
	}()
	// A cancel request that came since prepare looked is seen by the poll.
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
			} else if rec.ModelLoaded && relay == nil {
				j.loaded(ctx, res.response, started, firstAt)
			}
			return res
		case <-poll.C:
			if s.CancelRequested(rec.ID) && context.Cause(jobCtx) == nil {
				j.log.Info("cancel requested; aborting the request")
				cancel(errCanceled)
			}
			if relay != nil && !j.taken.Load() && s.HoldRequested(rec.ID) && context.Cause(jobCtx) == nil {
				j.log.Info("hold requested; taking the job back from the cluster")
				cancel(errHeld)
			}
		case <-stopping:
			stopping = nil
			j.log.Info("shutting down: letting the running job finish", "grace", j.cfg.ShutdownGrace)
			timer := time.NewTimer(j.cfg.ShutdownGrace)
			defer timer.Stop()
			grace = timer.C
		case <-grace:
			j.log.Warn("shutdown grace is over; aborting the running job and leaving it queued")
			cancel(errShutdown)
		}
	}
}

// loaded counts the time the job's model took to load (Ollama's
// load_duration, else the wait for the first byte), gives the model its
// keep_alive if the job's request could not (keepLoaded), and asks the
// target what it loaded, for the digest: once per load, never once per
// job.
func (j *job) loaded(ctx context.Context, response json.RawMessage, started, firstAt time.Time) {
	var took time.Duration
	var d struct {
		LoadDuration int64 `json:"load_duration"`
	}
	if json.Unmarshal(response, &d) == nil && d.LoadDuration > 0 {
		took = time.Duration(d.LoadDuration)
	} else if !firstAt.IsZero() {
		took = firstAt.Sub(started)
	}
	j.r.mu.Lock()
	j.l.stats.LoadTime += took
	j.r.mu.Unlock()
	j.keepLoaded(ctx)
	j.l.refresh(ctx)
}

// deferJob records a failed attempt and parks the job in deferred/ until
// its backoff has passed.
func (j *job) deferJob(cause error, status int) {
	rec, cfg := j.rec, j.cfg
	delay := cfg.RetryBase
	for i := 1; i < rec.Attempts && delay < cfg.RetryMax; i++ {
		delay *= 2
	}
	delay = jitter(cfg, min(delay, cfg.RetryMax))
	nb := cfg.Now().Add(delay)
	rec.State, rec.NotBefore = spool.StateDeferred, &nb
	rec.Error = &spool.JobError{Kind: spool.KindTarget, Message: cause.Error(), Status: status}
	j.finish()
	j.log.Warn("attempt failed; deferred", "attempt", rec.Attempts, "retry_in", delay.Round(time.Millisecond), "err", cause)
}

// stayQueued leaves an aborted job in cur/ as queued, so the next start
// runs it first. The caller has already uncharged the aborted attempt.
func (j *job) stayQueued(why string) {
	j.rec.State = spool.StateQueued
	if err := j.r.spool.Update(j.rec); err != nil {
		j.log.Error("cannot write the record", "err", err)
	}
	j.r.spool.DropOutput(j.rec.ID) // the attempt is over and uncharged
	j.log.Info(why + "; it stays queued")
}

func (j *job) fail(kind spool.ErrorKind, msg string, status int) {
	rec := j.rec
	t := j.cfg.Now()
	rec.State, rec.FinishedAt, rec.NotBefore = spool.StateFailed, &t, nil
	rec.Error = &spool.JobError{Kind: kind, Message: msg, Status: status}
	if j.finish() {
		j.log.Warn("failed", "kind", kind, "err", msg)
	}
}

// finish moves the record to its final place, emitting its event once the
// record is durable and before it moves: a crash in between leaves it in
// cur/, and recovery emits the event again.
//
// A record that cannot be written (the disk is full) is tried again, with
// backoff, until it can: the answer is in hand, and the job is neither
// reported done early nor run again. Meanwhile `hopper status` says so.
// finish reports whether the record landed; false only when hopper stops
// first (the job then runs again, or is moved on, at the next start).
func (j *job) finish() bool {
	rec := j.rec
	delay := time.Second
	for try := 0; ; try++ {
		err := j.r.spool.FinishAnd(rec, j.announce)
		if err == nil {
			if try > 0 {
				j.r.problem.Store(nil)
				j.r.dirty.Store(true)
				j.log.Info("the record is written at last", "state", rec.State, "tries", try+1)
			}
			break
		}
		if try == 0 {
			j.log.Error("cannot write the record; trying again until it can be written", "state", rec.State, "err", err)
		}
		msg := fmt.Sprintf("cannot write the record of %s (%s): %v; hopper tries again every %s", rec.ID, rec.State, err, delay)
		j.r.problem.Store(&msg)
		j.r.dirty.Store(true)
		t := time.NewTimer(delay)
		select {
		case <-j.r.runCtx.Done():
			t.Stop()
			j.log.Error("hopper stops before the record could be written; the next start takes the job up again", "err", err)
			return false
		case <-t.C:
		}
		delay = min(2*delay, 30*time.Second)
	}
	if j.l != nil && rec.State.Terminal() {
		j.r.mu.Lock()
		if rec.State == spool.StateDone {
			j.l.stats.Done++
			j.l.outages = 0
		} else {
			j.l.stats.Failed++
		}
		j.r.dirty.Store(true)
		j.r.mu.Unlock()
	}
	if rec.State.Terminal() {
		j.r.batches.Ended(rec)
	}
	return true
}

// announce emits the event for the record's new state, once it is on disk.
// A failure to record an event is logged; it never changes the job.
func (j *job) announce() {
	rec := j.rec
	prev := j.prev
	j.prev = rec.State
	if j.cfg.Hooks == nil {
		return
	}
	var job *spool.Job
	if j.c != nil {
		job = j.c.Job
	}
	if err := j.cfg.Hooks.EmitJob(rec, prev, job); err != nil {
		j.log.Error("cannot record the event", "state", rec.State, "err", err)
	}
}

// relay hands the attempt on to relay and waits for its answer. The record
// says queued until a host takes the job up, then where it runs.
func (j *job) relay(ctx context.Context, relay Relay, openOutput func() error, onChunk func([]byte) error) result {
	rec := j.rec
	req := RelayRequest{ID: rec.ID, Round: len(rec.History), Attempt: rec.Attempts, Priority: rec.Priority, Key: j.key,
		Path: j.c.Job.Endpoint.Path(), Body: j.body}
	onStart := func(w Where) {
		j.taken.Store(true)
		if err := openOutput(); err != nil {
			j.log.Warn("cannot make the output file", "err", err)
		}
		now := j.cfg.Now()
		rec.Node, rec.Target, rec.State, rec.StartedAt = w.Node, w.Target, spool.StateWorking, &now
		if err := j.r.spool.Update(rec); err != nil {
			j.log.Warn("cannot write the record", "err", err)
		}
		j.announce()
	}
	res, err := relay.Relay(ctx, req, onStart, onChunk)
	if res.Node != "" {
		rec.Node, rec.Target, rec.ModelLoaded = res.Node, res.Target, res.ModelLoaded
	}
	rec.Attempts = max(rec.Attempts+res.Lost, 1)
	return result{response: res.Response, err: err, relayed: &res}
}
