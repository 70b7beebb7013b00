package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Client talks to one Ollama server. It is safe for concurrent use; set
// its exported fields before the first request.
type Client struct {
	base *url.URL
	hc   *http.Client

	// StallTimeout, when positive, aborts a request with a *JobFailedError
	// once its response has begun and no byte has arrived for this long. The
	// wait before the response begins (queueing, loading the model) is not
	// limited by it; use the context for that.
	StallTimeout time.Duration

	// MaxLine bounds one line of a stream from the target, in bytes: an
	// NDJSON line, or the data of one SSE event (or any other line of the
	// event stream). Zero or less means DefaultMaxLine. A longer line fails
	// the request with a *JobFailedError wrapping ErrLineTooLong, and the
	// connection is closed rather than read any further.
	MaxLine int

	// MaxAnswer bounds the answer, in bytes: an application/json answer as
	// it arrives, or what is folded from a stream (text, tool calls,
	// logprobs, as encoded in the answer). Zero or less means
	// DefaultMaxAnswer. A larger answer fails the request with a
	// *JobFailedError wrapping ErrAnswerTooLarge.
	MaxAnswer int

	now func() time.Time
}

// The limits a Client applies when its fields are left at zero. A line of
// Ollama's stream carries a token or a tool call, far below DefaultMaxLine;
// the largest answers are embeddings of many inputs.
const (
	DefaultMaxLine   = 16 << 20
	DefaultMaxAnswer = 256 << 20
)

// limits are a client's bounds on what it reads from the target.
type limits struct{ line, answer int }

func (c *Client) limits() limits {
	l := limits{line: c.MaxLine, answer: c.MaxAnswer}
	if l.line <= 0 {
		l.line = DefaultMaxLine
	}
	if l.answer <= 0 {
		l.answer = DefaultMaxAnswer
	}
	return l
}

// New returns a client for the Ollama server at baseURL, written as
// OLLAMA_HOST is ("127.0.0.1:11434", "http://host:port", "host"; see
// [Client.BaseURL]). A nil hc means a fresh http.Client without a timeout,
// which streaming needs; deadlines come from the request context.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := parseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: u, hc: hc, now: time.Now}, nil
}

// BaseURL returns the normalized server address, e.g. "http://127.0.0.1:11434".
func (c *Client) BaseURL() string { return c.base.String() }

func (c *Client) url(path string) string { return c.base.String() + path }

// Do posts body, a JSON object prepared by the caller (who also sets
// "stream"), to path ("/api/chat", "/api/generate", "/api/embed",
// "/api/embeddings", "/v1/chat/completions", "/v1/completions",
// "/v1/embeddings") and returns the final answer as Ollama shapes it without
// streaming; see the package documentation for how streams are folded.
//
// onChunk, which may be nil, receives each NDJSON line or each SSE data
// payload as it arrives, without its line terminator. The slice is only
// valid until onChunk returns: Do reuses it for the next line, so that a
// stream costs little more memory than its folded answer; copy what must be
// kept. An error from onChunk aborts the request and is returned wrapped.
// An {"error": ...} chunk is passed to onChunk before Do fails with a
// *JobFailedError.
//
// A line longer than MaxLine or an answer larger than MaxAnswer fails the
// request with a *JobFailedError. The end of ctx stops a read in progress
// (the response body is closed), whatever the transport.
func (c *Client) Do(ctx context.Context, path string, body []byte, onChunk func(chunk []byte) error) (json.RawMessage, error) {
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.url(path), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("post %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.send(ctx, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	var r io.Reader = resp.Body
	if c.StallTimeout > 0 {
		t := time.AfterFunc(c.StallTimeout, func() { cancel(errStalled) })
		defer t.Stop()
		r = &stallReader{r: resp.Body, t: t, d: c.StallTimeout}
		if user := onChunk; user != nil {
			// Time spent in the caller's onChunk is not the target stalling.
			onChunk = func(chunk []byte) error {
				t.Stop()
				defer t.Reset(c.StallTimeout)
				return user(chunk)
			}
		}
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	lim := c.limits()
	var out []byte
	switch mediaType {
	case "application/x-ndjson":
		out, err = readNDJSON(r, onChunk, lim)
	case "text/event-stream":
		out, err = readSSE(r, onChunk, lim)
	default:
		out, err = readJSON(r, resp.ContentLength, lim.answer)
	}
	if err != nil {
		err = c.readFailure(ctx, reqCtx, path, resp.StatusCode, err, lim)
		// Close the connection rather than read on: the target may still be
		// sending, without end.
		cancel(errAbandoned)
		return nil, err
	}
	// Drain what follows the final chunk so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	return out, nil
}

// send performs req and classifies failures that happen before a 2xx
// response: transport errors and error statuses.
func (c *Client) send(ctx context.Context, req *http.Request) (*http.Response, error) {
	op := strings.ToLower(req.Method) + " " + req.URL.Path
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return nil, &UnavailableError{Err: err}
	}
	watchBody(req.Context(), resp)
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return resp, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", op, ctx.Err())
	}
	return nil, statusError(resp.StatusCode, resp.Header, body, c.now())
}

