package httpfront

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/spool"
)

// Functions resolves named functions; *functions.Registry is one.
type Functions interface {
	Lookup(name string) (*functions.Function, error)
}

// lister is a Functions that can list them all; *functions.Registry is one.
type lister interface {
	Current() *functions.Set
}

// listFunctions serves GET /functions: every function, as `hopper
// functions --json` describes it, by name.
func (s *Server) listFunctions(w http.ResponseWriter, r *http.Request) {
	infos := []functions.Info{}
	if l, ok := s.cfg.Functions.(lister); ok && s.cfg.Functions != nil {
		set := l.Current()
		for _, name := range set.Names() {
			if f, ok := set.Get(name); ok {
				infos = append(infos, f.Info())
			}
		}
	}
	writeObject(w, r, map[string]any{"functions": infos})
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
	if e := s.checkWebhook("", fn.Name); e != nil {
		writeError(w, r, e)
		return
	}
	// The job is {"function", "origin", "priority", "vars": BODY}, made in
	// the buffer the body is read into.
	quoted, err := jsonfmt.Marshal(fn.Name)
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, "encode the function's name: %v", err))
		return
	}
	head := `{"function":` + string(quoted) + `,` + originMember
	priority := fn.Priority
	if v := r.Header.Get("X-Hopper-Priority"); v != "" {
		if priority, err = strconv.Atoi(v); err != nil {
			writeError(w, r, errorf(http.StatusBadRequest, "X-Hopper-Priority must be an integer, got %q", v))
			return
		}
		head += `,"priority":` + strconv.Itoa(priority)
	} else if priority != 0 {
		head += `,"priority":` + strconv.Itoa(priority)
	}
	head += `,"vars":`
	b, e := s.readBody(w, r, len(head))
	if e != nil {
		writeError(w, r, e)
		return
	}
	defer b.release()
	vars := b.data
	if len(bytes.TrimSpace(vars)) == 0 {
		vars = []byte("{}")
	}
	if e := syntaxError(vars, "the vars are not valid JSON"); e != nil {
		writeError(w, r, e)
		return
	}
	if _, _, err := fn.Expand(vars); err != nil {
		writeError(w, r, errorf(http.StatusBadRequest, "%s", err.Error()))
		return
	}
	var job []byte
	if len(b.data) == len(vars) {
		n := copy(b.buf, head) + len(vars) // the body follows head already
		b.buf[n] = '}'
		job = b.buf[:n+1]
	} else {
		job = []byte(head + string(vars) + "}")
	}
	id, err := s.sp.Submit(job, spool.SubmitOptions{Origin: spool.OriginHTTP})
	b.release()
	if err != nil {
		writeError(w, r, s.badJob(err))
		return
	}
	s.catalog.Refresh(id)
	if preferAsync(r) {
		rec := s.readJob(w, r, id)
		if rec == nil {
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
	rec := s.await(ctx, w, r, id)
	if rec == nil {
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
		writeError(w, r, errorf(http.StatusInternalServerError, "encode the answer: %v", err))
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
