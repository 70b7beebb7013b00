package hooks

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// The outbox's directories, relative to the spool: spool StateDirs (see
// stateDir).
const (
	dirOutbox   = spool.DirState + "/outbox"
	dirPending  = dirOutbox + "/pending"
	dirFailed   = dirOutbox + "/failed"
	dirDisabled = dirOutbox + "/disabled"
)

// stateDir is one of the outbox's directories as the spool's StateDir,
// through which every file of the outbox is read and written.
func (h *Hooks) stateDir(dir string) *spool.StateDir {
	return h.cfg.Spool.StateDir(strings.TrimPrefix(dir, spool.DirState+"/"))
}

// Errors callers test for.
var (
	// ErrNoDelivery means no failed delivery has that delivery or job ID.
	ErrNoDelivery = errors.New("no such failed delivery")
	// ErrNotDisabled means the endpoint is not disabled.
	ErrNotDisabled = errors.New("endpoint is not disabled")
)

// A delivery's state, as its file says.
const (
	StatePending = "pending"
	StateFailed  = "failed"
)

// A delivery's source: the job's own webhook field, or hooks.webhooks.
const (
	SourceJob    = "job"
	SourceConfig = "config"
)

// Delivery is one event on its way to one URL: the file
// SPOOL/.hopper/outbox/{pending,failed}/ID.json.
type Delivery struct {
	// ID is the webhook-id, the same on every attempt.
	ID     string `json:"id"`
	Type   string `json:"type"`
	Job    string `json:"job"`
	URL    string `json:"url"`
	Source string `json:"source"` // SourceJob or SourceConfig
	// Untrusted deliveries may not reach private addresses (the job came
	// over HTTP).
	Untrusted     bool      `json:"untrusted,omitempty"`
	State         string    `json:"state"` // StatePending or StateFailed
	CreatedAt     time.Time `json:"created_at"`
	Attempts      int       `json:"attempts"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	LastStatus    int       `json:"last_status,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	// Payload is the request body (sent compacted).
	Payload json.RawMessage `json:"payload"`
}

// Disabled is a configured endpoint that answered 410 Gone: the file
// SPOOL/.hopper/outbox/disabled/HASH.json.
type Disabled struct {
	URL        string    `json:"url"`
	DisabledAt time.Time `json:"disabled_at"`
	Status     int       `json:"status"`
	Reason     string    `json:"reason"`
}

// Status sums up the outbox for `hopper status`.
type Status struct {
	Pending int `json:"pending"`
	Failed  int `json:"failed"`
	// OldestPending is when the oldest pending delivery was emitted.
	OldestPending *time.Time `json:"oldest_pending_at,omitempty"`
	Disabled      []Disabled `json:"disabled"`
}

// newID returns a delivery ID that sorts by seq: "msg_", seq in 16 hex
// digits, 8 random hex digits.
func newID(seq uint64) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("msg_%016x%s", seq, hex.EncodeToString(r[:]))
}

// deliveryID names d, one delivery of ev: by the next sequence number, or,
// for an event named by a durable moment, by that moment and a hash of the
// event and the receiver — the same ID each time the event is emitted. (A
// clock set back between a job's events could sort such an ID before that
// job's earlier ones; the order of a job's events is kept otherwise.)
func (h *Hooks) deliveryID(ev Event, d *Delivery) string {
	if ev.once.IsZero() {
		return newID(h.nextSeq())
	}
	seq := uint64(max(ev.once.UnixNano(), 0))
	h.seqMu.Lock()
	h.lastSeq = max(h.lastSeq, seq)
	h.seqMu.Unlock()
	sum := sha256.Sum256([]byte(ev.Type + "\x00" + ev.ID + "\x00" + d.Source + "\x00" + d.URL))
	return fmt.Sprintf("msg_%016x%s", seq, hex.EncodeToString(sum[:4]))
}

// idSeq returns the sequence number inside a delivery ID (its emission time
// in Unix nanoseconds, give or take).
func idSeq(id string) (uint64, bool) {
	rest, ok := strings.CutPrefix(id, "msg_")
	if !ok || len(rest) < 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:16], 16, 64)
	return n, err == nil
}

