package httpfront

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/spool"
)

// Limits of GET /jobs.
const (
	defaultListLimit = 100
	maxListLimit     = 10000
)

// jobID reads and checks the {id} of a /jobs/{id} path. The mux has
// already unescaped it, so %2e%2e arrives as "..", which ValidID refuses
// like every other name that is not a plain job ID: no path ever reaches
// the file system.
func jobID(r *http.Request) (string, *httpError) {
	id := r.PathValue("id")
	if !spool.ValidID(id) {
		return "", errorf(http.StatusBadRequest, "invalid job ID %q: an ID is a letter or digit, then up to 127 letters, digits, '.', '_' or '-'", id)
	}
	return id, nil
}

// syntaxError refuses a body that is not JSON with 400, or returns nil.
// The message is notJSON ("the job is not valid JSON"), then what is
// wrong and where as jsonfmt.SyntaxError words it, just as the spool words
// a job file (spool.ParseJob): `hopper submit` and POST /jobs report the
// same mistake the same way. The answer also gives the position as
// "line", "column" and "offset".
func syntaxError(body []byte, notJSON string) *httpError {
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(http.StatusBadRequest, "the request body is empty: send the job as a JSON object")
	}
	if json.Valid(body) {
		return nil
	}
	var v any
	err := json.Unmarshal(body, &v)
	se := jsonfmt.Locate(body, err)
	if se == nil {
		return errorf(http.StatusBadRequest, "%s: %v", notJSON, err)
	}
	e := errorf(http.StatusBadRequest, "%s: %v", notJSON, se)
	e.extra = map[string]any{"line": se.Line, "column": se.Column, "offset": se.Offset}
	return e
}

// spliceJob is the size from which writeRecord writes a record's job as
// it is rather than encoding it again (indented, as the rest).
const spliceJob = 64 << 10

// writeRecord answers with a record as its file holds it. A large job is
// written as its bytes are, between the record's other members, so that
// answering does not hold two more copies of it.
func writeRecord(w http.ResponseWriter, status int, rec *spool.Record) {
	w.Header().Set("X-Hopper-State", string(rec.State))
	at, data := -1, []byte(nil)
	if len(rec.Job) >= spliceJob {
		r := *rec
		r.Job = json.RawMessage("0")
		data, _ = r.Marshal()
		// The record's own "job" member is at the top level, indented by
		// two; strings hold no raw newline.
		if at = bytes.Index(data, []byte("\n  \"job\": 0")); at >= 0 {
			at += len("\n  \"job\": ")
		}
	}
	if at < 0 {
		data, err := rec.Marshal()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, status, data)
		return
	}
	job := rec.Job
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	for _, part := range [][]byte{data[:at], bytes.TrimSpace(job), data[at+1:]} {
		if _, err := w.Write(part); err != nil {
			return
		}
	}
}

// record reads job id's record, looking again when the job moved while it
// looked.
func (s *Server) record(id string) (*spool.Record, error) {
	var err error
	for try := 0; try < 5; try++ {
		var rec *spool.Record
		rec, err = s.sp.Get(id)
		if !errors.Is(err, spool.ErrGone) {
			return rec, err
		}
	}
	return nil, err
}

// readJob reads job id's record, or answers r with the storage error and
// returns nil.
func (s *Server) readJob(w http.ResponseWriter, r *http.Request, id string) *spool.Record {
	rec, err := s.record(id)
	if err != nil {
		writeError(w, r, s.storageError("read the job", err))
	}
	return rec
}

// pathJob reads the record of the job r's path names ({id}), or answers r
// with why it cannot and returns a nil record.
func (s *Server) pathJob(w http.ResponseWriter, r *http.Request) (string, *spool.Record) {
	id, e := jobID(r)
	if e != nil {
		writeError(w, r, e)
		return id, nil
	}
	return id, s.readJob(w, r, id)
}

// poll takes one of the long-poll places of r's client and returns the
// context a wait runs under (it ends with the request or the server);
// done gives both back.
func (s *Server) poll(r *http.Request) (ctx context.Context, done func(), e *httpError) {
	release, e := s.pollers.take(r.RemoteAddr)
	if e != nil {
		return nil, nil, e
	}
	ctx, cancel := s.waitContext(r.Context())
	return ctx, func() {
		cancel()
		release()
	}, nil
}

// waiting tells the test hook, if any, that a request waits on job id.
func (s *Server) waiting(id string) {
	if s.cfg.hooks.onWait != nil {
		s.cfg.hooks.onWait(id)
	}
}

// originMember marks a job as one that arrived over HTTP: its webhook is
// then guarded (spool.OriginHTTP). The front writes it itself, so the
// spool need not decode and encode the job again to set it.
const originMember = `"origin":"http"`

