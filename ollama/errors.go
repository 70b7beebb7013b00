package ollama

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// UnavailableError reports that the target is down or busy: the request may
// be sent again later without counting against the job.
type UnavailableError struct {
	Status     int           // HTTP status (429 or 503), 0 when no response arrived
	RetryAfter time.Duration // from a Retry-After header, 0 when absent
	Err        error         // the transport error, or the target's message
}

func (e *UnavailableError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("target unavailable (status %d): %v", e.Status, e.Err)
	}
	return fmt.Sprintf("target unavailable: %v", e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// JobFailedError reports that this request failed in a way that may not
// repeat: a 5xx other than 503, a connection lost after the response had
// started, an error reported inside a 200 stream, or a stalled stream.
type JobFailedError struct {
	Status  int    // HTTP status of the response (200 for failures inside a stream)
	Message string // the target's message, or what went wrong
	Err     error  // the underlying error, if any
}

func (e *JobFailedError) Error() string {
	switch {
	case e.Message != "" && e.Err != nil:
		return e.Message + ": " + e.Err.Error()
	case e.Message != "":
		return e.Message
	case e.Err != nil:
		return e.Err.Error()
	default:
		return fmt.Sprintf("request failed with status %d", e.Status)
	}
}

func (e *JobFailedError) Unwrap() error { return e.Err }

// RejectedError reports that the target refused the request itself (a 4xx
// other than 429): sending it again will not help.
type RejectedError struct {
	Status  int    // HTTP status, e.g. 400 or 404
	Message string // the target's message, verbatim
}

// Error returns the target's message exactly as it gave it.
func (e *RejectedError) Error() string { return e.Message }

var (
	errStalled   = errors.New("stream stalled")
	errNotObject = errors.New("not a JSON object")
)

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 1 << 20

// statusError classifies a non-2xx response whose body (at most maxErrorBody
// bytes) has been read into body.
func statusError(code int, header http.Header, body []byte, now time.Time) error {
	msg := errorMessage(body)
	if msg == "" {
		msg = strings.TrimSpace(string(body))
	}
	if msg == "" {
		msg = http.StatusText(code)
	}
	switch {
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return &UnavailableError{
			Status:     code,
			RetryAfter: retryAfter(header.Get("Retry-After"), now),
			Err:        &targetMessage{msg},
		}
	case code >= 500:
		return &JobFailedError{Status: code, Message: msg}
	case code >= 400:
		return &RejectedError{Status: code, Message: msg}
	default:
		return &JobFailedError{Status: code, Message: fmt.Sprintf("unexpected status %d: %s", code, msg)}
	}
}

// targetMessage is an error carrying the target's own words.
type targetMessage struct{ msg string }

func (m *targetMessage) Error() string { return m.msg }

// errorMessage extracts the message from Ollama's {"error": "..."} or
// OpenAI's {"error": {"message": "..."}}; it returns "" for anything else.
func errorMessage(body []byte) string {
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Error) == 0 {
		return ""
	}
	return messageOf(v.Error)
}

// messageOf reads an "error" value: a string, or an object with a message.
func messageOf(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return o.Message
	}
	return ""
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
