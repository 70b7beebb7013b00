package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		_, err = stream.Info(ctx)
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
// (they travel apart from it).
const endWait = 2 * time.Second

// Relay publishes one attempt and waits for its answer. An earlier attempt
// of the job that never answered (the origin stopped in between) is marked
// superseded first, so no host starts it any more.
func (r *Relay) Relay(ctx context.Context, req runner.RelayRequest, onStart func(runner.Where), onChunk func([]byte) error) (runner.RelayResult, error) {
	n := r.n
	_, kv, err := n.handles()
	if err != nil {
		return runner.RelayResult{}, &ollama.UnavailableError{Err: err}
	}
	key := answerKey(req.ID, req.Attempt)
	superseded, _ := json.Marshal(answer{Superseded: true})
	for k := 1; k < req.Attempt; k++ {
		_, _ = kv.Create(ctx, answerKey(req.ID, k), superseded) // fails when it was answered: fine
	}

	events := make(chan *nats.Msg, 4096)
	inbox := n.nc.NewRespInbox()
	sub, err := n.nc.ChanSubscribe(inbox, events)
	if err != nil {
		return runner.RelayResult{}, &ollama.UnavailableError{Err: err}
	}
	defer func() { _ = sub.Unsubscribe() }()
	watch, err := kv.Watch(ctx, key)
	if err != nil {
		return runner.RelayResult{}, &ollama.UnavailableError{Err: noQuorum(err)}
	}
	defer func() { _ = watch.Stop() }()

	body, err := json.Marshal(request{ID: req.ID, Attempt: req.Attempt, Path: req.Path, Body: req.Body})
	if err != nil {
		return runner.RelayResult{}, err
	}
	m := nats.NewMsg(Subject(req.Priority, req.Key))
	m.Header.Set(HeaderOrigin, n.name)
	m.Header.Set(HeaderID, req.ID)
	m.Header.Set(headerReply, inbox)
	m.Data = body
	if _, err := n.js.PublishMsg(ctx, m, jetstream.WithMsgID(key), jetstream.WithExpectStream(StreamName)); err != nil {
		if ctx.Err() != nil {
			return runner.RelayResult{}, ctx.Err()
		}
		return runner.RelayResult{}, &ollama.UnavailableError{Err: fmt.Errorf("publish job %s: %w", req.ID, noQuorum(err))}
	}

	var (
		got    *answer
		ended  bool
		linger <-chan time.Time
	)
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
		case e := <-watch.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // the end of the initial values, or a purge
			}
			var a answer
			if err := json.Unmarshal(e.Value(), &a); err != nil {
				return runner.RelayResult{}, &ollama.JobFailedError{Message: "the answer from the cluster is not readable", Err: err}
			}
			if a.Superseded {
				return runner.RelayResult{}, errors.New("a later attempt of the job superseded this one")
			}
			got = &a
			t := time.NewTimer(endWait)
			defer t.Stop()
			linger = t.C
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
	res := runner.RelayResult{
		Response:    got.Response,
		Where:       runner.Where{Node: got.Node, Target: got.Target},
		ModelLoaded: got.ModelLoaded,
		ModelDigest: got.ModelDigest,
		Lost:        max(got.Deliveries-1, 0),
	}
	if got.Error != nil {
		return res, got.Error.err()
	}
	return res, nil
}
