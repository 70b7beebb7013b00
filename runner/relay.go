package runner

import (
	"context"
	"encoding/json"
)

// Relay is a Target that hands whole jobs on rather than running them: the
// cluster, where the lanes of every host take jobs from a shared stream
// (DESIGN §11). A lane whose Target is a Relay takes the oldest job of the
// highest priority whatever its model (the hosts that run it choose by
// model), counts no loads of its own, and keeps the job in cur/ as queued
// until onStart says where it runs.
type Relay interface {
	Target
	Relay(ctx context.Context, req RelayRequest, onStart func(Where), onChunk func(chunk []byte) error) (RelayResult, error)
}

// RelayRequest is one attempt of a job handed on.
type RelayRequest struct {
	ID       string // the job's ID in this spool
	Round    int    // 0, and one more for each retry (the record's history)
	Attempt  int    // 1 for the first attempt of the round
	Priority int
	Key      string // the load key, which hosts drain by
	Path     string // the target's path (/api/chat, …)
	Body     []byte // the request as the target takes it
}

// Where is the host and target that run a relayed job.
type Where struct {
	Node   string // the host
	Target string // its target's name
}

// RelayResult is what the host that ran a relayed job says of it.
type RelayResult struct {
	Response json.RawMessage
	Where
	ModelLoaded bool
	ModelDigest string
	// Lost counts the attempts that ran on a host that went away before
	// it answered (the stream gave the job to another): each counts, as
	// a crash in the middle of a job does on one host. It is negative when
	// an earlier attempt's answer came after all: the attempts counted
	// since never ran.
	Lost int
}

// relayOf is the lane's Target as a Relay, nil when it runs jobs itself.
func (l *Lane) relayOf() Relay {
	if l == nil {
		return nil
	}
	rl, _ := l.cfg.Target.(Relay)
	return rl
}
