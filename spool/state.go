package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// targetsFile is where the running serve publishes its targets' state.
const targetsFile = DirState + "/targets.json"

// Targets is the running serve's view of its targets, published in
// .hopper/targets.json for `hopper status`, the front's /metrics and
// anyone with jq. It is runtime state, rewritten atomically (without
// fsync) as it changes, at most about once a second.
type Targets struct {
	PID       int            `json:"pid"`
	UpdatedAt time.Time      `json:"updated_at"`
	Targets   []TargetStatus `json:"targets"`
	// Problem says what keeps the runner from working normally, such as a
	// record it cannot write (a full disk); empty when nothing does.
	Problem string `json:"problem,omitempty"`
}

// TargetStatus is one target and its lane.
type TargetStatus struct {
	Name      string     `json:"name"`
	URL       string     `json:"url"`
	Up        bool       `json:"up"`
	Error     string     `json:"error,omitempty"` // why it is down
	DownSince *time.Time `json:"down_since,omitempty"`
	Version   string     `json:"version,omitempty"`
	Slots     int        `json:"slots"`
	InFlight  int        `json:"in_flight"`
	// LoadKey is the model (and reload options) of the requests in flight.
	LoadKey  string   `json:"load_key,omitempty"`
	Resident []string `json:"resident"`
	Models   []string `json:"models,omitempty"` // the patterns it may run
	Missing  []string `json:"missing,omitempty"`
	Done     int      `json:"done"`
	Failed   int      `json:"failed"`
	Loads    int      `json:"loads"`
	// LoadSeconds is the time spent loading models.
	LoadSeconds float64 `json:"load_seconds"`
}

// PublishTargets replaces .hopper/targets.json.
func (s *Spool) PublishTargets(t *Targets) error {
	data, err := marshalDoc(t)
	if err != nil {
		return err
	}
	if err := s.writeFile(DirState, "targets.json", data, false, true); err != nil {
		return fmt.Errorf("publish targets: %w", err)
	}
	return nil
}

// ReadTargets reads what the serve last published. A spool no serve has
// published to gives an error wrapping fs.ErrNotExist. It says nothing of
// whether that serve still runs: ask Served.
func (s *Spool) ReadTargets() (*Targets, error) {
	data, err := s.root.ReadFile(targetsFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read targets: %w", fs.ErrNotExist)
		}
		return nil, fmt.Errorf("read targets: %w", err)
	}
	var t Targets
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("read %s: %w", targetsFile, err)
	}
	return &t, nil
}

// ClusterStatus is the cluster as a host's serve sees it (DESIGN §11),
// kept in .hopper/cluster.json for hopper status and /metrics.
type ClusterStatus struct {
	UpdatedAt time.Time `json:"updated_at"`
	Name      string    `json:"name"`
	Node      string    `json:"node"`
	Leader    string    `json:"leader,omitempty"`
	// Quorum is false when the cluster cannot answer (too few hosts up):
	// this host then hands on nothing and keeps accepting files into new/.
	Quorum bool             `json:"quorum"`
	Error  string           `json:"error,omitempty"`
	Peers  []ClusterPeer    `json:"peers,omitempty"`
	Queued int              `json:"queued"`
	Depth  []ClusterBacklog `json:"depth,omitempty"`
}

// ClusterPeer is one host as the queue's replicas see it.
type ClusterPeer struct {
	Name    string        `json:"name"`
	Up      bool          `json:"up"`      // current with the leader and not offline
	Leader  bool          `json:"leader"`  // leads the queue
	Current bool          `json:"current"` // has every operation the leader committed
	Active  time.Duration `json:"active"`  // since it was last heard from
}

// ClusterBacklog is what the cluster's queue holds for one priority and
// load key.
type ClusterBacklog struct {
	Priority int       `json:"priority"`
	Key      string    `json:"key"`
	Count    int       `json:"count"`
	Oldest   time.Time `json:"oldest"` // when the first of them was handed on
}

const clusterFile = "cluster.json"

// PublishCluster replaces .hopper/cluster.json.
func (s *Spool) PublishCluster(c *ClusterStatus) error {
	data, err := marshalDoc(c)
	if err != nil {
		return err
	}
	if err := s.writeFile(DirState, clusterFile, data, false, true); err != nil {
		return fmt.Errorf("publish the cluster's status: %w", err)
	}
	return nil
}

// ReadCluster reads the cluster's status as the running serve last
// published it; nil when it is older than maxAge (no serve in a cluster
// runs) or there is none.
func (s *Spool) ReadCluster(maxAge time.Duration) *ClusterStatus {
	data, err := s.root.ReadFile(DirState + "/" + clusterFile)
	if err != nil {
		return nil
	}
	var c ClusterStatus
	if json.Unmarshal(data, &c) != nil || s.now().Sub(c.UpdatedAt) > maxAge {
		return nil
	}
	return &c
}
