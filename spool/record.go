package spool

import (
	"encoding/json"
	"fmt"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"time"
)

// State is a job's exact state; the directory holding it is the coarse one.
type State string

// The states of DESIGN §1.
const (
	StateQueued   State = "queued"
	StateLoading  State = "loading"
	StateWorking  State = "working"
	StateDeferred State = "deferred"
	StateHeld     State = "held"
	StateDone     State = "done"
	StateFailed   State = "failed"
)

// Terminal reports whether the state is final.
func (s State) Terminal() bool { return s == StateDone || s == StateFailed }

// dirOf is the directory a record in this state lives in.
func dirOf(s State) string {
	switch s {
	case StateDone:
		return DirDone
	case StateFailed:
		return DirFailed
	case StateDeferred:
		return DirDeferred
	case StateHeld:
		return DirHold
	case StateQueued:
		return DirNew
	}
	return DirCur
}

// ErrorKind classifies why a job did not finish.
type ErrorKind string

// The error kinds of DESIGN §2.
const (
	KindBadInput    ErrorKind = "bad_input"
	KindTarget      ErrorKind = "target"
	KindUnreachable ErrorKind = "unreachable"
	KindTimeout     ErrorKind = "timeout"
	KindCanceled    ErrorKind = "canceled"
	KindExpired     ErrorKind = "expired"
	KindInterrupted ErrorKind = "interrupted"
)

// JobError is a record's error: what kind, what happened, and the target's
// HTTP status when it answered.
type JobError struct {
	Kind    ErrorKind `json:"kind"`
	Message string    `json:"message"`
	Status  int       `json:"status,omitempty"`
}

func (e *JobError) Error() string { return string(e.Kind) + ": " + e.Message }

// StatusClientClosedRequest is the status Ollama answers a request whose
// job was canceled (499, "request canceled").
const StatusClientClosedRequest = 499

// HTTPStatus is the HTTP status an answer failing this way has: the
// target's own for its refusals, 400 for bad input, 499 canceled, 504
// timeout, 503 expired, 502 unreachable, 500 otherwise.
func (e *JobError) HTTPStatus() int {
	switch e.Kind {
	case KindTarget:
		if e.Status >= 400 && e.Status <= 599 {
			return e.Status
		}
		return 500 // an error inside a 200 stream
	case KindBadInput:
		return 400
	case KindCanceled:
		return StatusClientClosedRequest
	case KindTimeout:
		return 504
	case KindExpired:
		return 503
	case KindUnreachable:
		return 502
	}
	return 500
}

// Round is one earlier run of a job that was retried: how it ended.
type Round struct {
	Attempts   int        `json:"attempts"`
	Error      *JobError  `json:"error,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// Record is the JSON document kept for a job in cur/, deferred/, done/ and
// failed/ (DESIGN §2).
type Record struct {
	ID       string   `json:"id"`
	State    State    `json:"state"`
	Endpoint Endpoint `json:"endpoint,omitempty"`
	Model    string   `json:"model,omitempty"`
	Priority int      `json:"priority,omitempty"`
	Function string   `json:"function,omitempty"`
	// Vars and Request are a function job's vars and the request they
	// expanded into.
	Vars    json.RawMessage `json:"vars,omitempty"`
	Request json.RawMessage `json:"request,omitempty"`
	// Job is the job exactly as submitted when it is JSON. Otherwise JobRaw
	// holds its bytes when they are text, and JobFile names the sibling file
	// (ID.raw) that holds them when they are not text or too large.
	Job     json.RawMessage `json:"job,omitempty"`
	JobRaw  *string         `json:"job_raw,omitempty"`
	JobFile string          `json:"job_file,omitempty"`
	// Source is the file name the job arrived under, when the ID differs.
	Source      string          `json:"source,omitempty"`
	Response    json.RawMessage `json:"response,omitempty"`
	Output      json.RawMessage `json:"output,omitempty"`
	Error       *JobError       `json:"error,omitempty"`
	Attempts    int             `json:"attempts"`
	SubmittedAt time.Time       `json:"submitted_at"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
	NotBefore   *time.Time      `json:"not_before,omitempty"`
	ModelLoaded bool            `json:"model_loaded"`
	// Target names the target (its configured name) that ran the last
	// attempt, and ModelDigest the digest of the model that answered, as
	// the target's /api/ps reported it.
	Target      string `json:"target,omitempty"`
	ModelDigest string `json:"model_digest,omitempty"`
	// Node names the cluster host whose target ran the last attempt
	// (DESIGN §11); empty on one host.
	Node string `json:"node,omitempty"`
	// History keeps the rounds before a retry.
	History []Round `json:"history,omitempty"`

	// Position (how many queued jobs run before this one) and
	// EstimatedStart are set in answers about a queued job (GET /jobs/ID,
	// hopper show), never in the files.
	Position       *int       `json:"position,omitempty"`
	EstimatedStart *time.Time `json:"estimated_start,omitempty"`
}

// Marshal encodes the record as indented JSON with a trailing newline, so
// cat and less show it well.
func (r *Record) Marshal() ([]byte, error) {
	data, err := marshalDoc(r)
	if err != nil {
		return nil, fmt.Errorf("encode record %s: %w", r.ID, err)
	}
	return data, nil
}

// marshalDoc encodes one of the spool's JSON documents: indented, with a
// trailing newline, <, > and & left as they are.
func marshalDoc(v any) ([]byte, error) { return jsonfmt.MarshalIndent(v) }

// ParseRecord decodes a record.
func ParseRecord(data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parse record: %w", err)
	}
	if r.ID == "" || r.State == "" {
		return nil, fmt.Errorf("parse record: no id or state")
	}
	return &r, nil
}

// isRecord reports whether a file's bytes are a hopper record rather than a
// job: an object with "id", "state" and one of "job", "job_raw", "job_file".
// A record moved back into new/ (hopper retry, hopper release, or mv by
// hand) runs its job again and keeps its history.
//
// A file with an "origin" or a "batch" field is a job whatever else it
// holds: hopper writes those into jobs that came over HTTP and into batch
// lines, never into a record. So a record-shaped body sent to the front (or
// as a batch line) cannot pass its inner job off as one hopper ran before —
// shedding its HTTP origin, and the guard on its webhook with it.
func isRecord(data []byte) bool {
	var probe struct {
		ID      *json.RawMessage `json:"id"`
		State   *json.RawMessage `json:"state"`
		Job     *json.RawMessage `json:"job"`
		JobRaw  *json.RawMessage `json:"job_raw"`
		JobFile *json.RawMessage `json:"job_file"`
		Origin  *json.RawMessage `json:"origin"`
		Batch   *json.RawMessage `json:"batch"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return false
	}
	return probe.ID != nil && probe.State != nil && (probe.Job != nil || probe.JobRaw != nil || probe.JobFile != nil) &&
		probe.Origin == nil && probe.Batch == nil
}

// readRecord reads and decodes dir/name.
func (s *Spool) readRecord(dir, name string) (*Record, error) {
	data, err := s.root.ReadFile(dir + "/" + name)
	if err != nil {
		return nil, err
	}
	r, err := ParseRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, name, err)
	}
	return r, nil
}

// FunctionAnswer is what a function job that is done answers, over HTTP
// (POST /functions/NAME) and as the body of its line in a batch's output:
// the parsed output (for functions with a schema) beside the target's
// response.
type FunctionAnswer struct {
	ID       string          `json:"id"`
	Output   json.RawMessage `json:"output,omitempty"`
	Response json.RawMessage `json:"response"`
}
