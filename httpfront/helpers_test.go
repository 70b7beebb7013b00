package httpfront_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/spool"
)

// patience bounds every wait in these tests; nothing sleeps.
const patience = 10 * time.Second

func newSpool(t testing.TB) *spool.Spool {
	t.Helper()
	sp, err := spool.Init(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// front is a Server behind a real loopback HTTP server, with channels fed
// by its test hooks.
type front struct {
	*httptest.Server
	srv    *httpfront.Server
	sp     *spool.Spool
	waits  chan string // IDs of jobs a request started waiting on
	landed chan string // IDs of records observed landing
}

func startFront(t *testing.T, sp *spool.Spool, configure ...func(*httpfront.Config)) *front {
	t.Helper()
	f := &front{sp: sp, waits: make(chan string, 64), landed: make(chan string, 64)}
	cfg := httpfront.Config{Spool: sp, Target: "http://127.0.0.1:1"}
	for _, c := range configure {
		c(&cfg)
	}
	// The hooks never block the front: past the buffer, news is dropped.
	cfg = httpfront.WithHooks(cfg,
		func(id string) { trySend(f.waits, id) },
		func(id string) { trySend(f.landed, id) })
	f.srv, f.Server = serve(t, cfg)
	return f
}

// serve starts a Server from cfg behind a loopback HTTP server; both close
// when the test ends.
func serve(tb testing.TB, cfg httpfront.Config) (*httpfront.Server, *httptest.Server) {
	tb.Helper()
	srv, err := httpfront.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	tb.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return srv, hs
}

func trySend[T any](c chan<- T, v T) {
	select {
	case c <- v:
	default:
	}
}

// receive waits for a value on c.
func receive[T any](t testing.TB, c <-chan T, what string) T {
	t.Helper()
	return runtest.Receive(t, c, patience, what)
}

// postInBackground POSTs body to url in a goroutine and sends the answer's
// status, or 0 if the request failed (its context canceled).
func postInBackground(ctx context.Context, url, body string) <-chan int {
	c := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			c <- 0
			return
		}
		resp.Body.Close()
		c <- resp.StatusCode
	}()
	return c
}

// wantLines receives the lines want from got, then the end of the body.
func wantLines(t *testing.T, got <-chan string, want ...string) {
	t.Helper()
	for _, w := range want {
		if l := receive(t, got, "the next line"); l != w {
			t.Errorf("got %q, want %q", l, w)
		}
	}
	if l, ok := <-got; ok {
		t.Errorf("after the last line: got %q, want the end", l)
	}
}

// call makes a request and returns the response with its body read.
func call(t *testing.T, method, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	resp := send(t, context.Background(), method, url, body, header...)
	return resp, readBody(t, resp)
}

