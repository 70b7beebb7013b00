package spool

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
)

// Endpoint names the target API a job calls, as job files and records
// spell it in "endpoint": an Ollama endpoint ("chat") or an OpenAI-style
// one Ollama serves ("openai.chat").
type Endpoint string

// The endpoints a job may call.
const (
	EndpointChat              Endpoint = "chat"
	EndpointGenerate          Endpoint = "generate"
	EndpointEmbed             Endpoint = "embed"
	EndpointEmbeddings        Endpoint = "embeddings"
	EndpointOpenAIChat        Endpoint = "openai.chat"
	EndpointOpenAICompletions Endpoint = "openai.completions"
	EndpointOpenAIEmbeddings  Endpoint = "openai.embeddings"
)

// endpointInfo is what hopper knows of an endpoint: its path on the
// target, whether it answers with a token stream, and for an OpenAI-style
// one the native endpoint Ollama's OpenAI layer turns it into.
type endpointInfo struct {
	path    string
	streams bool
	native  Endpoint
}

var endpoints = map[Endpoint]endpointInfo{
	EndpointChat:              {path: "/api/chat", streams: true},
	EndpointGenerate:          {path: "/api/generate", streams: true},
	EndpointEmbed:             {path: "/api/embed"},
	EndpointEmbeddings:        {path: "/api/embeddings"},
	EndpointOpenAIChat:        {path: "/v1/chat/completions", streams: true, native: EndpointChat},
	EndpointOpenAICompletions: {path: "/v1/completions", streams: true, native: EndpointGenerate},
	EndpointOpenAIEmbeddings:  {path: "/v1/embeddings", native: EndpointEmbed},
}

// Endpoints lists every endpoint, sorted by name.
func Endpoints() []Endpoint { return slices.Sorted(maps.Keys(endpoints)) }

// EndpointAt returns the endpoint served at path on the target
// ("/v1/chat/completions": openai.chat).
func EndpointAt(path string) (Endpoint, bool) {
	for e, info := range endpoints {
		if info.path == path {
			return e, true
		}
	}
	return "", false
}

// Valid reports whether e is an endpoint hopper knows.
func (e Endpoint) Valid() bool {
	_, ok := endpoints[e]
	return ok
}

// Path returns e's path on the target, or "" for an unknown endpoint.
func (e Endpoint) Path() string { return endpoints[e].path }

// Streams reports whether e answers with a token stream (and so is sent
// with "stream": true).
func (e Endpoint) Streams() bool { return endpoints[e].streams }

// OpenAI reports whether e is one of the OpenAI-style endpoints (/v1/...).
func (e Endpoint) OpenAI() bool { return endpoints[e].native != "" }

// Native returns the Ollama endpoint behind e: for an OpenAI-style one the
// endpoint Ollama's OpenAI layer hands the request to (openai.chat: chat),
// for any other e itself.
func (e Endpoint) Native() Endpoint { return cmp.Or(endpoints[e].native, e) }

// endpointList is the valid endpoint names for a message: "chat, embed, ...".
func endpointList() string {
	names := make([]string, 0, len(endpoints))
	for _, e := range Endpoints() {
		names = append(names, string(e))
	}
	return strings.Join(names, ", ")
}

// hopperFields are the job fields hopper consumes; they never reach the
// target. "stream" is hopper's to set.
var hopperFields = []string{"endpoint", "function", "vars", "webhook", "meta", "priority",
	"max_attempts", "timeout", "max_age", "idempotency_key", "origin", "batch", "batch_key", "waited", "stream"}

// OriginHTTP marks a job the HTTP front wrote ("origin": "http"). Its
// webhook came from a network client, so deliveries to it are guarded
// against reaching private addresses; jobs dropped as files are trusted.
const OriginHTTP = "http"

