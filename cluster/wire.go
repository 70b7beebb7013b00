package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

// request is a stream message's body: one attempt of a job, as the origin
// host's runner would have sent it to a target of its own.
type request struct {
	ID      string `json:"id"`      // the job's ID in the origin's spool
	Attempt int    `json:"attempt"` // 1 for the first (of the round)
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
	// Consumed marks an answer the origin has taken (it judged it): no
	// later attempt adopts it, and no host runs its message again.
	Consumed bool `json:"consumed,omitempty"`
	Attempt  int  `json:"attempt,omitempty"` // the attempt it answers
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

// answerKey is the bucket key (and the message id) of one handing-on of a
// job: a.<origin>.<id>.r<round>.<nonce>, the ID base64url-encoded (a key
// takes letters, digits, '-', '_', '=', '/' and '.', and a '.' separates
// its tokens, so "report." or "x.r0" must not reach it as they are). The
// origin's name in it lets each host watch the answers to its own jobs
// only; the prefix before the nonce finds every earlier handing-on of the
// job in this round (a retry starts a new one); the nonce makes each
// publish its own message, though the stream remembers message ids.
func answerKey(origin, id string, round int, nonce string) string {
	return jobPrefix(origin, id, round) + nonce
}

// jobPrefix is the part of answerKey before the nonce.
func jobPrefix(origin, id string, round int) string {
	return fmt.Sprintf("%s%s.r%d.", answerPrefix(origin), base64.RawURLEncoding.EncodeToString([]byte(id)), round)
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