// readBody reads resp's body and closes it.
func readBody(tb testing.TB, resp *http.Response) []byte {
	tb.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// send makes a request and returns the response unread. header is pairs
// of name and value.
func send(t *testing.T, ctx context.Context, method, url, body string, header ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func decode[T any](t *testing.T, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// ollamaError is Ollama's error body.
type ollamaError struct {
	Error string `json:"error"`
}

// openaiError is OpenAI's error body, with param and code kept raw to
// check they are present as null.
type openaiError struct {
	Error struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

// fakeRunner plays the runner's part on the spool: it claims jobs from
// new/ as a runner would, and the test scripts what happens to each.
type fakeRunner struct {
	t       testing.TB
	sp      *spool.Spool
	q       *spool.Queue
	cancels chan string // IDs whose cur/ID.cancel appeared
}

func newFakeRunner(t testing.TB, sp *spool.Spool) *fakeRunner {
	t.Helper()
	f := &fakeRunner{t: t, sp: sp, q: spool.NewQueue(nil), cancels: make(chan string, 16)}
	w, err := sp.NewWatcher(f.q, spool.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Cancel requests (cur/ID.cancel) are watched for here, as the runner
	// does.
	cw, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := cw.Add(filepath.Join(sp.Path(), spool.DirCur)); err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, "the watcher", patience, w.Run)
	runtest.Start(t, "the cancel watch", patience, func(ctx context.Context) error {
		defer cw.Close()
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-cw.Events:
				if id, ok := strings.CutSuffix(filepath.Base(ev.Name), ".cancel"); ok && ev.Has(fsnotify.Create) {
					trySend(f.cancels, id)
				}
			case <-cw.Errors:
			}
		}
	})
	return f
}

// next waits for a queued job and claims it.
func (f *fakeRunner) next() *fakeJob {
	f.t.Helper()
	deadline := time.After(patience)
	for {
		if p, ok := f.q.TopPriority(); ok {
			if e, ok := f.q.Oldest(p); ok {
				f.q.Remove(e.Dir, e.Name)
				c, err := f.sp.Claim(e)
				if err != nil {
					continue // canceled meanwhile
				}
				if c.BadInput != nil {
					f.t.Fatalf("claimed bad input: %v", c.BadInput)
				}
				return &fakeJob{t: f.t, sp: f.sp, c: c, rec: c.Record}
			}
		}
		select {
		case <-f.q.Changed():
		case <-deadline:
			f.t.Fatal("timed out waiting for a job to be queued")
		}
	}
}

// fakeJob is a claimed job whose run the test scripts.
type fakeJob struct {
	t   testing.TB
	sp  *spool.Spool
	c   *spool.Claimed
	rec *spool.Record
	out *os.File
}

func (j *fakeJob) id() string { return j.rec.ID }

// start begins an attempt: the record says working and cur/ID.out exists.
func (j *fakeJob) start() *fakeJob {
	j.t.Helper()
	now := time.Now()
	j.rec.Attempts++
	j.rec.StartedAt, j.rec.State, j.rec.Target = &now, spool.StateWorking, "test"
	j.rec.ModelLoaded = true
	if err := j.sp.Update(j.rec); err != nil {
		j.t.Fatal(err)
	}
	out, err := j.sp.CreateOutput(j.rec.ID)
	if err != nil {
		j.t.Fatal(err)
	}
	j.out = out
	return j
}

// chunk appends one line of output.
func (j *fakeJob) chunk(line string) {
	j.t.Helper()
	if _, err := j.out.WriteString(line + "\n"); err != nil {
		j.t.Fatal(err)
	}
}

func (j *fakeJob) end(state spool.State) {
	j.t.Helper()
	if j.out != nil {
		j.out.Close()
		j.out = nil
	}
	now := time.Now()
	j.rec.State, j.rec.FinishedAt = state, &now
	if err := j.sp.Finish(j.rec); err != nil {
		j.t.Fatal(err)
	}
}

// done finishes the job with response as its answer.
func (j *fakeJob) done(response string) {
	j.t.Helper()
	j.rec.Response = json.RawMessage(response)
	j.end(spool.StateDone)
}

// fail finishes the job as failed.
func (j *fakeJob) fail(kind spool.ErrorKind, msg string, status int) {
	j.t.Helper()
	j.rec.Error = &spool.JobError{Kind: kind, Message: msg, Status: status}
	j.end(spool.StateFailed)
}

// deferAttempt ends the attempt and parks the job in deferred/ to run
// again later.
func (j *fakeJob) deferAttempt(msg string) {
	j.t.Helper()
	nb := time.Now().Add(time.Hour)
	j.rec.NotBefore = &nb
	j.rec.Error = &spool.JobError{Kind: spool.KindTarget, Message: msg, Status: 500}
	j.end(spool.StateDeferred)
}

// waitRecord waits for job id to finish and returns its record.
func waitRecord(t *testing.T, sp *spool.Spool, id string) *spool.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	rec, err := sp.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait for job %s: %v", id, err)
	}
	return rec
}

// lines reads a response body line by line into a channel. SSE comments
// (": waiting in hopper's queue", sent while a job waits) are skipped with
// the blank line ending them, as SSE clients skip them.
func lines(body io.Reader) <-chan string {
	c := make(chan string, 64)
	go func() {
		defer close(c)
		sc := bufio.NewScanner(body)
		comment := false
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, ":"):
				comment = true
				continue
			case comment && l == "":
				comment = false
				continue
			}
			comment = false
			c <- l
		}
	}()
	return c
}