// deliveryName reports whether a directory entry is a delivery file, and
// returns its ID.
func deliveryName(name string) (string, bool) {
	id, ok := strings.CutSuffix(name, ".json")
	return id, ok && strings.HasPrefix(id, "msg_") && !strings.ContainsAny(id, "/\\")
}

// disabledName is the file in dirDisabled that marks url disabled.
func disabledName(url string) string {
	sum := sha256.Sum256([]byte(url))
	return hex.EncodeToString(sum[:8]) + ".json"
}

// ensureDirs creates the outbox's directories once.
func (h *Hooks) ensureDirs() error {
	h.dirsMu.Lock()
	defer h.dirsMu.Unlock()
	if h.dirsMade {
		return nil
	}
	for _, d := range []string{dirPending, dirFailed, dirDisabled} {
		if err := h.stateDir(d).Make(); err != nil {
			return err
		}
	}
	// A clock set back since the last process must not sort new events
	// before that process's pending ones.
	for _, d := range []string{dirPending, dirFailed} {
		ids, err := h.listIDs(d)
		if err != nil {
			return err
		}
		if len(ids) > 0 {
			if seq, ok := idSeq(ids[len(ids)-1]); ok {
				h.seqMu.Lock()
				h.lastSeq = max(h.lastSeq, seq)
				h.seqMu.Unlock()
			}
		}
	}
	h.dirsMade = true
	return nil
}

// writeFile writes dir/name atomically, fsynced when sync is set, over
// what is there. The caller fsyncs the directory (syncDir).
func (h *Hooks) writeFile(dir, name string, data []byte, sync bool) error {
	return h.stateDir(dir).WriteFile(name, data, sync)
}

// syncDir fsyncs one of the outbox's directories.
func (h *Hooks) syncDir(dir string) error { return h.stateDir(dir).Sync() }

// move renames dir/ID.json to toDir/toName.
func (h *Hooks) move(dir, id, toDir, toName string) error {
	return h.stateDir(dir).Move(id+".json", h.stateDir(toDir), toName)
}

// encodeDelivery is a delivery file's content: indented for people, with
// the payload's bytes left as they are.
func encodeDelivery(d *Delivery) ([]byte, error) { return jsonfmt.MarshalIndent(d) }

// readDelivery reads dir/ID.json.
func (h *Hooks) readDelivery(dir, id string) (*Delivery, error) {
	data, err := h.stateDir(dir).ReadFile(id + ".json")
	if err != nil {
		return nil, err
	}
	var d Delivery
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s/%s.json: %w", dir, id, err)
	}
	if d.ID != id {
		return nil, fmt.Errorf("%s/%s.json: holds delivery %q", dir, id, d.ID)
	}
	return &d, nil
}

// saveDelivery rewrites a delivery in dir without fsync: what it records (an
// attempt) a crash may lose.
func (h *Hooks) saveDelivery(dir string, d *Delivery) error {
	data, err := encodeDelivery(d)
	if err != nil {
		return err
	}
	return h.writeFile(dir, d.ID+".json", data, false)
}

// giveUp moves a pending delivery to failed/: first its file says so, then
// it is renamed, so a crash in between is finished by the next scan.
func (h *Hooks) giveUp(d *Delivery) error {
	d.State, d.NextAttemptAt = StateFailed, time.Time{}
	if err := h.saveDelivery(dirPending, d); err != nil {
		return err
	}
	return h.move(dirPending, d.ID, dirFailed, d.ID+".json")
}

// listIDs returns the delivery IDs in dir, sorted (oldest first). A missing
// directory is empty.
func (h *Hooks) listIDs(dir string) ([]string, error) {
	names, err := h.stateDir(dir).Names()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range names {
		if id, ok := deliveryName(n); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// list reads every delivery in dir, oldest first. Files that vanish while
// it reads are skipped; unreadable ones are reported together.
func (h *Hooks) list(dir string) ([]*Delivery, error) {
	ids, err := h.listIDs(dir)
	if err != nil {
		return nil, err
	}
	out := make([]*Delivery, 0, len(ids))
	var errs []error
	for _, id := range ids {
		d, err := h.readDelivery(dir, id)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, err)
		default:
			out = append(out, d)
		}
	}
	return out, errors.Join(errs...)
}

// Pending returns the deliveries waiting to be sent, oldest first.
func (h *Hooks) Pending() ([]*Delivery, error) { return h.list(dirPending) }

