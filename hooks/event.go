package hooks

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/spool"
)

// The event types (DESIGN §6, §10). A job's event type is "job." and its new
// state.
const (
	TypeQueued    = "job.queued"
	TypeLoading   = "job.loading"
	TypeWorking   = "job.working"
	TypeDeferred  = "job.deferred"
	TypeDone      = "job.done"
	TypeFailed    = "job.failed"
	TypeBatchDone = "batch.done"
)

// Event is one state change of a job. Exec hooks read it as JSON on stdin;
// webhooks get it as the "data" of their body.
type Event struct {
	Type          string          `json:"type"`
	ID            string          `json:"id"`
	State         spool.State     `json:"state"`
	PreviousState spool.State     `json:"previous_state"`
	Timestamp     time.Time       `json:"timestamp"`
	Model         string          `json:"model"`
	Attempt       int             `json:"attempt"`
	Meta          json.RawMessage `json:"meta,omitempty"`
	// Response, Output and Error are set on terminal states only.
	Response json.RawMessage `json:"response,omitempty"`
	Output   json.RawMessage `json:"output,omitempty"`
	Error    *spool.JobError `json:"error,omitempty"`
	// Batch is a batch.done event's batch record: its state (completed,
	// cancelled or failed), counts and output file.
	Batch *batch.Record `json:"batch,omitempty"`

	// once, when set, is the durable moment that names the event: the
	// record's finished_at, the batch's finalizing_at. Emitting the event
	// again after a crash (the runner does, for records a kill left in
	// cur/) then gives the same delivery IDs, so receivers see one event
	// delivered twice, not two events.
	once time.Time
}

// EventFor builds the event for rec having just entered rec.State from
// previous ("" when the job is first seen). meta is the job's meta field;
// nil takes it from rec.Job.
func EventFor(rec *spool.Record, previous spool.State, meta json.RawMessage, now time.Time) Event {
	if meta == nil {
		meta = jobMeta(rec.Job)
	}
	ev := Event{
		Type:          "job." + string(rec.State),
		ID:            rec.ID,
		State:         rec.State,
		PreviousState: previous,
		Timestamp:     now.UTC(),
		Model:         rec.Model,
		Attempt:       rec.Attempts,
		Meta:          meta,
	}
	if rec.State.Terminal() {
		ev.Response, ev.Output, ev.Error = rec.Response, rec.Output, rec.Error
		if rec.FinishedAt != nil {
			ev.Timestamp, ev.once = rec.FinishedAt.UTC(), *rec.FinishedAt
		}
	}
	return ev
}

// jobMeta returns the "meta" field of a job, or nil.
func jobMeta(job json.RawMessage) json.RawMessage {
	var j struct {
		Meta json.RawMessage `json:"meta"`
	}
	if json.Unmarshal(job, &j) != nil || bytes.Equal(j.Meta, []byte("null")) {
		return nil
	}
	return j.Meta
}

// envelope is a webhook's body, as Standard Webhooks shapes it.
type envelope struct {
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// compactJSON encodes v on one line, leaving <, > and & as they are.
func compactJSON(v any) ([]byte, error) { return jsonfmt.Marshal(v) }
