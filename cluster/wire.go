package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

// request is a stream message's body: one attempt of a job, as the origin
// host's runner would have sent it to a target of its own.
type request struct {
	ID      string `json:"id"`      // the job's ID in the origin's spool
	Attempt int    `json:"attempt"` // 1 for the first
	Path    string `json:"path"`    // /api/chat, /v1/chat/completions, …
	Body    []byte `json:"body"`    // the request as the target takes it
}

// answer is what the host that ran an attempt puts in the bucket, under
// the attempt's key; Superseded marks an attempt the origin gave up on (it
// crashed and tried again), which no host should run any more.
type answer struct {
	Superseded  bool            `json:"superseded,omitempty"`
	Response    json.RawMessage `json:"response,omitempty"`
	Error       *wireError      `json:"error,omitempty"`
	Node        string          `json:"node,omitempty"`
	Target      string          `json:"target,omitempty"`
	ModelLoaded bool            `json:"model_loaded,omitempty"`
	ModelDigest string          `json:"model_digest,omitempty"`
	Deliveries  int             `json:"deliveries,omitempty"` // how often the stream gave the attempt out
}

// wireError carries a target's error from the host that ran the job to the
// origin, where the runner judges it as it would its own target's.
type wireError struct {
	Kind       string        `json:"kind"` // "rejected", "failed" or "unavailable"
	Status     int           `json:"status,omitempty"`
	Message    string        `json:"message"`
	RetryAfter time.Duration `json:"retry_after,omitempty"`
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	var (
		rejected    *ollama.RejectedError
		failed      *ollama.JobFailedError
		unavailable *ollama.UnavailableError
	)
	switch {
	case errors.As(err, &rejected):
		return &wireError{Kind: "rejected", Status: rejected.Status, Message: rejected.Message}
	case errors.As(err, &unavailable):
		return &wireError{Kind: "unavailable", Status: unavailable.Status, Message: unavailable.Err.Error(), RetryAfter: unavailable.RetryAfter}
	case errors.As(err, &failed):
		return &wireError{Kind: "failed", Status: failed.Status, Message: failed.Error()}
	}
	return &wireError{Kind: "failed", Message: err.Error()}
}

func (w *wireError) err() error {
	switch w.Kind {
	case "rejected":
		return &ollama.RejectedError{Status: w.Status, Message: w.Message}
	case "unavailable":
		return &ollama.UnavailableError{Status: w.Status, RetryAfter: w.RetryAfter, Err: errors.New(w.Message)}
	}
	return &ollama.JobFailedError{Status: w.Status, Message: w.Message}
}

// answerKey is the bucket key (and the message id) of one attempt of a
// job: a.<origin>.<id>.<attempt>, the batch-line '~' as '=' (a key takes
// letters, digits, '-', '_', '=', '/' and '.'). The origin's name in it
// lets each host watch the answers to its own jobs only.
func answerKey(origin, id string, attempt int) string {
	return fmt.Sprintf("%s%s.%d", answerPrefix(origin), strings.ReplaceAll(id, "~", "="), attempt)
}

func answerPrefix(origin string) string { return "a." + origin + "." }

// callTimeout bounds one JetStream request: without a leader (a host just
// died, an election is on) a request may get no reply at all.
const callTimeout = 5 * time.Second

// call is ctx bounded by callTimeout.
func call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, callTimeout)
}

// The events a running attempt sends the origin on its reply subject
// (core NATS, in order): start (where it runs), chunk (a line of streamed
// output), end (nothing more will come).
const (
	headerReply = "Hopper-Reply"
	headerEvent = "Hopper-Event"
	eventStart  = "start"
	eventChunk  = "chunk"
	eventEnd    = "end"
	cancelRoot  = "hopper.cancel" // hopper.cancel.<answer key>: stop that attempt
)

// errNotProvisioned is the state before the stream exists (no quorum yet).
var errNotProvisioned = errors.New("the cluster's stream is not provisioned yet")

// wait sleeps d or until ctx ends, and reports whether ctx is still live.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
