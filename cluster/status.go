package cluster

import (
	"context"

	"errors"
	"github.com/hopper-dev/hopper/spool"
	"slices"
	"time"
)

// Status, Peer and Backlog are the cluster as this node sees it; the spool
// keeps them for hopper status and /metrics.
type (
	Status  = spool.ClusterStatus
	Peer    = spool.ClusterPeer
	Backlog = spool.ClusterBacklog
)

// Status asks JetStream for the stream's leader, its replicas and its
// backlog. Without quorum it returns a Status that says so (Quorum false,
// Error the reason) rather than an error: that is a state to show.
func (n *Node) Status(ctx context.Context) Status {
	st := Status{Name: n.cfg.Name, Node: n.name, UpdatedAt: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	fail := func(err error) Status {
		st.Error = noQuorum(err).Error()
		return st
	}
	stream, _, err := n.handles()
	if err != nil {
		return fail(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fail(err)
	}
	st.Queued = int(info.State.Msgs)
	if c := info.Cluster; c != nil && c.Leader == "" {
		// A replica answered from its own copy: without a leader the
		// stream takes no job and gives none.
		st.Peers = nil
		return fail(errors.New("the stream has no leader"))
	}
	st.Quorum = true
	if c := info.Cluster; c != nil {
		st.Leader = c.Leader
		st.Peers = append(st.Peers, Peer{Name: c.Leader, Up: true, Leader: true, Current: true})
		for _, p := range c.Replicas {
			st.Peers = append(st.Peers, Peer{Name: p.Name, Up: p.Current && !p.Offline, Current: p.Current, Active: p.Active})
		}
	} else {
		st.Leader = n.name
		st.Peers = []Peer{{Name: n.name, Up: true, Leader: true, Current: true}}
	}
	slices.SortFunc(st.Peers, func(a, b Peer) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	if st.Depth, err = n.Depth(ctx); err != nil {
		st.Error = err.Error()
	}
	return st
}
