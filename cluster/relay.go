package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/runner"
)

// Relay is the origin host's side of the cluster: a runner.Relay, the one
// Target of the origin's runner. Each attempt of a job is published to the
// stream; the host that takes it says where it runs, streams its output
// back and puts its answer in the bucket, which Relay hands to the runner
// as its own target's. The runner keeps doing the rest on the origin:
// records, hooks, retries, cancel, batches.
type Relay struct{ n *Node }

var _ runner.Relay = (*Relay)(nil)

// Relay returns the node's Relay.
func (n *Node) Relay() *Relay { return &Relay{n: n} }

// Version answers while the cluster has quorum; otherwise it fails as an
// unavailable target, so the runner's lane stops claiming jobs (they stay
// in new/) and probes until quorum is back.
func (r *Relay) Version(ctx context.Context) (string, error) {
	stream, _, err := r.n.handles()
	if err == nil {
		cctx, cancel := call(ctx)
		_, err = stream.Info(cctx)
		cancel()
	}
	if err != nil {
		return "", &ollama.UnavailableError{Err: noQuorum(err)}
	}
	return "hopper cluster " + r.n.cfg.Name, nil
}

// Running lists no models: the hosts that run the jobs choose by what
// their targets have loaded.
func (r *Relay) Running(context.Context) ([]ollama.RunningModel, error) { return nil, nil }

// Do runs one request somewhere in the cluster, outside any job.
func (r *Relay) Do(ctx context.Context, path string, body []byte, onChunk func([]byte) error) (json.RawMessage, error) {
	res, err := r.Relay(ctx, runner.RelayRequest{ID: "adhoc-" + nuid.Next(), Attempt: 1, Path: path, Body: body}, nil, onChunk)
	return res.Response, err
}

// endWait bounds how long an answer waits for the last streamed chunks
// (they travel apart from it); answerPoll is how often a waiting attempt
// asks the bucket besides watching it.
const (
	endWait    = 2 * time.Second
	answerPoll = 10 * time.Second
)

