package runtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Start calls run in a goroutine with a context that the returned stop
// cancels. stop then waits up to wait for run to return, and fails the test
// if run returns an error or does not return in time; what names the
// service in those messages. stop runs when the test ends; it is safe to
// call before, and more than once.
func Start(tb testing.TB, what string, wait time.Duration, run func(ctx context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("%s: %v", what, err)
			}
		case <-time.After(wait):
			tb.Errorf("%s did not return within %s of its context ending", what, wait)
		}
	})
	tb.Cleanup(stop)
	return stop
}

// Receive returns the next value on c, failing the test if none comes
// within wait; what names the value in that message.
func Receive[T any](tb testing.TB, c <-chan T, wait time.Duration, what string) T {
	tb.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		tb.Fatalf("timed out after %v waiting for %s", wait, what)
		panic("unreachable")
	}
}

// Await calls cond, and again each time the channel changed returns is
// closed or sends, until cond returns true; it reports whether that
// happened within limit. changed is called before each cond, so a change
// between the two is not missed.
func Await(limit time.Duration, changed func() <-chan struct{}, cond func() bool) bool {
	deadline := time.After(limit)
	for {
		ch := changed()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// Poll calls cond every interval until it returns true, and reports
// whether that happened within limit. It is for what has no channel to
// wait on: files, processes, another server.
func Poll(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// NewRequest is a request to url with body: nil for none, a string or a
// []byte sent as it is, or any other value sent as JSON. A request with a
// body says it is JSON.
func NewRequest(ctx context.Context, method, url string, body any) (*http.Request, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// Fetch sends the request NewRequest makes with http.DefaultClient and
// reads the answer's body whole. With no answer it returns a nil response
// and why; with one, the error is from reading the body
// (io.ErrUnexpectedEOF when the server cut it short).
func Fetch(ctx context.Context, method, url string, body any) (*http.Response, []byte, error) {
	req, err := NewRequest(ctx, method, url, body)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

// Call sends the request NewRequest makes with http.DefaultClient and
// returns the answer's status, header and whole body. It fails the test if
// there is no whole answer within wait.
func Call(tb testing.TB, wait time.Duration, method, url string, body any) (int, http.Header, []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, data, err := Fetch(ctx, method, url, body)
	if resp == nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, data
}

// Decode returns data decoded as JSON into a T, failing the test if it
// is not one.
func Decode[T any](tb testing.TB, data []byte) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		tb.Fatalf("decode %s: %v", data, err)
	}
	return v
}