// Failed returns the deliveries given up on, oldest first.
func (h *Hooks) Failed() ([]*Delivery, error) { return h.list(dirFailed) }

// Redeliver queues failed deliveries again, from their first attempt: id is
// a delivery ID (one delivery) or a job ID (all of that job's failed
// deliveries). It returns how many it queued, or an error wrapping
// ErrNoDelivery. A running dispatcher, in this process or another, picks
// them up.
func (h *Hooks) Redeliver(id string) (int, error) {
	var ds []*Delivery
	if _, ok := idSeq(id); ok {
		d, err := h.readDelivery(dirFailed, id)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("redeliver %s: %w", id, ErrNoDelivery)
		}
		if err != nil {
			return 0, fmt.Errorf("redeliver %s: %w", id, err)
		}
		ds = append(ds, d)
	} else {
		all, err := h.Failed()
		if err != nil {
			return 0, fmt.Errorf("redeliver %s: %w", id, err)
		}
		for _, d := range all {
			if d.Job == id {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			return 0, fmt.Errorf("redeliver %s: %w", id, ErrNoDelivery)
		}
	}
	if err := h.ensureDirs(); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range ds {
		d.State, d.Attempts, d.NextAttemptAt = StatePending, 0, h.now()
		d.LastAttemptAt, d.LastStatus, d.LastError = time.Time{}, 0, ""
		data, err := encodeDelivery(d)
		if err == nil {
			err = h.writeFile(dirFailed, d.ID+".json", data, h.fsync)
		}
		if err == nil {
			err = h.move(dirFailed, d.ID, dirPending, d.ID+".json")
		}
		if err != nil {
			return n, fmt.Errorf("redeliver %s: %w", d.ID, err)
		}
		n++
	}
	if h.fsync {
		return n, h.syncDir(dirPending)
	}
	return n, nil
}

// disabled reports whether a configured endpoint has been disabled.
func (h *Hooks) disabled(url string) bool {
	_, err := h.stateDir(dirDisabled).Stat(disabledName(url))
	return err == nil
}

// disable marks a configured endpoint disabled.
func (h *Hooks) disable(url string, status int, reason string) error {
	if err := h.ensureDirs(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(Disabled{URL: url, DisabledAt: h.now(), Status: status, Reason: reason}, "", "  ")
	if err != nil {
		return err
	}
	if err := h.writeFile(dirDisabled, disabledName(url), append(data, '\n'), h.fsync); err != nil {
		return fmt.Errorf("disable %s: %w", url, err)
	}
	if h.fsync {
		return h.syncDir(dirDisabled)
	}
	return nil
}

// Enable lets a disabled endpoint receive events again. Events emitted
// while it was disabled are not sent to it.
func (h *Hooks) Enable(url string) error {
	err := h.stateDir(dirDisabled).Remove(disabledName(url))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("enable %s: %w", url, ErrNotDisabled)
	}
	if err != nil {
		return fmt.Errorf("enable %s: %w", url, err)
	}
	return nil
}

// DisabledEndpoints lists the endpoints disabled after a 410 Gone.
func (h *Hooks) DisabledEndpoints() ([]Disabled, error) {
	dir := h.stateDir(dirDisabled)
	names, err := dir.Names()
	if err != nil {
		return nil, err
	}
	out := []Disabled{}
	var errs []error
	for _, n := range names {
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		data, err := dir.ReadFile(n)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var d Disabled
		if err == nil {
			err = json.Unmarshal(data, &d)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", dirDisabled, n, err))
			continue
		}
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}

// Status counts pending and failed deliveries and lists disabled endpoints.
// It reads directory entries, not deliveries.
func (h *Hooks) Status() (Status, error) {
	var st Status
	pending, err := h.listIDs(dirPending)
	if err != nil {
		return st, err
	}
	failed, err := h.listIDs(dirFailed)
	if err != nil {
		return st, err
	}
	st.Pending, st.Failed = len(pending), len(failed)
	if len(pending) > 0 {
		if seq, ok := idSeq(pending[0]); ok {
			t := time.Unix(0, int64(seq)).UTC()
			st.OldestPending = &t
		}
	}
	st.Disabled, err = h.DisabledEndpoints()
	return st, err
}
