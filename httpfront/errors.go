package httpfront

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"syscall"

	"github.com/hopper-dev/hopper/internal/openai"
	"github.com/hopper-dev/hopper/spool"
)

// StatusClientClosedRequest is what Ollama answers a request whose job was
// canceled (its handleScheduleError: 499 "request canceled").
const StatusClientClosedRequest = spool.StatusClientClosedRequest

// Ollama's own words, kept so that clients matching on them keep working.
const (
	msgBusy          = "server busy, please try again.  maximum pending requests exceeded"
	msgCanceled      = "request canceled"
	msgMissingBody   = "missing request body"
	msgModelRequired = "model is required"
)

// httpError is an answer that is an error: a status, a message, and extra
// fields for the hopper shape.
type httpError struct {
	status int
	msg    string
	code   string         // OpenAI's error.code, when there is one
	oaType string         // OpenAI's error.type, when not the status's usual one
	extra  map[string]any // more fields of hopper's {"error": ...} object
	header http.Header
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// shape is the error dialect of an endpoint.
type shape int

const (
	shapeOllama shape = iota // {"error": "..."}, also hopper's own API
	shapeOpenAI              // {"error": {"message", "type", "param", "code"}}
)

// shapeOf picks the dialect from the path: /v1/ speaks OpenAI's.
func shapeOf(r *http.Request) shape {
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		return shapeOpenAI
	}
	return shapeOllama
}

// openaiType is the error type Ollama's OpenAI layer gives a status when it
// refuses a request itself (openai.NewError). Errors from the handler
// behind that layer are always "api_error" (its writeError), so those set
// httpError.oaType.
func openaiType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusUnauthorized:
		return "invalid_request_error"
	case http.StatusNotFound:
		return "not_found_error"
	}
	return "api_error"
}

// errorJSON is the body of an error in the given dialect.
func errorJSON(sh shape, e *httpError) []byte {
	var v any
	if sh == shapeOpenAI {
		b := openai.Error{Message: e.msg, Type: e.oaType}
		if b.Type == "" {
			b.Type = openaiType(e.status)
		}
		if e.code != "" {
			b.Code = &e.code
		}
		v = openai.ErrorBody{Error: b}
	} else {
		m := map[string]any{"error": e.msg}
		for k, x := range e.extra {
			m[k] = x
		}
		v = m
	}
	data, _ := json.Marshal(v)
	return data
}

// writeError answers with e in the dialect of the request's endpoint.
func writeError(w http.ResponseWriter, r *http.Request, e *httpError) {
	for k, vs := range e.header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeJSON(w, e.status, append(errorJSON(shapeOf(r), e), '\n'))
}

// writeJSON writes a JSON body with Ollama's content type.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// recordError maps a failed record to the answer a drop-in client gets:
// the target's own status and words when the target refused the job, and
// for hopper's own failures the status Ollama gives the nearest thing. On
// /v1 the type is "api_error" whatever the status, as Ollama's OpenAI layer
// reports every error of the handler behind it.
func recordError(r *spool.Record) *httpError {
	e := recordStatus(r)
	e.oaType = "api_error"
	return e
}

func recordStatus(r *spool.Record) *httpError {
	e := r.Error
	if e == nil {
		return errorf(http.StatusInternalServerError, "the job failed without saying why")
	}
	msg := e.Message
	if e.Kind == spool.KindCanceled {
		msg = msgCanceled + ": " + msg
	}
	return &httpError{status: e.HTTPStatus(), msg: msg}
}

// storageError answers a spool failure that is not the client's doing.
// The answer names the operation and the condition ("the spool's disk is
// full") but never a path or the system's words, which would show the
// spool's location to anyone who can fill the disk; the full error goes
// to the log. A job that is not there is 404 with the spool's words,
// which name it by ID.
func (s *Server) storageError(op string, err error) *httpError {
	if errors.Is(err, spool.ErrNotFound) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	s.log.Error("http: spool error", "op", op, "err", err)
	status, why := http.StatusInternalServerError, "the spool could not be read or written (hopper's log says why)"
	var header http.Header
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		status, why = http.StatusInsufficientStorage, "the spool's disk is full"
	case errors.Is(err, syscall.EROFS):
		why = "the spool is on a read-only file system"
	case errors.Is(err, fs.ErrPermission):
		why = "hopper may not read or write the spool's files"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		status, why = http.StatusServiceUnavailable, "hopper has too many files open; try again shortly"
		header = http.Header{"Retry-After": {"1"}}
	}
	return &httpError{status: status, msg: fmt.Sprintf("cannot %s: %s", op, why), header: header}
}