// submitJob serves POST /jobs: the body is a job file. It answers 202 with
// the record so far and Location: /jobs/ID.
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	// The body's bytes stay taken from the budget until the answer, which
	// holds the job too, is written.
	b, e := s.readBody(w, r, len(originMember)+1)
	if e != nil {
		writeError(w, r, e)
		return
	}
	defer b.release()
	if e := syntaxError(b.data, "the job is not valid JSON"); e != nil {
		writeError(w, r, e)
		return
	}
	info, e := s.checkJob(r, b.data)
	if e != nil {
		writeError(w, r, e)
		return
	}
	// The key names the body as sent; the job file is written from the
	// same buffer, marked as arrived over HTTP.
	var hash string
	if info.key != "" {
		hash = bodyHash(b.data)
	}
	job := rewriteObject(b.buf, b.front, originMember, func(m member) bool { return m.is("origin") })
	var id string
	if info.key != "" {
		var replay *spool.Record
		id, replay, e = s.submitOnce(job, hash, info.key)
		if e != nil {
			writeError(w, r, e)
			return
		}
		if replay != nil {
			w.Header().Set("Location", "/jobs/"+replay.ID)
			w.Header().Set("Idempotent-Replayed", "true")
			writeRecord(w, http.StatusOK, replay)
			return
		}
	} else {
		var err error
		id, err = s.sp.Submit(job, spool.SubmitOptions{Origin: spool.OriginHTTP})
		if err != nil {
			writeError(w, r, s.badJob(err))
			return
		}
	}
	s.log.Info("job queued", "job", id, "remote", r.RemoteAddr)
	s.catalog.Refresh(id) // so the caller's next GET /jobs lists it
	// The record so far, as the spool describes a queued job, from what
	// is at hand rather than from reading the job back.
	rec := &spool.Record{ID: id, State: spool.StateQueued, Endpoint: info.endpoint, Model: info.model,
		Priority: info.priority, Function: info.function, Job: job, SubmittedAt: s.cfg.Now().UTC()}
	if t, ok := s.sp.QueuedAt(id); ok {
		rec.SubmittedAt = t
	}
	w.Header().Set("Location", "/jobs/"+id)
	writeRecord(w, http.StatusAccepted, rec)
}

// jobInfo is what the front keeps of a job it checked.
type jobInfo struct {
	key             string // the idempotency key: the header's, else the job's
	endpoint        spool.Endpoint
	model, function string
	priority        int
}

// checkJob checks a job file sent to POST /jobs before anything is
// written: that it is a job, its function and vars if it names one, its
// webhook, and its idempotency key. The parsed job is not kept: the spool
// parses the job again as it writes it, and one parsed copy of a large
// job at a time is enough.
func (s *Server) checkJob(r *http.Request, data []byte) (jobInfo, *httpError) {
	job, err := spool.ParseJob(data, s.sp.Options().MaxJobSize)
	if err != nil {
		return jobInfo{}, s.badJob(err)
	}
	if job.Function != "" {
		if e := s.checkFunction(job); e != nil {
			return jobInfo{}, e
		}
	}
	if e := s.checkWebhook(job.Webhook, job.Function); e != nil {
		return jobInfo{}, e
	}
	info := jobInfo{key: r.Header.Get("Idempotency-Key"), endpoint: job.Endpoint, model: job.Model,
		function: job.Function, priority: job.Priority}
	if info.key == "" {
		info.key = job.IdempotencyKey
	}
	if len(info.key) > MaxKeyLen {
		return jobInfo{}, errorf(http.StatusBadRequest, "the idempotency key is %d bytes; at most %d are allowed", len(info.key), MaxKeyLen)
	}
	return info, nil
}

// badJob answers a job the spool refused: 422 for a job that is JSON but
// cannot run, a storage error for anything else.
func (s *Server) badJob(err error) *httpError {
	var bad *spool.BadInputError
	if errors.As(err, &bad) {
		return errorf(http.StatusUnprocessableEntity, "%s", bad.Reason)
	}
	return s.storageError("submit the job", err)
}

// submitOnce submits job under an idempotency key for a body whose hash
// is hash. It returns the new job's ID, or the record of the job the key
// already names (replay).
func (s *Server) submitOnce(job []byte, hash, key string) (id string, replay *spool.Record, e *httpError) {
	var rec *spool.Record
	id, replayed, e := s.idempotent(key, hash, "job", s.sp.NewID,
		func(id string) *httpError {
			if _, err := s.sp.Submit(job, spool.SubmitOptions{ID: id, Origin: spool.OriginHTTP}); err != nil {
				return s.badJob(err)
			}
			return nil
		},
		func(id string) (bool, error) {
			r, err := s.record(id)
			if errors.Is(err, spool.ErrNotFound) {
				return false, nil
			}
			rec = r
			return err == nil, err
		})
	if replayed {
		return "", rec, nil
	}
	return id, nil, e
}

