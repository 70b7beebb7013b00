package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Endpoints maps each endpoint name a job may give to the target's path.
var endpointPaths = map[string]string{
	"chat":               "/api/chat",
	"generate":           "/api/generate",
	"embed":              "/api/embed",
	"embeddings":         "/api/embeddings",
	"openai.chat":        "/v1/chat/completions",
	"openai.completions": "/v1/completions",
	"openai.embeddings":  "/v1/embeddings",
}

// EndpointPath returns the target path for an endpoint name, or "".
func EndpointPath(endpoint string) string { return endpointPaths[endpoint] }

// EndpointNames lists the valid endpoint names, sorted.
func EndpointNames() []string {
	names := make([]string, 0, len(endpointPaths))
	for n := range endpointPaths {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Streams reports whether an endpoint answers with a token stream (and so
// is sent with "stream": true).
func Streams(endpoint string) bool {
	switch endpoint {
	case "chat", "generate", "openai.chat", "openai.completions":
		return true
	}
	return false
}

// hopperFields are the job fields hopper consumes; they never reach the
// target. "stream" is hopper's to set.
var hopperFields = []string{"endpoint", "function", "vars", "webhook", "meta", "priority",
	"max_attempts", "timeout", "max_age", "idempotency_key", "origin", "batch", "custom_id", "batch_key", "waited", "stream"}

// OriginHTTP marks a job the HTTP front wrote ("origin": "http"). Its
// webhook came from a network client, so deliveries to it are guarded
// against reaching private addresses; jobs dropped as files are trusted.
const OriginHTTP = "http"

// Job is a parsed job file: hopper's fields, and the request body for the
// target with every other field kept byte for byte.
type Job struct {
	Endpoint       string
	Model          string
	Function       string
	Vars           json.RawMessage
	Webhook        string
	Meta           json.RawMessage
	Priority       int
	MaxAttempts    int           // 0: the configured default
	Timeout        time.Duration // 0: the configured default
	MaxAge         time.Duration // 0: the configured default
	IdempotencyKey string
	Origin         string // OriginHTTP, or "" for a job dropped as a file
	// Batch and CustomID are set on the jobs a batch's lines become: the
	// batch's name and the line's custom_id.
	Batch    string
	CustomID string
	// BatchKey proves a batch line was written by hopper (Spool.lineKey).
	BatchKey string
	// Waited names the front process whose client waits for the answer on
	// a connection (the drop-in; SubmitOptions.Waited).
	Waited string
	// Body holds the fields passed through to the target: everything but
	// hopper's own fields, each value exactly as submitted.
	Body map[string]json.RawMessage
}

// BadInputError says why a job file cannot run, in words for a person.
type BadInputError struct{ Reason string }

func (e *BadInputError) Error() string { return e.Reason }

func badInput(format string, args ...any) error {
	return &BadInputError{Reason: fmt.Sprintf(format, args...)}
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// trimBOM drops a UTF-8 byte order mark, which some editors write.
func trimBOM(data []byte) []byte { return bytes.TrimPrefix(data, utf8BOM) }

// ParseJob parses and checks a job file. Errors are *BadInputError with a
// sentence a person understands.
func ParseJob(data []byte, maxSize int64) (*Job, error) {
	if maxSize > 0 && int64(len(data)) > maxSize {
		return nil, badInput("the job is %d bytes, over the limit of %d bytes (max_job_size)", len(data), maxSize)
	}
	data = trimBOM(data)
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badInput("the job file is empty")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, jsonError(data, err)
	}
	if fields == nil {
		return nil, badInput("a job must be a JSON object, got null")
	}
	j := &Job{Body: fields}
	if err := j.take(); err != nil {
		return nil, err
	}
	return j, nil
}

// take moves hopper's fields out of Body into j and checks them.
func (j *Job) take() error {
	f := j.Body
	var err error
	str := func(key string, dst *string) {
		if raw, ok := f[key]; ok && err == nil {
			if e := json.Unmarshal(raw, dst); e != nil {
				err = badInput("%q must be a string, got %s", key, describe(raw))
			}
		}
	}
	integer := func(key string, dst *int) {
		if raw, ok := f[key]; ok && err == nil {
			if e := json.Unmarshal(raw, dst); e != nil {
				err = badInput("%q must be an integer, got %s", key, describe(raw))
			}
		}
	}
	duration := func(key string, dst *time.Duration) {
		raw, ok := f[key]
		if !ok || err != nil {
			return
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			err = badInput("%q must be a duration like \"90s\" or \"10m\", got %s", key, describe(raw))
			return
		}
		if s == "" {
			return
		}
		d, e := time.ParseDuration(s)
		if e != nil || d < 0 {
			err = badInput("%q must be a duration like \"90s\" or \"10m\", got %q", key, s)
			return
		}
		*dst = d
	}
	object := func(key string, dst *json.RawMessage) {
		if raw, ok := f[key]; ok && err == nil {
			t := firstByte(raw)
			if t != '{' && !bytes.Equal(raw, []byte("null")) {
				err = badInput("%q must be a JSON object, got %s", key, describe(raw))
				return
			}
			if t == '{' {
				*dst = raw
			}
		}
	}
	str("endpoint", &j.Endpoint)
	str("function", &j.Function)
	object("vars", &j.Vars)
	str("webhook", &j.Webhook)
	if raw, ok := f["meta"]; ok && err == nil {
		j.Meta = raw // any JSON value: it is the caller's
	}
	integer("priority", &j.Priority)
	integer("max_attempts", &j.MaxAttempts)
	duration("timeout", &j.Timeout)
	duration("max_age", &j.MaxAge)
	str("idempotency_key", &j.IdempotencyKey)
	str("origin", &j.Origin)
	str("batch", &j.Batch)
	str("custom_id", &j.CustomID)
	str("batch_key", &j.BatchKey)
	str("waited", &j.Waited)
	if raw, ok := f["model"]; ok && err == nil {
		if e := json.Unmarshal(raw, &j.Model); e != nil {
			err = badInput("\"model\" must be a string, got %s", describe(raw))
		}
	}
	if err != nil {
		return err
	}
	if j.MaxAttempts < 0 {
		return badInput("\"max_attempts\" must be 1 or more, got %d", j.MaxAttempts)
	}
	if j.Webhook != "" {
		if u, e := url.Parse(j.Webhook); e != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			return badInput("\"webhook\" must be an absolute http or https URL, got %q", j.Webhook)
		}
	}
	for _, k := range hopperFields {
		delete(f, k)
	}
	if j.Endpoint != "" && EndpointPath(j.Endpoint) == "" {
		return badInput("unknown endpoint %q: use one of %s", j.Endpoint, strings.Join(EndpointNames(), ", "))
	}
	if j.Function != "" {
		return nil // the function supplies model and endpoint at claim
	}
	if j.Endpoint == "" {
		switch {
		case f["messages"] != nil:
			j.Endpoint = "chat"
		case f["prompt"] != nil:
			j.Endpoint = "generate"
		case f["input"] != nil:
			j.Endpoint = "embed"
		default:
			return badInput("cannot tell which endpoint to call: give \"messages\" (chat), \"prompt\" (generate) or \"input\" (embed), or set \"endpoint\" to one of %s", strings.Join(EndpointNames(), ", "))
		}
	}
	if strings.TrimSpace(j.Model) == "" {
		return badInput("\"model\" is required: name the model to run, e.g. {\"model\": \"llama3.2\", ...}")
	}
	return nil
}

// Request returns the body to send to the target: the pass-through fields
// plus extra (hopper's settings such as stream and keep_alive), which win.
// Values keep their bytes (whitespace aside): numbers are not reformatted
// and <, > and & are not escaped.
func (j *Job) Request(extra map[string]json.RawMessage) ([]byte, error) {
	out := make(map[string]json.RawMessage, len(j.Body)+len(extra))
	for k, v := range j.Body {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return marshalObject(out)
}

// marshalObject encodes a JSON object without escaping <, > and &, so
// every value keeps the bytes it was submitted with.
func marshalObject(obj map[string]json.RawMessage) ([]byte, error) { return EncodeJSON(obj) }

// EncodeJSON is json.Marshal without escaping <, > and & (as \u003c and
// so on): job files and requests keep the text people wrote, byte for
// byte, and a body full of markup does not grow past max_job_size.
func EncodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonError turns a decoding error into a sentence with a line and column.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if syn.Error() == "unexpected end of JSON input" {
			line, col := position(data, int64(len(data)))
			return badInput("the job is not valid JSON: it ends early at line %d, column %d (was it cut off?)", line, col)
		}
		// Offset counts the bytes read, the offending one included.
		line, col := position(data, syn.Offset-1)
		return badInput("the job is not valid JSON: %s at line %d, column %d", syn.Error(), line, col)
	case errors.As(err, &typ):
		return badInput("a job must be a JSON object, got %s", typ.Value)
	case !utf8.Valid(data):
		return badInput("the job is not valid JSON: it is not UTF-8 text")
	}
	return badInput("the job is not valid JSON: %v", err)
}

// position returns the line and column, counted from 1 in characters, of
// the byte at offset.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	line, col = 1, 1
	for _, b := range data[:offset] {
		switch {
		case b == '\n':
			line++
			col = 1
		case utf8.RuneStart(b):
			col++
		}
	}
	return line, col
}

func firstByte(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// describe names a JSON value's type for an error message.
func describe(raw json.RawMessage) string {
	switch firstByte(raw) {
	case '"':
		if len(raw) > 40 {
			return "a string"
		}
		return "the string " + string(raw)
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	if len(raw) > 40 {
		return "a number"
	}
	return "the number " + string(raw)
}
