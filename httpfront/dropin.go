package httpfront

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// dropInPaths maps each Ollama and OpenAI-style path the front queues to
// the job endpoint it becomes: every endpoint, at its own path.
var dropInPaths = func() map[string]spool.Endpoint {
	paths := map[string]spool.Endpoint{}
	for _, e := range spool.Endpoints() {
		paths[e.Path()] = e
	}
	return paths
}()

func isDropIn(path string) bool {
	_, ok := spool.EndpointAt(path)
	return ok
}

// dropInRequest is what the front needs to know of a drop-in request
// before it queues it; the target checks the rest.
type dropInRequest struct {
	endpoint     spool.Endpoint
	openai       bool
	model        string
	stream       bool
	includeUsage bool
	// loadOnly: a chat without messages or a generate without a prompt,
	// which only loads (or with keep_alive 0 unloads) the model, as the
	// ollama CLI sends before a run.
	loadOnly bool
	job      jobFields // the body's members hopper reads
	data     []byte    // the body's first JSON value, the one used
}

// parseDropIn checks a request as Ollama does before it would queue it,
// with Ollama's status codes and words: the body must decode (only its
// first JSON value is read, as gin's ShouldBindJSON does), and name a
// model. Each endpoint decodes into a type named as Ollama's, so a type
// error reads as Ollama's does. Only the few fields it needs are decoded;
// the rest of the body is skipped over, never copied.
func parseDropIn(endpoint spool.Endpoint, body []byte) (*dropInRequest, *httpError) {
	req := &dropInRequest{endpoint: endpoint, openai: endpoint.OpenAI()}
	type StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	}
	// Message stands for Ollama's message type: elements are checked to be
	// objects, and not kept.
	type Message struct{}
	decodeFirst := func(v any) error {
		if json.Valid(body) {
			return json.Unmarshal(body, v)
		}
		// Not valid as a whole: a first value followed by more, or no
		// value at all. Decode the first as gin does and use only it.
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(v); err != nil {
			return err
		}
		body = body[:dec.InputOffset()]
		return nil
	}
	var err error
	var messages []Message
	modelRequired := false // "model is required" (400) rather than "model '' not found" (404)
	switch endpoint {
	case spool.EndpointChat:
		type ChatRequest struct {
			Model    string          `json:"model"`
			Stream   *bool           `json:"stream"`
			Messages json.RawMessage `json:"messages"` // left to the target to judge
		}
		var v ChatRequest
		err = decodeFirst(&v)
		req.model, req.stream, modelRequired = v.Model, v.Stream == nil || *v.Stream, true
		m := bytes.TrimSpace(v.Messages)
		req.loadOnly = len(m) == 0 || string(m) == "null" || string(m) == "[]"
	case spool.EndpointGenerate:
		type GenerateRequest struct {
			Model  string `json:"model"`
			Stream *bool  `json:"stream"`
			Prompt string `json:"prompt"`
		}
		var v GenerateRequest
		err = decodeFirst(&v)
		req.model, req.stream = v.Model, v.Stream == nil || *v.Stream
		req.loadOnly = v.Prompt == ""
	case spool.EndpointEmbed, spool.EndpointOpenAIEmbeddings:
		type EmbedRequest struct {
			Model string `json:"model"`
		}
		var v EmbedRequest
		err = decodeFirst(&v)
		req.model = v.Model
	case spool.EndpointEmbeddings:
		type EmbeddingRequest struct {
			Model string `json:"model"`
		}
		var v EmbeddingRequest
		err = decodeFirst(&v)
		req.model, modelRequired = v.Model, true
	case spool.EndpointOpenAIChat:
		type ChatCompletionRequest struct {
			Model         string         `json:"model"`
			Messages      []Message      `json:"messages"`
			Stream        bool           `json:"stream"`
			StreamOptions *StreamOptions `json:"stream_options"`
		}
		var v ChatCompletionRequest
		err = decodeFirst(&v)
		req.model, req.stream, messages, modelRequired = v.Model, v.Stream, v.Messages, true
		req.includeUsage = v.StreamOptions != nil && v.StreamOptions.IncludeUsage
	case spool.EndpointOpenAICompletions:
		type CompletionRequest struct {
			Model         string         `json:"model"`
			Stream        bool           `json:"stream"`
			StreamOptions *StreamOptions `json:"stream_options"`
		}
		var v CompletionRequest
		err = decodeFirst(&v)
		req.model, req.stream = v.Model, v.Stream
		req.includeUsage = v.StreamOptions != nil && v.StreamOptions.IncludeUsage
	default:
		return nil, errorf(http.StatusInternalServerError, "unknown endpoint %q", endpoint)
	}
	if err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, io.EOF) && req.openai:
			msg = "EOF" // Ollama's OpenAI layer passes the decoder's error on
		case errors.Is(err, io.EOF):
			msg = msgMissingBody
		case req.openai:
			msg = strings.ReplaceAll(msg, "httpfront.", "openai.")
		default:
			msg = strings.ReplaceAll(msg, "httpfront.", "api.")
		}
		return nil, errorf(http.StatusBadRequest, "%s", msg)
	}
	if endpoint == spool.EndpointOpenAIChat && len(messages) == 0 {
		return nil, errorf(http.StatusBadRequest, "[] is too short - 'messages'")
	}
	// The model is checked by Ollama's handlers, behind its OpenAI layer,
	// which reports their errors as "api_error".
	switch {
	case req.model == "" && modelRequired:
		return nil, &httpError{status: http.StatusBadRequest, msg: msgModelRequired, oaType: "api_error"}
	case strings.TrimSpace(req.model) == "":
		return nil, &httpError{status: http.StatusNotFound, msg: fmt.Sprintf("model '%s' not found", req.model), oaType: "api_error"}
	}
	if !isObject(body) {
		return nil, errorf(http.StatusBadRequest, "the request body must be a JSON object")
	}
	req.data = body
	req.job = probeJob(body)
	return req, nil
}