// idempotent makes one thing under an idempotency key, with Stripe's
// semantics: the first request with the key makes it (create, under a new
// name from newName); a later one with the same body (hash: bodyHash) is a replay of what
// the first made, once exists finds it; the key with another body is 422.
// what names the thing in messages.
func (s *Server) idempotent(key, hash string, what string, newName func() string,
	create func(id string) *httpError, exists func(id string) (bool, error)) (id string, replayed bool, e *httpError) {
	for try := 0; try < 3; try++ {
		id = newName()
		old, err := s.keys.claim(key, hash, id)
		if err != nil {
			return "", false, s.storageError("record the idempotency key", err)
		}
		if old == nil {
			if e := create(id); e != nil {
				s.keys.release(key)
				return "", false, e
			}
			return id, false, nil
		}
		if old.BodyHash != hash {
			e := errorf(http.StatusUnprocessableEntity, "the idempotency key %q was already used for %s %s with a different request body; use a new key for a new %s", key, what, old.ID, what)
			e.extra = map[string]any{"id": old.ID}
			return "", false, e
		}
		ok, err := exists(old.ID)
		if err != nil {
			return "", false, s.storageError("read the "+what, err)
		}
		if ok {
			return old.ID, true, nil
		}
		if s.keys.inFlight(old) {
			e := errorf(http.StatusConflict, "a request with the idempotency key %q is still being handled; try again shortly", key)
			e.header = http.Header{"Retry-After": {"1"}}
			return "", false, e
		}
		// The key names something that no longer exists (pruned, or
		// its making never completed): the key is free again.
		s.keys.release(key)
	}
	return "", false, errorf(http.StatusConflict, "the idempotency key %q is contended; try again", key)
}

// getJob serves GET /jobs/{id}; ?wait=30s (or ?wait=30) long-polls until
// the job is done or failed or the wait is over, and answers the record
// either way.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	id, e := jobID(r)
	if e != nil {
		writeError(w, r, e)
		return
	}
	wait, e := waitParam(r.URL.Query().Get("wait"), s.cfg.MaxWait)
	if e != nil {
		writeError(w, r, e)
		return
	}
	rec := s.readJob(w, r, id)
	if rec == nil {
		return
	}
	if wait > 0 && !rec.State.Terminal() {
		ctx, done, e := s.poll(r)
		if e != nil {
			writeError(w, r, e)
			return
		}
		defer done()
		ctx, cancelWait := context.WithTimeout(ctx, wait)
		defer cancelWait()
		s.waiting(id)
		final, err := s.follow(ctx, id, nil, nil)
		switch {
		case err == nil:
			rec = final
		case r.Context().Err() != nil:
			return // the client left
		case ctx.Err() != nil:
			if now, err := s.record(id); err == nil {
				rec = now
			}
		default:
			writeError(w, r, s.storageError("wait for the job", err))
			return
		}
	}
	s.catalog.Place(rec, s.cfg.Now())
	writeRecord(w, http.StatusOK, rec)
}

// waitParam parses ?wait=: a Go duration or a number of seconds, capped.
func waitParam(v string, max time.Duration) (time.Duration, *httpError) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil {
			return 0, errorf(http.StatusBadRequest, "invalid wait %q: give a duration like 30s or a number of seconds", v)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 {
		return 0, errorf(http.StatusBadRequest, "invalid wait %q: it cannot be negative", v)
	}
	return min(d, max), nil
}

// jobOutput serves GET /jobs/{id}/out: the job's live output as NDJSON,
// each line as the target sent it, from the first; it ends when the job
// ends. A job that already finished has no output left (its answer is the
// record's response), so the body is empty.
func (s *Server) jobOutput(w http.ResponseWriter, r *http.Request) {
	id, rec := s.pathJob(w, r)
	if rec == nil {
		return
	}
	if rec.State.Terminal() {
		// Its live output is gone with it: the answer stands for it, as
		// the one final object the target sent (nothing if it failed
		// without one).
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("X-Hopper-State", string(rec.State))
		w.WriteHeader(http.StatusOK)
		var line bytes.Buffer
		if len(rec.Response) > 0 && json.Compact(&line, rec.Response) == nil {
			line.WriteByte('\n')
			_, _ = w.Write(line.Bytes())
		}
		return
	}
	ctx, done, e := s.poll(r)
	if e != nil {
		writeError(w, r, e)
		return
	}
	defer done()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	s.waiting(id)
	_, err := s.follow(ctx, id, func(line []byte) error {
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	}, nil)
	if err != nil && ctx.Err() == nil {
		s.log.Warn("job output", "job", id, "err", err)
	}
}

