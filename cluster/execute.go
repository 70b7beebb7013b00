package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// ExecConfig is what Execute runs jobs with: this host's targets, each a
// lane with its slots, and the scheduling policy every host shares.
type ExecConfig struct {
	Targets []runner.TargetConfig
	Policy  runner.Policy
	// AckWait is how long a job taken by a host that went silent stays
	// its before the stream gives it to another; default 30s. A running
	// job is kept alive with progress acks every third of it.
	AckWait time.Duration
	// Grace is how long a running job may finish once Execute's context
	// ends; then it goes back to the stream for another host. Default 30s.
	Grace  time.Duration
	Logger *slog.Logger
}

// DefaultAckWait is ExecConfig.AckWait's default.
const DefaultAckWait = 30 * time.Second

// executor takes jobs from the stream for this host's targets.
type executor struct {
	n     *Node
	cfg   ExecConfig
	log   *slog.Logger
	lanes []*lane
	wake  chan struct{}
	jobs  sync.WaitGroup

	mu        sync.Mutex // guards every lane's state, consumers and running
	consumers map[string]jetstream.Consumer
	running   map[string]context.CancelCauseFunc // by answer key
}

// lane is one target of this host as the executor drives it.
type lane struct {
	cfg      runner.TargetConfig
	up       bool
	probing  bool
	inflight int
	key      string
	resident map[string]string // normalized model → its load key
	digests  map[string]string
	// installed are the models the target has; nil when not known.
	installed []string
	lastError string
}

func (l *lane) state() runner.LaneState {
	st := runner.LaneState{Name: l.cfg.Name, Up: l.up, Slots: l.cfg.Parallel, InFlight: l.inflight, Key: l.key,
		Installed: l.installed, Models: l.cfg.Models}
	for _, k := range l.resident {
		st.Resident = append(st.Resident, k)
	}
	return st
}

// errOriginCanceled aborts an attempt the origin canceled (or gave up on);
// errExecutorStop one still running when this host's grace is over.
var (
	errOriginCanceled = errors.New("the origin host canceled the job")
	errExecutorStop   = errors.New("this host is stopping")
)

// Execute runs jobs from the stream on cfg's targets until ctx ends, with
// the rules one host's runner follows (runner.Pick over the stream's
// backlog by priority and load key), then lets the running ones finish
// within cfg.Grace and returns. Jobs it could not finish go back to the
// stream.
func (n *Node) Execute(ctx context.Context, cfg ExecConfig) error {
	if len(cfg.Targets) == 0 {
		return errors.New("cluster: this host has no target to run jobs on")
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = n.log
	}
	e := &executor{n: n, cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1),
		consumers: map[string]jetstream.Consumer{}, running: map[string]context.CancelCauseFunc{}}
	for _, t := range cfg.Targets {
		t.Parallel = max(t.Parallel, 1)
		e.lanes = append(e.lanes, &lane{cfg: t, up: true, resident: map[string]string{}, digests: map[string]string{}})
	}
	// A publish wakes the executors at once; the stream keeps the job.
	newJob, err := n.nc.Subscribe(subjectRoot+".>", func(*nats.Msg) { e.signal() })
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	defer func() { _ = newJob.Unsubscribe() }()
	cancels, err := n.nc.Subscribe(cancelRoot+".>", func(m *nats.Msg) {
		key := m.Subject[len(cancelRoot)+1:]
		e.mu.Lock()
		abort := e.running[key]
		e.mu.Unlock()
		if abort != nil {
			abort(errOriginCanceled)
		}
	})
	if err != nil {
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	defer func() { _ = cancels.Unsubscribe() }()

	for _, l := range e.lanes {
		e.refresh(ctx, l)
	}
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	refresh := time.NewTicker(30 * time.Second)
	defer refresh.Stop()
	for ctx.Err() == nil {
		if e.fill(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
		case <-e.wake:
		case <-poll.C:
		case <-refresh.C:
			for _, l := range e.lanes {
				e.refresh(ctx, l)
			}
		}
	}
	e.jobs.Wait()
	return nil
}

func (e *executor) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// fill gives every lane with a free slot the job Pick chooses for it from
// the stream's backlog; it reports whether it took any.
func (e *executor) fill(ctx context.Context) bool {
	depth, err := e.n.Depth(ctx)
	if err != nil || len(depth) == 0 {
		return false
	}
	view := newDepthView(depth)
	took := false
	for i, l := range e.lanes {
		for ctx.Err() == nil {
			e.mu.Lock()
			states := make([]runner.LaneState, len(e.lanes))
			for j, o := range e.lanes {
				states[j] = o.state()
			}
			entry, ok := runner.Pick(view, states, i, time.Now(), e.cfg.Policy)
			e.mu.Unlock()
			if !ok {
				break
			}
			view.take(entry)
			msg := e.next(ctx, entry.Name)
			if msg == nil {
				continue // another host took it first
			}
			e.mu.Lock()
			l.inflight++
			l.key = entry.Key
			e.mu.Unlock()
			took = true
			e.jobs.Go(func() { e.run(ctx, l, msg, entry.Key) })
		}
	}
	return took
}