// dropInRoom is the room read before a drop-in body for the members
// dropInJob puts first: `{"endpoint":"openai.completions","origin":"http",
// "priority":-9223372036854775808` is 79 bytes.
const dropInRoom = 96

// dropInJob makes the request's body (b, whose first value req read) the
// job file, in place: the endpoint set from the path, origin http, and the
// priority from the header, the body's own "priority", or the configured
// default, in that order; the body's other members follow as sent.
func (s *Server) dropInJob(r *http.Request, req *dropInRequest, b *reqBody) ([]byte, *httpError) {
	set := `"endpoint":` + strconv.Quote(string(req.endpoint)) + `,` + originMember
	header := r.Header.Get("X-Hopper-Priority")
	if header != "" {
		n, err := strconv.Atoi(strings.TrimSpace(header))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "X-Hopper-Priority must be an integer, got %q", header)
		}
		set += `,"priority":` + strconv.Itoa(n)
	} else if !req.job.priority {
		set += `,"priority":` + strconv.Itoa(s.cfg.DropInPriority)
	}
	// Only the first value is the request (req.data is a prefix of b.data).
	obj := b.buf[:b.front+len(req.data)]
	return rewriteObject(obj, b.front, set, func(m member) bool {
		return m.is("endpoint") || m.is("origin") || (header != "" && m.is("priority"))
	}), nil
}

// dropIn serves one Ollama or OpenAI-style endpoint: the request is queued
// as a volatile job, and answered as Ollama would answer it once the job
// has run, streaming its output live when the client streams.
func (s *Server) dropIn(endpoint spool.Endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, e := s.readBody(w, r, dropInRoom)
		if e != nil {
			writeError(w, r, e)
			return
		}
		defer b.release()
		req, e := parseDropIn(endpoint, b.data)
		if e != nil {
			writeError(w, r, e)
			return
		}
		if e := s.checkWebhook(req.job.webhook, req.job.function); e != nil {
			writeError(w, r, e)
			return
		}
		job, e := s.dropInJob(r, req, b)
		if e != nil {
			writeError(w, r, e)
			return
		}
		req.data = nil
		if !s.acquire() {
			writeError(w, r, s.busy(r))
			return
		}
		defer s.release()
		id, err := s.sp.Submit(job, spool.SubmitOptions{Volatile: true, Origin: spool.OriginHTTP, Waited: s.frontID})
		// The job is written (or refused): its bytes are no longer needed
		// while the answer is awaited.
		b.release()
		if err != nil {
			var bad *spool.BadInputError
			if errors.As(err, &bad) {
				writeError(w, r, errorf(http.StatusBadRequest, "%s", bad.Reason))
				return
			}
			writeError(w, r, s.storageError("queue the request", err))
			return
		}
		w.Header().Set("X-Hopper-Job-Id", id)
		s.catalog.Refresh(id)
		pos, queued := s.catalog.Position(id)
		if queued {
			w.Header().Set(positionHeader, strconv.Itoa(pos))
		}
		s.waiting(id)
		if req.stream {
			s.streamAnswer(w, r, id, req, pos)
		} else {
			s.waitAnswer(w, r, id)
		}
	})
}

// waitAnswer answers once the job has finished: its response as one JSON
// object, or its error.
func (s *Server) waitAnswer(w http.ResponseWriter, r *http.Request, id string) {
	rec := s.await(r.Context(), w, r, id)
	if rec == nil {
		return
	}
	if rec.State != spool.StateDone {
		writeError(w, r, recordError(rec))
		return
	}
	writeJSON(w, http.StatusOK, compact(rec.Response))
}

