package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Relay publishes one attempt and waits for its answer. Earlier
// handings-on of the job in this round (the origin stopped while they were
// out, or the job was held and released) are settled first: one answered
// well is the job's answer, the others are superseded. An earlier one that
// answers while this one waits (it was under way when superseded) answers
// for it too. Canceled (the job's context ends: a cancel, a hold, a
// shutdown), the attempt is superseded and a host running it told to stop.
func (r *Relay) Relay(ctx context.Context, req runner.RelayRequest, onStart func(runner.Where), onChunk func([]byte) error) (runner.RelayResult, error) {
	n := r.n
	_, kv, err := n.handles()
	if err != nil {
		return runner.RelayResult{}, &ollama.UnavailableError{Err: err}
	}
	prefix := jobPrefix(n.name, req.ID, req.Round)
	key := answerKey(n.name, req.ID, req.Round, nuid.Next())
	answers, done := n.answers.await(prefix)
	defer done()
	if res, ok, err := r.earlier(ctx, kv, req, prefix); err != nil || ok {
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

	var (
		got    *answer
		ended  bool
		linger <-chan time.Time
		starts int // runs begun, each on a host that took the message
	)
	// The watch may miss an answer while it starts again after a failure:
	// now and then the bucket is asked.
	poll := time.NewTicker(answerPoll)
	defer poll.Stop()
	event := func(m *nats.Msg) {
		switch m.Header.Get(headerEvent) {
		case eventStart:
			starts++
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
			switch {
			case a.Superseded || a.Consumed:
				continue // a tombstone this call or an earlier one wrote
			case ka.key != key:
				// An earlier handing-on answered: this one need not run.
				_ = r.supersede(context.WithoutCancel(ctx), kv, key)
				r.consume(ctx, kv, ka.key)
				n.log.Debug("cluster: an earlier attempt answered", "job", req.ID, "key", ka.key)
				return a.result(a.Attempt - req.Attempt), a.err()
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
			// Nobody waits for it any more: no host should start it.
			_ = r.supersede(context.WithoutCancel(ctx), kv, key)
			return runner.RelayResult{}, ctx.Err()
		}
	}
	for len(events) > 0 {
		event(<-events)
	}
	r.consume(ctx, kv, key)
	return got.result(max(starts-1, 0)), got.err()
}

// consume marks an answer as taken: the runner judges it now, so no later
// attempt adopts it, and a host that gets its message again skips it.
func (r *Relay) consume(ctx context.Context, kv jetstream.KeyValue, key string) {
	consumed, _ := json.Marshal(answer{Consumed: true})
	cctx, cancel := call(context.WithoutCancel(ctx))
	defer cancel()
	_, _ = kv.Put(cctx, key, consumed)
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
	if json.Unmarshal(e.Value(), &a) != nil || a.Superseded || a.Consumed {
		return nil, false
	}
	return &a, true
}

// earlier settles the handings-on of the job in this round before this
// one: one answered well is the job's answer (it does not run again); the
// others without an answer are marked superseded, and a host still running
// one is told to stop. Until every one is settled the new attempt is not
// published: a cluster that cannot record that is unavailable.
func (r *Relay) earlier(ctx context.Context, kv jetstream.KeyValue, req runner.RelayRequest, prefix string) (runner.RelayResult, bool, error) {
	unavailable := func(err error) (runner.RelayResult, bool, error) {
		err = fmt.Errorf("settle the earlier attempts of job %s: %w", req.ID, noQuorum(err))
		if !errors.Is(err, ErrNoQuorum) {
			return runner.RelayResult{}, false, err // the job's, not the cluster's
		}
		return runner.RelayResult{}, false, &ollama.UnavailableError{Err: err}
	}
	cctx, cancel := call(ctx)
	lister, err := kv.ListKeysFiltered(cctx, prefix+">")
	if err != nil {
		cancel()
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return runner.RelayResult{}, false, nil
		}
		return unavailable(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	listed := cctx.Err()
	cancel()
	if listed != nil {
		return unavailable(listed) // the list broke off: settle nothing on half of it
	}
	for _, key := range keys {
		if a, ok := r.get(ctx, kv, key); ok {
			if a.Error == nil {
				r.consume(ctx, kv, key)
				return a.result(a.Attempt - req.Attempt), true, nil
			}
			continue
		}
		if err := r.supersede(ctx, kv, key); err != nil {
			return unavailable(err)
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

// result is the answer as the runner takes it, with lost the attempts to
// add to the runner's count: runs on hosts that went away before they
// answered, or (negative) attempts the origin counted since the one that
// answered, which never ran.
func (a *answer) result(lost int) runner.RelayResult {
	return runner.RelayResult{
		Response:    a.Response,
		Where:       runner.Where{Node: a.Node, Target: a.Target},
		ModelLoaded: a.ModelLoaded,
		ModelDigest: a.ModelDigest,
		Lost:        lost,
	}
}

func (a *answer) err() error {
	if a.Error == nil {
		return nil
	}
	return a.Error.err()
}

// answerWatch is one watcher on the bucket for the answers to this host's
// jobs, handing each to the Relay call waiting for the job.
type answerWatch struct {
	mu      sync.Mutex
	waiting map[string]chan keyedAnswer // by job prefix (jobPrefix)
}

// keyedAnswer is an answer with its key.
type keyedAnswer struct {
	answer
	key string
}

// await registers a wait for the answers under a job's prefix; done ends
// it.
func (w *answerWatch) await(prefix string) (<-chan keyedAnswer, func()) {
	c := make(chan keyedAnswer, 64)
	w.mu.Lock()
	if w.waiting == nil {
		w.waiting = map[string]chan keyedAnswer{}
	}
	w.waiting[prefix] = c
	w.mu.Unlock()
	return c, func() {
		w.mu.Lock()
		if w.waiting[prefix] == c {
			delete(w.waiting, prefix)
		}
		w.mu.Unlock()
	}
}

func (w *answerWatch) deliver(key string, a answer) {
	i := strings.LastIndexByte(key, '.')
	if i < 0 {
		return
	}
	w.mu.Lock()
	c := w.waiting[key[:i+1]]
	w.mu.Unlock()
	if c == nil {
		return
	}
	select {
	case c <- keyedAnswer{answer: a, key: key}:
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
		n.deliverAnswers(ctx, w.Updates(), prefix)
		_ = w.Stop()
	}
}

// deliverAnswers hands the answers of updates to their waiting Relay calls
// until updates closes or ctx ends. Not the channel alone: nats.go closes
// it from the subscription's closed handler, which it installs only after
// subscribing, so a watch that ctx ends in between never closes it.
func (n *Node) deliverAnswers(ctx context.Context, updates <-chan jetstream.KeyValueEntry, prefix string) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-updates:
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut || !strings.HasPrefix(e.Key(), prefix) {
				continue
			}
			var a answer
			if json.Unmarshal(e.Value(), &a) == nil {
				n.answers.deliver(e.Key(), a)
			}
		}
	}
}