// watchBody makes the end of ctx close resp.Body, so that a read in
// progress stops even when the transport does not watch the context or the
// target trickles bytes.
func watchBody(ctx context.Context, resp *http.Response) {
	b := &watchedBody{ReadCloser: resp.Body}
	b.stop = context.AfterFunc(ctx, func() { _ = b.close() })
	resp.Body = b
}

// watchedBody is a response body that its context's end closes.
type watchedBody struct {
	io.ReadCloser
	stop func() bool
	once sync.Once
	err  error
}

func (b *watchedBody) close() error {
	b.once.Do(func() { b.err = b.ReadCloser.Close() })
	return b.err
}

func (b *watchedBody) Close() error {
	b.stop()
	return b.close()
}

// readFailure classifies an error met while reading a 2xx response body.
func (c *Client) readFailure(ctx, reqCtx context.Context, path string, status int, err error, lim limits) error {
	if ctx.Err() != nil {
		return fmt.Errorf("post %s: %w", path, ctx.Err())
	}
	if errors.Is(context.Cause(reqCtx), errStalled) {
		return &JobFailedError{Status: status, Message: fmt.Sprintf("no data from target for %s", c.StallTimeout), Err: errStalled}
	}
	if errors.Is(err, ErrLineTooLong) {
		return &JobFailedError{Status: status, Message: "target sent a line longer than " + byteSize(lim.line), Err: ErrLineTooLong}
	}
	if errors.Is(err, ErrAnswerTooLarge) {
		return &JobFailedError{Status: status, Message: "target's answer is larger than " + byteSize(lim.answer), Err: ErrAnswerTooLarge}
	}
	var re *readError
	if errors.As(err, &re) {
		return &JobFailedError{Status: status, Message: re.msg, Err: re.err}
	}
	var ce *chunkError
	if errors.As(err, &ce) {
		return fmt.Errorf("post %s: chunk: %w", path, ce.err)
	}
	var jf *JobFailedError
	if errors.As(err, &jf) {
		return jf
	}
	return &JobFailedError{Status: status, Message: "bad response from target", Err: err}
}

// readJSON reads a single JSON answer of at most max bytes; size is the
// Content-Length, -1 when unknown. A 200 answer that is only an error
// object is reported as a *JobFailedError.
func readJSON(r io.Reader, size int64, max int) ([]byte, error) {
	if size > int64(max) {
		return nil, ErrAnswerTooLarge
	}
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(size) + bytes.MinRead) // room for the read that sees EOF
	}
	if _, err := buf.ReadFrom(io.LimitReader(r, int64(max)+1)); err != nil {
		return nil, &readError{err, "connection lost mid-response"}
	}
	if buf.Len() > max {
		return nil, ErrAnswerTooLarge
	}
	b := bytes.TrimSpace(buf.Bytes())
	if !json.Valid(b) {
		return nil, fmt.Errorf("invalid JSON answer: %.200q", b)
	}
	var members int
	var errVal []byte
	_ = eachMember(b, func(key, val []byte) error {
		members++
		if keyIs(key, "error") {
			errVal = val
		}
		return nil
	})
	if members == 1 && errVal != nil {
		if msg := messageOf(errVal); msg != "" {
			return nil, &JobFailedError{Status: 200, Message: clip(msg)}
		}
	}
	return b, nil
}

// readError wraps an I/O error met while reading a response body.
type readError struct {
	err error
	msg string
}

func (e *readError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// chunkError wraps an error returned by the caller's onChunk.
type chunkError struct{ err error }

func (e *chunkError) Error() string { return e.err.Error() }
func (e *chunkError) Unwrap() error { return e.err }

// stallReader rearms the stall timer whenever bytes arrive.
type stallReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(s.d)
	}
	return n, err
}