// errRetrying stops relaying when an attempt failed after part of its
// output reached the client: the next attempt's output would not continue
// it.
var errRetrying = errors.New("the attempt failed after output reached the client")

// positionHeader tells a drop-in client how many queued jobs run before
// its own, as it was when the job was queued.
const positionHeader = "X-Hopper-Queue-Position"

// Waiting streams: a job with others queued ahead of it gets its status
// line and headers at once, and one still waiting after startWait (every
// slot busy) then; a /v1 stream also gets an SSE comment every keepAlive
// until output comes, which OpenAI's clients skip. (An NDJSON stream gets
// no bytes before its first chunk: Ollama's clients parse every line.)
var (
	startWait = time.Second
	keepAlive = 15 * time.Second
)

// streamAnswer relays the job's output as it is written: NDJSON chunks as
// Ollama streams them, or for /v1 SSE "data:" events ending with
// "data: [DONE]". The status line waits for the first chunk, so a job the
// target refuses before streaming gets the target's own status code,
// unless the job has to wait (others ahead of it, pos > 0, or every slot
// busy for startWait): then headers go at once, so the client sees its
// queue position and knows the server is there, and an error that comes
// later is sent in the stream as Ollama sends one mid-stream.
func (s *Server) streamAnswer(w http.ResponseWriter, r *http.Request, id string, req *dropInRequest, pos int) {
	rc := http.NewResponseController(w)
	var mu sync.Mutex // the waiting ticker writes too, until follow returns
	started, sent := false, 0
	begin := func() {
		if started {
			return
		}
		started = true
		if req.openai {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
		} else {
			w.Header().Set("Content-Type", "application/x-ndjson")
		}
		w.WriteHeader(http.StatusOK)
	}
	write := func(payload []byte) error {
		mu.Lock()
		defer mu.Unlock()
		sent++ // output that reached the client
		begin()
		var err error
		if req.openai {
			_, err = fmt.Fprintf(w, "data: %s\n\n", payload)
		} else {
			_, err = w.Write(append(payload, '\n'))
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	}
	// The final chunk (done: true) is held back until the record says the
	// job is done: if hopper dies after the target finished but before the
	// record was written, the job runs again, and a client that already had
	// its final chunk would hold an answer the record does not. (On /v1,
	// data: [DONE] plays that part and is sent only after the record.)
	var final []byte
	relay := func(line []byte) error {
		if isErrorLine(line) {
			return nil // the attempt is failing; how the job ends decides
		}
		if req.openai && !req.includeUsage && isUsageOnly(line) {
			return nil // hopper always asks for usage; this client did not
		}
		if !req.openai && isFinalChunk(line) {
			final = append([]byte(nil), line...)
			return nil
		}
		return write(line)
	}
	newAttempt := func() error {
		final = nil
		if sent > 0 {
			return errRetrying
		}
		return nil // nothing reached the client: wait for the retry
	}
	waitDone := make(chan struct{})
	waiting := make(chan struct{})
	go func() {
		defer close(waiting)
		if req.loadOnly {
			// A load is the ollama CLI's first step of a run: it must keep
			// Ollama's status (404 makes the CLI offer a pull), so its
			// headers wait for the answer.
			return
		}
		first := startWait
		if pos > 0 {
			first = 0
		}
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-waitDone:
				return
			case <-t.C:
			}
			mu.Lock()
			if sent == 0 {
				begin()
				if req.openai {
					_, _ = io.WriteString(w, ": waiting in hopper's queue\n\n")
				}
				_ = rc.Flush()
			}
			mu.Unlock()
			t.Reset(keepAlive)
		}
	}()
	rec, err := s.follow(r.Context(), id, relay, newAttempt)
	close(waitDone)
	<-waiting
	if errors.Is(err, errRetrying) {
		msg := "the job failed mid-stream and would run again"
		if cur, err := s.record(id); err == nil && cur.Error != nil {
			msg = cur.Error.Message
		}
		s.abandon(id, r, err)
		s.writeStreamError(w, req, &httpError{status: http.StatusInternalServerError, msg: msg})
		return
	}
	if err != nil {
		s.abandon(id, r, err)
		if !started && r.Context().Err() == nil {
			writeError(w, r, s.storageError("follow the job", err))
		}
		return
	}
	if rec.State != spool.StateDone {
		e := recordError(rec)
		if !started {
			writeError(w, r, e)
			return
		}
		s.writeStreamError(w, req, e)
		return
	}
	if final != nil {
		_ = write(final)
		return
	}
	if sent == 0 {
		// The job ran before any of its output was seen (or answered with
		// one object, as a load-only request does): send the answer whole.
		if !req.openai {
			if reason := doneReason(rec.Response); (reason == "load" || reason == "unload") && !started {
				writeJSON(w, http.StatusOK, compact(rec.Response))
				return
			}
			_ = write(compact(rec.Response))
			return
		}
		for _, chunk := range chunksOf(rec.Response, req.includeUsage) {
			if write(chunk) != nil {
				return
			}
		}
	}
	if req.openai {
		begin()
		_, _ = io.WriteString(w, "data: [DONE]\n\n")
		_ = rc.Flush()
	}
}

