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