// Relay publishes one attempt and waits for its answer. Earlier attempts
// of the job (the origin stopped while they were out) are settled first:
// one answered well is the job's answer, the others are superseded.
func (r *Relay) Relay(ctx context.Context, req runner.RelayRequest, onStart func(runner.Where), onChunk func([]byte) error) (runner.RelayResult, error) {
	n := r.n
	_, kv, err := n.handles()
	if err != nil {
		return runner.RelayResult{}, &ollama.UnavailableError{Err: err}
	}
	key := answerKey(n.name, req.ID, req.Attempt)
	// An earlier attempt that runs after all (it was under way when it
	// was superseded) answers for this one too.
	keys := make([]string, req.Attempt)
	for k := range keys {
		keys[k] = answerKey(n.name, req.ID, k+1)
	}
	answers, done := n.answers.await(keys...)
	defer done()
	if res, ok, err := r.earlier(ctx, kv, req); err != nil || ok {
		return res, err
	}
	events := make(chan *nats.Msg, 4096)
	inbox := n.nc.NewRespInbox()
	sub, err := n.nc.ChanSubscribe(inbox, events)
	if err != nil {
		return runner.RelayResult{}, &ollama.UnavailableError{Err: err}
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.publish(ctx, req, key, inbox); err != nil {
		return runner.RelayResult{}, err
	}
	// An answer put before this host watched (it restarted) is in the
	// bucket already.
	if a, ok := r.get(ctx, kv, key); ok {
		return a.result(0), a.err()
	}

	var (
		got    *answer
		ended  bool
		linger <-chan time.Time
	)
	// The watch may miss an answer while it starts again after a failure:
	// now and then the bucket is asked.
	poll := time.NewTicker(answerPoll)
	defer poll.Stop()
	event := func(m *nats.Msg) {
		switch m.Header.Get(headerEvent) {
		case eventStart:
			var w runner.Where
			if json.Unmarshal(m.Data, &w) == nil && onStart != nil {
				onStart(w)
			}
		case eventChunk:
			if onChunk != nil {
				_ = onChunk(m.Data)
			}
		case eventEnd:
			ended = true
		}
	}
	for got == nil || !ended {
		select {
		case m := <-events:
			event(m)
		case ka := <-answers:
			a := ka.answer
			if a.Superseded {
				if ka.key != key {
					continue // the tombstone this call wrote
				}
				return runner.RelayResult{}, errors.New("a later attempt of the job superseded this one")
			}
			if ka.key != key {
				// An earlier attempt answered: this one need not run.
				r.supersede(ctx, kv, key)
				n.log.Debug("cluster: an earlier attempt answered", "job", req.ID, "key", ka.key)
				res := a.result(req.Attempt - ka.attempt)
				return res, a.err()
			}
			got = &a
			n.log.Debug("cluster: answer in", "job", req.ID, "key", key, "node", a.Node, "ended", ended)
			t := time.NewTimer(endWait)
			defer t.Stop()
			linger = t.C
		case <-poll.C:
			if a, ok := r.get(ctx, kv, key); ok && got == nil {
				got, ended = a, true // its chunks are long gone
			}
		case <-linger:
			ended = true // the last chunks were lost; the answer has it all
		case <-ctx.Done():
			_ = n.nc.Publish(cancelRoot+"."+key, nil)
			return runner.RelayResult{}, ctx.Err()
		}
	}
	for len(events) > 0 {
		event(<-events)
	}
	return got.result(0), got.err()
}

// publish puts the attempt in the stream, trying again (the same message
// id, so the stream keeps one) while the stream elects a leader; a cluster
// that cannot take it within a minute is unavailable.
func (r *Relay) publish(ctx context.Context, req runner.RelayRequest, key, inbox string) error {
	n := r.n
	body, err := json.Marshal(request{ID: req.ID, Attempt: req.Attempt, Path: req.Path, Body: req.Body})
	if err != nil {
		return err
	}
	m := nats.NewMsg(Subject(req.Priority, req.Key))
	m.Header.Set(HeaderOrigin, n.name)
	m.Header.Set(HeaderID, req.ID)
	m.Header.Set(headerReply, inbox)
	m.Data = body
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := call(ctx)
		ack, err := n.js.PublishMsg(cctx, m, jetstream.WithMsgID(key), jetstream.WithExpectStream(StreamName))
		cancel()
		if err == nil {
			n.log.Debug("cluster: job handed on", "job", req.ID, "key", key, "seq", ack.Sequence, "duplicate", ack.Duplicate)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return &ollama.UnavailableError{Err: fmt.Errorf("publish job %s: %w", req.ID, noQuorum(err))}
		}
		n.log.Debug("cluster: publish failed; trying again", "job", req.ID, "err", err)
		if !wait(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// get reads an answer from the bucket, if there is one.
func (r *Relay) get(ctx context.Context, kv jetstream.KeyValue, key string) (*answer, bool) {
	cctx, cancel := call(ctx)
	defer cancel()
	e, err := kv.Get(cctx, key)
	if err != nil {
		return nil, false
	}
	var a answer
	if json.Unmarshal(e.Value(), &a) != nil || a.Superseded {
		return nil, false
	}
	return &a, true
}

// earlier settles the attempts before req's, which the origin gave up on
// when it stopped: one answered well while it was down is the job's
// answer (it does not run again); the others are marked superseded, and a
// host still running one is told to stop. Until every one is settled the
// new attempt is not published: a cluster that cannot record that is
// unavailable.
func (r *Relay) earlier(ctx context.Context, kv jetstream.KeyValue, req runner.RelayRequest) (runner.RelayResult, bool, error) {
	for k := req.Attempt - 1; k >= 1; k-- {
		key := answerKey(r.n.name, req.ID, k)
		if a, ok := r.get(ctx, kv, key); ok {
			if a.Error == nil {
				return a.result(req.Attempt - k), true, nil
			}
			continue
		}
		if err := r.supersede(ctx, kv, key); err != nil {
			return runner.RelayResult{}, false, &ollama.UnavailableError{Err: fmt.Errorf("supersede attempt %d of job %s: %w", k, req.ID, noQuorum(err))}
		}
	}
	return runner.RelayResult{}, false, nil
}

// supersede marks an attempt that has no answer as one no host should run
// and tells a host running it to stop. An attempt already marked or
// answered is left as it is.
func (r *Relay) supersede(ctx context.Context, kv jetstream.KeyValue, key string) error {
	superseded, _ := json.Marshal(answer{Superseded: true})
	cctx, cancel := call(ctx)
	_, err := kv.Create(cctx, key, superseded)
	cancel()
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	if err == nil {
		_ = r.n.nc.Publish(cancelRoot+"."+key, nil)
	}
	return err
}

// result is the answer as the runner takes it; extra counts the attempts
// made since it was given, which never ran.
func (a *answer) result(extra int) runner.RelayResult {
	return runner.RelayResult{
		Response:    a.Response,
		Where:       runner.Where{Node: a.Node, Target: a.Target},
		ModelLoaded: a.ModelLoaded,
		ModelDigest: a.ModelDigest,
		Lost:        max(a.Deliveries-1, 0) - extra,
	}
}

func (a *answer) err() error {
	if a.Error == nil {
		return nil
	}
	return a.Error.err()
}

// answerWatch is one watcher on the bucket for the answers to this host's
// jobs, handing each to the Relay call waiting for it.
type answerWatch struct {
	mu      sync.Mutex
	waiting map[string]chan keyedAnswer
}

// keyedAnswer is an answer with the attempt it answers.
type keyedAnswer struct {
	answer
	key     string
	attempt int
}

// await registers a wait for the answers under keys (the attempts of one
// job, in order); done ends it.
func (w *answerWatch) await(keys ...string) (<-chan keyedAnswer, func()) {
	c := make(chan keyedAnswer, len(keys))
	w.mu.Lock()
	if w.waiting == nil {
		w.waiting = map[string]chan keyedAnswer{}
	}
	for _, k := range keys {
		w.waiting[k] = c
	}
	w.mu.Unlock()
	return c, func() {
		w.mu.Lock()
		for _, k := range keys {
			delete(w.waiting, k)
		}
		w.mu.Unlock()
	}
}

func (w *answerWatch) deliver(key string, a answer) {
	w.mu.Lock()
	c := w.waiting[key]
	w.mu.Unlock()
	if c == nil {
		return
	}
	attempt := 0
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		attempt, _ = strconv.Atoi(key[i+1:])
	}
	select {
	case c <- keyedAnswer{answer: a, key: key, attempt: attempt}:
	default: // the waiter has more than it needs
	}
}

// watchAnswers hands every answer put under this host's prefix to its
// waiting Relay call until ctx ends, watching again after a failure.
func (n *Node) watchAnswers(ctx context.Context, kv jetstream.KeyValue) {
	prefix := answerPrefix(n.name)
	for ctx.Err() == nil {
		w, err := kv.Watch(ctx, prefix+">", jetstream.UpdatesOnly())
		if err != nil {
			n.log.Debug("cluster: cannot watch the answers; trying again", "err", err)
			wait(ctx, time.Second)
			continue
		}
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut || !strings.HasPrefix(e.Key(), prefix) {
				continue
			}
			var a answer
			if json.Unmarshal(e.Value(), &a) == nil {
				n.answers.deliver(e.Key(), a)
			}
		}
		_ = w.Stop()
	}
}