// next takes the next message of subject from its consumer, or nil when
// there is none now.
func (e *executor) next(ctx context.Context, subject string) jetstream.Msg {
	e.mu.Lock()
	c := e.consumers[subject]
	e.mu.Unlock()
	if c == nil {
		sum := sha256.Sum256([]byte(subject))
		cctx, cancel := call(ctx)
		var err error
		c, err = e.n.js.CreateOrUpdateConsumer(cctx, StreamName, jetstream.ConsumerConfig{
			Durable:           "hopper-" + hex.EncodeToString(sum[:12]),
			Description:       subject,
			FilterSubject:     subject,
			AckPolicy:         jetstream.AckExplicitPolicy,
			AckWait:           e.cfg.AckWait,
			MaxDeliver:        -1,
			MaxAckPending:     -1,
			InactiveThreshold: 24 * time.Hour,
		})
		cancel()
		if err != nil {
			e.log.Warn("cluster: cannot take jobs of a key", "subject", subject, "err", noQuorum(err))
			return nil
		}
		e.mu.Lock()
		e.consumers[subject] = c
		e.mu.Unlock()
	}
	if ctx.Err() != nil {
		return nil
	}
	// The backlog counts messages other hosts are running: do not wait
	// for one of those.
	batch, err := c.FetchNoWait(1)
	if err != nil {
		return nil
	}
	for msg := range batch.Messages() {
		return msg
	}
	return nil
}

// run runs one attempt on l's target: it tells the origin where, relays
// the output, keeps the message alive, and puts the answer in the bucket
// before it acks. A target that went away hands the job back at once.
func (e *executor) run(ctx context.Context, l *lane, msg jetstream.Msg, key string) {
	defer func() {
		e.mu.Lock()
		l.inflight--
		e.mu.Unlock()
		e.signal()
	}()
	n := e.n
	akey := msg.Headers().Get(jetstream.MsgIDHeader)
	var req request
	if err := json.Unmarshal(msg.Data(), &req); err != nil || akey == "" {
		e.log.Error("cluster: a message that is not a job; dropped", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("not a hopper job")
		return
	}
	_, kv, err := n.handles()
	if err != nil {
		_ = msg.Nak()
		return
	}
	// Registered before the bucket is asked, so a cancel that comes after
	// the answer is looked for is not missed. A stopping host lets the job
	// run for its grace, then hands it back.
	jobCtx, abort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abort(nil)
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(e.cfg.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			abort(errExecutorStop)
		case <-jobCtx.Done():
		}
	})
	defer stop()
	live := ctx                      // ends when this host stops
	ctx = context.WithoutCancel(ctx) // what follows ends the job, stopping or not
	e.mu.Lock()
	e.running[akey] = abort
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, akey)
		e.mu.Unlock()
	}()
	cctx, cancel := call(ctx)
	_, err = kv.Get(cctx, akey)
	cancel()
	switch {
	case err == nil:
		_ = msg.Ack() // answered already, or superseded by a later attempt
		return
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		_ = msg.NakWithDelay(time.Second) // the bucket does not answer: later
		return
	}
	log := e.log.With("job", req.ID, "origin", msg.Headers().Get(HeaderOrigin), "target", l.cfg.Name)

	e.mu.Lock()
	loaded := ollama.KeyModel(key) != "" && l.resident[ollama.KeyModel(key)] != key
	e.mu.Unlock()
	alive := make(chan struct{})
	defer close(alive)
	go func() {
		t := time.NewTicker(e.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-alive:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()

	reply := msg.Headers().Get(headerReply)
	send := func(event string, data []byte) {
		if reply == "" {
			return
		}
		m := nats.NewMsg(reply)
		m.Header.Set(headerEvent, event)
		m.Data = data
		_ = n.nc.PublishMsg(m)
	}
	where, _ := json.Marshal(runner.Where{Node: n.name, Target: l.cfg.Name})
	send(eventStart, where)
	log.Info("cluster: running a job", "attempt", req.Attempt)
	resp, err := l.cfg.Target.Do(jobCtx, req.Path, req.Body, func(chunk []byte) error {
		send(eventChunk, chunk)
		return nil
	})
	send(eventEnd, nil)

	cause := context.Cause(jobCtx)
	var unavailable *ollama.UnavailableError
	var failed *ollama.JobFailedError
	switch {
	case errors.Is(cause, errOriginCanceled):
		_ = msg.Ack() // nobody waits for it
		return
	case errors.Is(cause, errExecutorStop):
		_ = msg.Nak() // this host stops: another runs it
		return
	case errors.As(err, &unavailable) || errors.As(err, &failed) && !e.alive(ctx, l):
		e.down(live, l, err)
		_ = msg.NakWithDelay(time.Second) // back in line for a host whose target is up
		return
	}
	a := answer{Response: resp, Error: toWire(err), Node: n.name, Target: l.cfg.Name, ModelLoaded: loaded, Attempt: req.Attempt}
	if loaded {
		e.mu.Lock()
		l.resident[ollama.KeyModel(key)] = key
		e.mu.Unlock()
		e.refresh(live, l)
	}
	e.mu.Lock()
	a.ModelDigest = l.digests[ollama.NormalizeModel(ollama.KeyModel(key))]
	e.mu.Unlock()
	data, _ := json.Marshal(a)
	for try := 0; ; try++ {
		cctx, cancel := call(ctx)
		_, err = kv.Put(cctx, akey, data)
		cancel()
		if err == nil {
			break
		}
		if try == 0 {
			log.Warn("cluster: cannot record the answer; trying again", "err", noQuorum(err))
		}
		if !wait(live, time.Second) {
			_ = msg.Nak() // stopping without quorum: another host runs it again
			return
		}
	}
	cctx, cancel = call(ctx)
	defer cancel()
	if err := msg.DoubleAck(cctx); err != nil {
		log.Warn("cluster: the ack was not confirmed; the answer is recorded, so a second run is skipped", "err", err)
	}
}

// alive asks l's target for its version once, briefly.
func (e *executor) alive(ctx context.Context, l *lane) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	_, err := l.cfg.Target.Version(ctx)
	return err == nil
}