// Job is a parsed job file: hopper's fields, and the request body for the
// target with every other field kept byte for byte.
type Job struct {
	Endpoint       Endpoint // "" for a function job until its function is expanded
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
	// Batch and BatchKey are set on the jobs a batch's lines become, from
	// their "batch" object: the batch's name (its "name") and the proof
	// that hopper wrote the line (its "key"; LineKey). The object's other
	// members are the batch package's. Lines written before LineSep was
	// reserved carry them as "batch" (a string) and "batch_key".
	Batch    string
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
		if raw, ok := f[key]; ok && err == nil && !bytes.Equal(raw, []byte("null")) {
			*dst, err = wholeNumber(key, raw)
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
	str("endpoint", (*string)(&j.Endpoint))
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
	if raw, ok := f["batch"]; ok && err == nil && firstByte(raw) == '{' {
		var line struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		}
		if json.Unmarshal(raw, &line) != nil {
			err = badInput("\"batch\" must be a string or a batch line's object, got %s", describe(raw))
		}
		j.Batch, j.BatchKey = line.Name, line.Key
	} else {
		str("batch", &j.Batch)
		str("batch_key", &j.BatchKey)
	}
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
	if j.Endpoint != "" && !j.Endpoint.Valid() {
		return badInput("unknown endpoint %q: use one of %s", j.Endpoint, endpointList())
	}
	if j.Function != "" {
		return nil // the function supplies model and endpoint at claim
	}
	if j.Endpoint == "" {
		switch {
		case f["messages"] != nil:
			j.Endpoint = EndpointChat
		case f["prompt"] != nil:
			j.Endpoint = EndpointGenerate
		case f["input"] != nil:
			j.Endpoint = EndpointEmbed
		default:
			return badInput("cannot tell which endpoint to call: give \"messages\" (chat), \"prompt\" (generate) or \"input\" (embed), or set \"endpoint\" to one of %s", endpointList())
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
func marshalObject(obj map[string]json.RawMessage) ([]byte, error) { return jsonfmt.Marshal(obj) }

// jsonError turns an error from decoding a job into a sentence: for text
// that is not JSON, what is wrong and where, as [jsonfmt.SyntaxError]
// words it (the front's POST /jobs answers the same).
func jsonError(data []byte, err error) error {
	var typ *json.UnmarshalTypeError
	switch se := jsonfmt.Locate(data, err); {
	case se != nil:
		return badInput("the job is not valid JSON: %v", se)
	case errors.As(err, &typ):
		return badInput("a job must be a JSON object, got %s", typ.Value)
	case !utf8.Valid(data):
		return badInput("the job is not valid JSON: it is not UTF-8 text")
	}
	return badInput("the job is not valid JSON: %v", err)
}

// maxWhole bounds the numbers wholeNumber takes in a form other than
// digits alone ("10.0", "1e3"): past 2^53 a float64 no longer tells whole
// numbers from fractions.
const maxWhole = 1 << 53

// wholeNumber reads one of hopper's integer fields. As Ollama reads its
// integer options, a number with a fraction or an exponent is taken when
// its value is whole ("10.0", "1e1"); unlike Ollama, which would cut 10.5
// to 10, a fraction is refused rather than dropped.
func wholeNumber(key string, raw json.RawMessage) (int, error) {
	s := string(bytes.TrimSpace(raw))
	if c := firstByte(raw); c != '-' && (c < '0' || c > '9') {
		return 0, badInput("%q must be an integer, got %s", key, describe(raw))
	}
	if n, err := strconv.ParseInt(s, 10, strconv.IntSize); err == nil {
		return int(n), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.Abs(f) > maxWhole {
		return 0, badInput("%q must be an integer, got %s, which is out of range", key, describe(raw))
	}
	mantissa, _, _ := strings.Cut(strings.ToLower(s), "e")
	if f != math.Trunc(f) || f == 0 && strings.Trim(mantissa, "-0.") != "" {
		return 0, badInput("%q must be an integer, got %s, which is not a whole number", key, describe(raw))
	}
	return int(f), nil
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
