package ollama

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
	Message string // the target's message (at most 4 KiB), or what went wrong
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
	Message string // the target's message, verbatim up to 4 KiB
}

// Error returns the target's message as it gave it, cut at 4 KiB like
// every text from the target that an error carries.
func (e *RejectedError) Error() string { return e.Message }

var (
	// ErrLineTooLong is wrapped by the *JobFailedError of a request whose
	// stream held a line longer than Client.MaxLine.
	ErrLineTooLong = errors.New("line too long")
	// ErrAnswerTooLarge is wrapped by the *JobFailedError of a request
	// whose answer was larger than Client.MaxAnswer.
	ErrAnswerTooLarge = errors.New("answer too large")

	errStalled   = errors.New("stream stalled")
	errAbandoned = errors.New("request abandoned after a failure")
	errNotObject = errors.New("not a JSON object")
)

// maxErrorBody bounds how much of an error response is read: enough for
// a message of maxMessage bytes in Ollama's or OpenAI's JSON, escapes and
// all.
const maxErrorBody = 64 << 10

// maxMessage bounds the target's own text in an error (its message, or the
// body of an error response); a cut is marked with "…". Errors end up in
// records and logs, which a target must not be able to fill.
const maxMessage = 4 << 10

// clip cuts s to at most maxMessage bytes, at a character boundary, and
// marks the cut with "…".
func clip(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	i := maxMessage
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// byteSize writes n as "16 MiB" when it is a whole number of KiB or MiB.
func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + " KiB"
	}
	return strconv.Itoa(n) + " bytes"
}

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
	msg = clip(msg)
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
