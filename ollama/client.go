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
	"time"
)

// Client talks to one Ollama server. It is safe for concurrent use; set
// StallTimeout before the first request.
type Client struct {
	base *url.URL
	hc   *http.Client

	// StallTimeout, when positive, aborts a request with a *JobFailedError
	// once its response has begun and no byte has arrived for this long. The
	// wait before the response begins (queueing, loading the model) is not
	// limited by it; use the context for that.
	StallTimeout time.Duration

	now func() time.Time
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
// payload as it arrives, without its line terminator; it may keep the slice.
// An error from onChunk aborts the request and is returned wrapped. An
// {"error": ...} chunk is passed to onChunk before Do fails with a
// *JobFailedError.
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
	var out json.RawMessage
	switch mediaType {
	case "application/x-ndjson":
		out, err = readNDJSON(r, onChunk)
	case "text/event-stream":
		out, err = readSSE(r, onChunk)
	default:
		out, err = readJSON(r)
	}
	if err != nil {
		return nil, c.readFailure(ctx, reqCtx, path, resp.StatusCode, err)
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

// readFailure classifies an error met while reading a 2xx response body.
func (c *Client) readFailure(ctx, reqCtx context.Context, path string, status int, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("post %s: %w", path, ctx.Err())
	}
	if errors.Is(context.Cause(reqCtx), errStalled) {
		return &JobFailedError{Status: status, Message: fmt.Sprintf("no data from target for %s", c.StallTimeout), Err: errStalled}
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

// readJSON reads a single JSON answer. A 200 answer that is only an error
// object is reported as a *JobFailedError.
func readJSON(r io.Reader) (json.RawMessage, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, &readError{err, "connection lost mid-response"}
	}
	b = bytes.TrimSpace(b)
	if !json.Valid(b) {
		return nil, fmt.Errorf("invalid JSON answer: %.200q", b)
	}
	if msg := errorMessage(b); msg != "" {
		if o, err := parseObject(b); err == nil && len(o) == 1 {
			return nil, &JobFailedError{Status: 200, Message: msg}
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
