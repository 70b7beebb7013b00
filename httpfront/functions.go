package httpfront

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/spool"
)

// Functions resolves named functions; *functions.Registry is one.
type Functions interface {
	Lookup(name string) (*functions.Function, error)
}

// invokeFunction serves POST /functions/{name}: the body is the vars. It
// checks the function and the vars, queues a function job, and answers
// {id, output, response} once it is done — or at once, 202 with Location,
// when the client sends Prefer: respond-async.
func (s *Server) invokeFunction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if s.cfg.Functions == nil {
		writeError(w, r, errorf(http.StatusNotFound, "unknown function %q: no functions are defined", name))
		return
	}
	fn, err := s.cfg.Functions.Lookup(name)
	if err != nil {
		writeError(w, r, errorf(http.StatusNotFound, "%s", err.Error()))
		return
	}
	body, e := s.readBody(w, r)
	if e != nil {
		writeError(w, r, e)
		return
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	if e := syntaxError(body); e != nil {
		writeError(w, r, e)
		return
	}
	if _, _, err := fn.Expand(body); err != nil {
		writeError(w, r, errorf(http.StatusBadRequest, "%s", err.Error()))
		return
	}
	job := map[string]any{"function": fn.Name, "vars": json.RawMessage(body)}
	if fn.Priority != 0 {
		job["priority"] = fn.Priority
	}
	if v := r.Header.Get("X-Hopper-Priority"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, r, errorf(http.StatusBadRequest, "X-Hopper-Priority must be an integer, got %q", v))
			return
		}
		job["priority"] = p
	}
	data, err := spool.EncodeJSON(job)
	if err != nil {
		writeError(w, r, storageError("encode job", err))
		return
	}
	id, err := s.sp.Submit(data, spool.SubmitOptions{Origin: spool.OriginHTTP})
	if err != nil {
		writeError(w, r, badJob(err))
		return
	}
	if preferAsync(r) {
		rec, err := s.record(id)
		if err != nil {
			writeError(w, r, storageError("read job", err))
			return
		}
		w.Header().Set("Location", "/jobs/"+id)
		writeRecord(w, http.StatusAccepted, rec)
		return
	}
	if !s.acquire() {
		writeError(w, r, s.busy(r))
		return
	}
	defer s.release()
	w.Header().Set("X-Hopper-Job-Id", id)
	ctx, cancel := s.waitContext(r.Context())
	defer cancel()
	rec, err := s.follow(ctx, id, nil, nil)
	if err != nil {
		s.abandon(id, r, err)
		if r.Context().Err() == nil {
			writeError(w, r, storageError("wait for the job", err))
		}
		return
	}
	if rec.State != spool.StateDone {
		e := recordStatus(rec)
		e.extra = map[string]any{"id": id}
		writeError(w, r, e)
		return
	}
	out, err := json.Marshal(spool.FunctionAnswer{ID: id, Output: compact(rec.Output), Response: compact(rec.Response)})
	if err != nil {
		writeError(w, r, storageError("encode answer", err))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// preferAsync reports whether the client sent Prefer: respond-async.
func preferAsync(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
				return true
			}
		}
	}
	return false
}

// checkFunction refuses a job naming a function that does not exist or
// whose vars do not expand (422), so nothing is queued that must fail.
func (s *Server) checkFunction(job *spool.Job) *httpError {
	if s.cfg.Functions == nil {
		return errorf(http.StatusUnprocessableEntity, "unknown function %q: no functions are defined", job.Function)
	}
	fn, err := s.cfg.Functions.Lookup(job.Function)
	if err != nil {
		return errorf(http.StatusUnprocessableEntity, "%s", err.Error())
	}
	if _, _, err := fn.Expand(job.Vars); err != nil {
		return errorf(http.StatusUnprocessableEntity, "%s", err.Error())
	}
	return nil
}
