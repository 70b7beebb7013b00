package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Subject is the subject a job of this priority and load key is published
// on: hopper.jobs.<priority>.<key>, the key base64url-encoded (a load key
// holds ':', '/' and '.', which a subject token may not). Lanes pull by
// subject, so by priority and load key.
func Subject(priority int, key string) string {
	return subjectRoot + "." + strconv.Itoa(priority) + "." + keyToken(key)
}

func keyToken(key string) string {
	if key == "" {
		return "_" // a job that fails before it reaches a target
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key))
}

// ParseSubject is Subject's inverse.
func ParseSubject(subject string) (priority int, key string, err error) {
	rest, ok := strings.CutPrefix(subject, subjectRoot+".")
	p, tok, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return 0, "", fmt.Errorf("subject %q is not hopper.jobs.<priority>.<key>", subject)
	}
	priority, err = strconv.Atoi(p)
	if err != nil {
		return 0, "", fmt.Errorf("subject %q: priority %q is not a number", subject, p)
	}
	if tok == "_" {
		return priority, "", nil
	}
	k, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", fmt.Errorf("subject %q: key %q: %w", subject, tok, err)
	}
	return priority, string(k), nil
}

// Job headers: what a lane needs of a job before it reads the body.
const (
	HeaderOrigin = "Hopper-Origin" // the node whose spool the job came from
	HeaderID     = "Hopper-Job"    // the job ID in the origin's spool
)

// Published is the stream's receipt for a job.
type Published struct {
	Sequence  uint64 // the message's place in the stream
	Duplicate bool   // the stream had the message id already: nothing was added
}

// Publish puts a job in line: data on the subject of its priority and load
// key, with message id id, so the stream keeps one message however often
// it is published within DuplicateWindow. It returns once the stream has
// stored it on a quorum of replicas.
func (n *Node) Publish(ctx context.Context, id string, priority int, key string, data []byte) (Published, error) {
	m := nats.NewMsg(Subject(priority, key))
	m.Header.Set(HeaderOrigin, n.name)
	m.Header.Set(HeaderID, id)
	m.Data = data
	ack, err := n.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamName))
	if err != nil {
		return Published{}, fmt.Errorf("cluster: publish job %s: %w", id, noQuorum(err))
	}
	return Published{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Depth lists the stream's backlog by priority (highest first) and key
// (oldest first), as lanes choose from it.
func (n *Node) Depth(ctx context.Context) ([]Backlog, error) {
	stream, _, err := n.handles()
	if err != nil {
		return nil, err
	}
	ctx, cancel := call(ctx)
	defer cancel()
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subjectRoot+".>"))
	if err != nil {
		return nil, fmt.Errorf("cluster: stream %s: %w", StreamName, noQuorum(err))
	}
	var out []Backlog
	for subj, count := range info.State.Subjects {
		p, key, err := ParseSubject(subj)
		if err != nil || count == 0 {
			continue // not hopper's: left alone
		}
		b := Backlog{Priority: p, Key: key, Count: int(count)}
		if m, err := stream.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subj)); err == nil {
			b.Oldest = m.Time
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Backlog) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		if c := a.Oldest.Compare(b.Oldest); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}