// down takes l out until its target answers again.
func (e *executor) down(ctx context.Context, l *lane, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	l.lastError = err.Error()
	if !l.up {
		return
	}
	l.up = false
	e.log.Warn("cluster: target unavailable; it takes no jobs until it answers", "target", l.cfg.Name, "err", err)
	if l.probing {
		return
	}
	l.probing = true
	e.jobs.Go(func() {
		delay := 500 * time.Millisecond
		for wait(ctx, delay) {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := l.cfg.Target.Version(pctx)
			cancel()
			if err == nil {
				e.mu.Lock()
				l.up, l.probing, l.lastError = true, false, ""
				e.mu.Unlock()
				e.log.Info("cluster: target is back", "target", l.cfg.Name)
				e.signal()
				return
			}
			delay = min(2*delay, 30*time.Second)
		}
		e.mu.Lock()
		l.probing = false
		e.mu.Unlock()
	})
}

// refresh asks l's target what it has loaded and installed.
func (e *executor) refresh(ctx context.Context, l *lane) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	running, err := l.cfg.Target.Running(ctx)
	if err != nil {
		var unavailable *ollama.UnavailableError
		if errors.As(err, &unavailable) {
			e.down(ctx, l, err)
		}
		return
	}
	var installed []string
	known := false
	if t, ok := l.cfg.Target.(interface {
		Tags(context.Context) ([]ollama.Model, error)
	}); ok {
		if tags, err := t.Tags(ctx); err == nil {
			known = true
			for _, m := range tags {
				installed = append(installed, ollama.NormalizeModel(m.Name))
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[string]bool{}
	for _, m := range running {
		model := ollama.NormalizeModel(m.Name)
		seen[model] = true
		if _, ok := l.resident[model]; !ok {
			l.resident[model] = model
		}
		l.digests[model] = m.Digest
	}
	for model := range l.resident {
		if !seen[model] && !(l.inflight > 0 && ollama.KeyModel(l.key) == model) {
			delete(l.resident, model)
		}
	}
	if known {
		l.installed = installed
	}
}

// depthView is the stream's backlog as runner.Pick reads a queue: an
// entry's Name is its subject.
type depthView struct {
	prios []int
	keys  map[int][]spool.KeyBacklog
}

func newDepthView(depth []Backlog) *depthView {
	v := &depthView{keys: map[int][]spool.KeyBacklog{}}
	for _, b := range depth {
		if _, ok := v.keys[b.Priority]; !ok {
			v.prios = append(v.prios, b.Priority)
		}
		v.keys[b.Priority] = append(v.keys[b.Priority], spool.KeyBacklog{
			Key:   b.Key,
			Count: b.Count,
			Oldest: spool.Entry{Name: Subject(b.Priority, b.Key), Model: ollama.KeyModel(b.Key), Priority: b.Priority,
				Key: b.Key, Arrived: b.Oldest},
		})
	}
	slices.SortFunc(v.prios, func(a, b int) int { return b - a })
	return v
}

func (v *depthView) Priorities() []int             { return v.prios }
func (v *depthView) Keys(p int) []spool.KeyBacklog { return v.keys[p] }
func (v *depthView) take(e spool.Entry)            { v.remove(e.Priority, e.Key) }
func (v *depthView) remove(p int, key string) {
	ks := v.keys[p]
	for i := range ks {
		if ks[i].Key != key {
			continue
		}
		ks[i].Count--
		if ks[i].Count <= 0 {
			v.keys[p] = slices.Delete(ks, i, i+1)
		}
		return
	}
}