// writeStreamError ends a stream that has begun with an error, as Ollama
// does: an {"error": ...} line, or for /v1 a data: event holding OpenAI's
// error object (which OpenAI's SDKs raise).
func (s *Server) writeStreamError(w http.ResponseWriter, req *dropInRequest, e *httpError) {
	if req.openai {
		fmt.Fprintf(w, "data: %s\n\n", errorJSON(shapeOpenAI, e))
	} else {
		w.Write(append(errorJSON(shapeOllama, e), '\n'))
	}
	_ = http.NewResponseController(w).Flush()
}

// abandon cancels a drop-in job nobody will read: its client left, or it
// can no longer be answered.
func (s *Server) abandon(id string, r *http.Request, cause error) {
	reason := "the HTTP client disconnected"
	switch {
	case errors.Is(cause, errRetrying):
		reason = "an attempt failed after part of its answer reached the HTTP client, and a retry cannot continue it"
	case r.Context().Err() == nil:
		reason = "the HTTP request ended: " + cause.Error()
	}
	running, err := s.cancel(id, reason)
	switch {
	case errors.Is(err, errFinished) || errors.Is(err, spool.ErrNotFound):
	case err != nil:
		s.log.Warn("cannot cancel an abandoned job", "job", id, "err", err)
	default:
		s.log.Info("job canceled", "job", id, "running", running, "reason", reason)
	}
}

// isFinalChunk reports whether an Ollama stream line is the final one
// ("done": true).
func isFinalChunk(line []byte) bool {
	var c struct {
		Done bool `json:"done"`
	}
	return json.Unmarshal(line, &c) == nil && c.Done
}

// isErrorLine reports whether a stream line is an {"error": ...} object.
func isErrorLine(line []byte) bool {
	if !bytes.Contains(line, []byte(`"error"`)) {
		return false
	}
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	return json.Unmarshal(line, &v) == nil && len(v.Error) > 0 && !bytes.Equal(v.Error, []byte("null"))
}

// isUsageOnly reports whether an OpenAI chunk is the usage chunk sent for
// stream_options.include_usage: no choices, and usage.
func isUsageOnly(line []byte) bool {
	if !bytes.Contains(line, []byte(`"usage"`)) {
		return false
	}
	var v struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   json.RawMessage   `json:"usage"`
	}
	return json.Unmarshal(line, &v) == nil && len(v.Choices) == 0 && len(v.Usage) > 0 && !bytes.Equal(v.Usage, []byte("null"))
}

func doneReason(resp json.RawMessage) string {
	var v struct {
		DoneReason string `json:"done_reason"`
	}
	_ = json.Unmarshal(resp, &v)
	return v.DoneReason
}

// compact returns JSON without insignificant space (records store it
// indented).
func compact(raw json.RawMessage) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return raw
	}
	return buf.Bytes()
}

// chunksOf turns an OpenAI non-streaming answer into the stream chunks
// that carry it: one chunk with every choice (a chat message becomes its
// delta), then the usage chunk if the client asked for usage.
func chunksOf(resp json.RawMessage, includeUsage bool) [][]byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(resp, &m) != nil {
		return [][]byte{compact(resp)}
	}
	usage := m["usage"]
	delete(m, "usage")
	var object string
	_ = json.Unmarshal(m["object"], &object)
	if object == "chat.completion" {
		m["object"] = json.RawMessage(`"chat.completion.chunk"`)
		var choices []map[string]json.RawMessage
		if json.Unmarshal(m["choices"], &choices) == nil {
			for _, c := range choices {
				if msg, ok := c["message"]; ok {
					c["delta"] = msg
					delete(c, "message")
				}
			}
			m["choices"], _ = json.Marshal(choices)
		}
	}
	first, _ := json.Marshal(m)
	out := [][]byte{first}
	if includeUsage && len(usage) > 0 {
		m["choices"] = json.RawMessage("[]")
		m["usage"] = usage
		last, _ := json.Marshal(m)
		out = append(out, last)
	}
	return out
}