// cancelJob serves DELETE /jobs/{id}: a queued, deferred or held job is
// canceled at once (200 with its failed record); a running one is asked to
// stop (202; the runner aborts it and it lands in failed/ as canceled).
// A finished job is 409.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	id, e := jobID(r)
	if e != nil {
		writeError(w, r, e)
		return
	}
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		reason = "canceled over HTTP"
	}
	running, err := s.cancel(id, reason)
	if err != nil {
		if errors.Is(err, errFinished) {
			rec, _ := s.record(id)
			e := errorf(http.StatusConflict, "job %s already finished", id)
			if rec != nil {
				e.msg = fmt.Sprintf("job %s already finished (%s)", id, rec.State)
				e.extra = map[string]any{"state": rec.State}
			}
			writeError(w, r, e)
			return
		}
		writeError(w, r, s.storageError("cancel the job", err))
		return
	}
	s.log.Info("job canceled", "job", id, "running", running, "reason", reason)
	s.catalog.Refresh(id)
	rec := s.readJob(w, r, id)
	if rec == nil {
		return
	}
	if running {
		writeRecord(w, http.StatusAccepted, rec)
		return
	}
	writeRecord(w, http.StatusOK, rec)
}

// errFinished means a job could not be canceled because it had finished.
var errFinished = errors.New("the job already finished")

// cancel cancels job id, trying again when a runner claimed it meanwhile.
func (s *Server) cancel(id, reason string) (running bool, err error) {
	for try := 0; try < 5; try++ {
		dir, err := s.sp.Find(id)
		if err != nil {
			return false, err
		}
		if dir == spool.DirDone || dir == spool.DirFailed {
			return false, errFinished
		}
		running, err = s.sp.Cancel(id, reason)
		if err == nil {
			return running, nil
		}
		if !errors.Is(err, spool.ErrGone) {
			if d, ferr := s.sp.Find(id); ferr == nil && (d == spool.DirDone || d == spool.DirFailed) {
				return false, errFinished
			}
			return false, err
		}
	}
	return false, fmt.Errorf("cancel %s: the job kept moving", id)
}

// listJobs serves GET /jobs?state=queued,working&model=M&limit=100&after=ID:
// records newest first, as {"jobs": [...], "total": N, "next": ID} where
// total counts every match and next, when more match, is the after= of
// the following page. It pages through the front's catalog and reads only
// the records it answers with.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var states []spool.State
	for _, v := range q["state"] {
		for _, st := range strings.Split(v, ",") {
			st = strings.TrimSpace(st)
			if st == "" {
				continue
			}
			if !slices.Contains(allStates, spool.State(st)) {
				writeError(w, r, errorf(http.StatusBadRequest, "unknown state %q: use %s", st, joinStates()))
				return
			}
			states = append(states, spool.State(st))
		}
	}
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, r, errorf(http.StatusBadRequest, "invalid limit %q: give a number from 1 to %d", v, maxListLimit))
			return
		}
		limit = min(n, maxListLimit)
	}
	if err := s.catalog.WaitReady(r.Context()); err != nil {
		return // the client left while the catalog was being filled
	}
	page, err := s.catalog.Page(spool.CatalogQuery{States: states, Model: q.Get("model"), After: q.Get("after"), Limit: limit})
	if err != nil {
		writeError(w, r, errorf(http.StatusBadRequest, "after: %v", err))
		return
	}
	recs := make([]*spool.Record, 0, len(page.Jobs))
	for _, j := range page.Jobs {
		rec, err := s.sp.Get(j.ID)
		if err != nil {
			// Unreadable or pruned this moment: answer what the catalog
			// knew rather than break the page. (A job that moved on since
			// the catalog looked is answered as it is now.)
			rec = j.Record()
		}
		recs = append(recs, rec)
	}
	data, err := json.Marshal(struct {
		Jobs  []*spool.Record `json:"jobs"`
		Total int             `json:"total"`
		Next  string          `json:"next,omitempty"`
	}{recs, page.Total, page.Next})
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, "encode: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, append(data, '\n'))
}

var allStates = []spool.State{spool.StateQueued, spool.StateLoading, spool.StateWorking,
	spool.StateDeferred, spool.StateHeld, spool.StateDone, spool.StateFailed}

func joinStates() string {
	names := make([]string, len(allStates))
	for i, st := range allStates {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// await waits until job id ends and returns its record. If the wait fails
// it abandons the job, answers the error unless the client has gone, and
// returns nil.
func (s *Server) await(ctx context.Context, w http.ResponseWriter, r *http.Request, id string) *spool.Record {
	rec, err := s.follow(ctx, id, nil, nil)
	if err != nil {
		s.abandon(id, r, err)
		if r.Context().Err() == nil {
			writeError(w, r, s.storageError("wait for the job", err))
		}
		return nil
	}
	return rec
}
