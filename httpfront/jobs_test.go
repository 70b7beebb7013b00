package httpfront_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/spool"
)

const chatJob = `{"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}`

func TestSubmitJobAnswers202WithLocationAndTheRecordSoFar(t *testing.T) {
	f := startFront(t, newSpool(t))
	resp, body := call(t, "POST", f.URL+"/jobs", chatJob, "Content-Type", "application/json")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202 (%s)", resp.StatusCode, body)
	}
	rec := decode[spool.Record](t, body)
	if rec.ID == "" || rec.State != spool.StateQueued || rec.Endpoint != "chat" || rec.Model != "llama3.2" {
		t.Errorf("record: got %+v, want a queued chat job for llama3.2", rec)
	}
	if got, want := resp.Header.Get("Location"), "/jobs/"+rec.ID; got != want {
		t.Errorf("Location: got %q, want %q", got, want)
	}
	if !f.sp.Exists(spool.DirNew, rec.ID+".json") {
		t.Errorf("no job file new/%s.json", rec.ID)
	}
	resp, body = call(t, "GET", f.URL+"/jobs/"+rec.ID, "")
	if got := decode[spool.Record](t, body); resp.StatusCode != 200 || got.ID != rec.ID || got.State != spool.StateQueued {
		t.Errorf("GET /jobs/%s: got %d %+v", rec.ID, resp.StatusCode, got)
	}
}

func TestIdempotencyKey(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	post := func(f *front, body, key string) (int, spool.Record, http.Header, []byte) {
		t.Helper()
		resp, data := call(t, "POST", f.URL+"/jobs", body, "Idempotency-Key", key)
		var rec spool.Record
		if resp.StatusCode < 300 {
			rec = decode[spool.Record](t, data)
		}
		return resp.StatusCode, rec, resp.Header, data
	}
	status, first, _, _ := post(f, chatJob, "k1")
	if status != http.StatusAccepted {
		t.Fatalf("first submit: got %d, want 202", status)
	}

	t.Run("SameKeySameBodyIsTheSameJob", func(t *testing.T) {
		// The same job, re-encoded with other spacing and key order.
		again := `{"messages":[{"content":"hi","role":"user"}],"model":"llama3.2"}`
		status, rec, h, _ := post(f, again, "k1")
		if status != http.StatusOK || rec.ID != first.ID {
			t.Errorf("got %d %s, want 200 %s", status, rec.ID, first.ID)
		}
		if h.Get("Idempotent-Replayed") != "true" || h.Get("Location") != "/jobs/"+first.ID {
			t.Errorf("headers: got %v", h)
		}
		if n := countFiles(t, sp, "new"); n != 1 {
			t.Errorf("jobs queued: got %d, want 1", n)
		}
	})
	t.Run("SameKeyDifferentBodyIs422", func(t *testing.T) {
		status, _, _, body := post(f, `{"model": "llama3.2", "prompt": "other"}`, "k1")
		if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), first.ID) {
			t.Errorf("got %d %s, want 422 naming %s", status, body, first.ID)
		}
	})
	t.Run("KeyInTheJobWorksAsTheHeader", func(t *testing.T) {
		job := `{"model": "m", "prompt": "p", "idempotency_key": "k2"}`
		_, a, _, _ := post(f, job, "")
		status, b, _, _ := post(f, job, "")
		if status != http.StatusOK || a.ID != b.ID {
			t.Errorf("got %d %s, want 200 %s", status, b.ID, a.ID)
		}
	})
	t.Run("KeysSurviveANewServerOnTheSameSpool", func(t *testing.T) {
		f.srv.Close()
		g := startFront(t, sp)
		status, rec, _, _ := post(g, chatJob, "k1")
		if status != http.StatusOK || rec.ID != first.ID {
			t.Errorf("same body: got %d %s, want 200 %s", status, rec.ID, first.ID)
		}
		if status, _, _, _ := post(g, `{"model":"x","prompt":"y"}`, "k1"); status != http.StatusUnprocessableEntity {
			t.Errorf("different body: got %d, want 422", status)
		}
	})
	t.Run("ABadJobDoesNotUseUpItsKey", func(t *testing.T) {
		if status, _, _, _ := post(f, `{"model": "m"}`, "k3"); status != http.StatusUnprocessableEntity {
			t.Fatalf("bad job: got %d, want 422", status)
		}
		if status, _, _, _ := post(f, `{"model": "m", "prompt": "p"}`, "k3"); status != http.StatusAccepted {
			t.Errorf("good job with the same key: got %d, want 202", status)
		}
	})
}

func TestIdempotencyKeyExpiresAfter24Hours(t *testing.T) {
	sp := newSpool(t)
	var mu sync.Mutex
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	f := startFront(t, sp, func(c *httpfront.Config) { c.Now = clock })
	post := func(body string) (int, string) {
		resp, data := call(t, "POST", f.URL+"/jobs", body, "Idempotency-Key", "nightly")
		if resp.StatusCode >= 300 {
			return resp.StatusCode, ""
		}
		return resp.StatusCode, decode[spool.Record](t, data).ID
	}
	_, first := post(chatJob)
	mu.Lock()
	now = now.Add(23 * time.Hour)
	mu.Unlock()
	if status, id := post(chatJob); status != 200 || id != first {
		t.Errorf("after 23h: got %d %s, want 200 %s", status, id, first)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if status, id := post(`{"model":"m","prompt":"another night"}`); status != http.StatusAccepted || id == first {
		t.Errorf("after 25h with another body: got %d %s, want 202 and a new job", status, id)
	}
}

func countFiles(t *testing.T, sp *spool.Spool, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(sp.Path(), dir))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			n++
		}
	}
	return n
}

// submit queues job through POST /jobs at base and returns its ID.
func submit(t *testing.T, base, job string) string {
	t.Helper()
	resp, body := call(t, "POST", base+"/jobs", job)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("submit: got %d %s", resp.StatusCode, body)
	}
	return decode[spool.Record](t, body).ID
}

func TestLongPollReturnsWhenTheRecordLands(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)
	id := submit(t, f.URL, chatJob)

	type result struct {
		status int
		rec    spool.Record
	}
	got := make(chan result, 1)
	go func() {
		resp, body := call(t, "GET", f.URL+"/jobs/"+id+"?wait=30s", "")
		got <- result{resp.StatusCode, decode[spool.Record](t, body)}
	}()
	if w := receive(t, f.waits, "the long-poll"); w != id {
		t.Fatalf("waiting on %s, want %s", w, id)
	}
	job := runner.next()
	job.start()
	select {
	case r := <-got:
		t.Fatalf("the long-poll answered before the job finished: %+v", r)
	default:
	}
	job.done(`{"model":"llama3.2","message":{"role":"assistant","content":"hello"},"done":true}`)
	r := receive(t, got, "the long-poll's answer")
	if r.status != http.StatusOK || r.rec.State != spool.StateDone || !strings.Contains(string(r.rec.Response), "hello") {
		t.Errorf("got %d %+v, want 200 and the done record", r.status, r.rec)
	}
}

func TestLongPollAnswersTheCurrentRecordWhenTheWaitEnds(t *testing.T) {
	f := startFront(t, newSpool(t))
	id := submit(t, f.URL, chatJob)
	resp, body := call(t, "GET", f.URL+"/jobs/"+id+"?wait=1ms", "")
	if rec := decode[spool.Record](t, body); resp.StatusCode != 200 || rec.State != spool.StateQueued {
		t.Errorf("got %d %+v, want 200 queued", resp.StatusCode, rec)
	}
	if resp, _ := call(t, "GET", f.URL+"/jobs/"+id+"?wait=soon", ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("?wait=soon: got %d, want 400", resp.StatusCode)
	}
}

func TestJobOutputStreamsLinesUntilTheJobEnds(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)
	id := submit(t, f.URL, chatJob)
	job := runner.next().start()

	resp := send(t, context.Background(), "GET", f.URL+"/jobs/"+id+"/out", "")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("got %d %q, want 200 application/x-ndjson", resp.StatusCode, ct)
	}
	got := lines(resp.Body)
	job.chunk(`{"message":{"content":"one"},"done":false}`)
	if l := receive(t, got, "line 1"); !strings.Contains(l, "one") {
		t.Errorf("line 1: got %q", l)
	}
	job.chunk(`{"message":{"content":"two"},"done":true}`)
	if l := receive(t, got, "line 2"); !strings.Contains(l, "two") {
		t.Errorf("line 2: got %q", l)
	}
	job.done(`{"done":true}`)
	if l, ok := <-got; ok {
		t.Errorf("after the end: got %q, want the body closed", l)
	}
	resp, body := call(t, "GET", f.URL+"/jobs/"+id+"/out", "")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"done":true}` || resp.Header.Get("X-Hopper-State") != "done" {
		t.Errorf("a finished job's output: got %d %q, want 200 and its answer as one line", resp.StatusCode, body)
	}
}

func TestDeleteJob(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)

	t.Run("QueuedIsCanceledAtOnce", func(t *testing.T) {
		id := submit(t, f.URL, chatJob)
		resp, body := call(t, "DELETE", f.URL+"/jobs/"+id, "")
		rec := decode[spool.Record](t, body)
		if resp.StatusCode != 200 || rec.State != spool.StateFailed || rec.Error == nil || rec.Error.Kind != spool.KindCanceled {
			t.Errorf("got %d %+v, want 200 failed canceled", resp.StatusCode, rec)
		}
	})
	t.Run("RunningIsAskedToStop", func(t *testing.T) {
		id := submit(t, f.URL, chatJob)
		job := runner.next().start()
		resp, body := call(t, "DELETE", f.URL+"/jobs/"+id, "")
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202", resp.StatusCode, body)
		}
		if got := receive(t, runner.cancels, "the cancel request"); got != id {
			t.Errorf("cancel request for %s, want %s", got, id)
		}
		job.fail(spool.KindCanceled, "canceled while running", 0)
	})
	t.Run("FinishedIs409", func(t *testing.T) {
		id := submit(t, f.URL, chatJob)
		runner.next().start().done(`{"done":true}`)
		resp, body := call(t, "DELETE", f.URL+"/jobs/"+id, "")
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("got %d %s, want 409", resp.StatusCode, body)
		}
	})
	t.Run("UnknownIs404", func(t *testing.T) {
		if resp, _ := call(t, "DELETE", f.URL+"/jobs/nosuchjob", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("got %d, want 404", resp.StatusCode)
		}
	})
}

func TestListJobsFiltersByStateNewestFirst(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	var ids []string
	for i := range 3 {
		ids = append(ids, submit(t, f.URL, fmt.Sprintf(`{"model":"m","prompt":"%d"}`, i)))
	}
	call(t, "DELETE", f.URL+"/jobs/"+ids[0], "")
	type list struct {
		Jobs  []spool.Record `json:"jobs"`
		Total int            `json:"total"`
	}
	tests := []struct {
		query string
		want  []string
		total int
	}{
		{"?state=queued", []string{ids[2], ids[1]}, 2},
		{"?state=queued&limit=1", []string{ids[2]}, 2},
		{"?state=failed", []string{ids[0]}, 1},
		{"?state=queued,failed&limit=10", nil, 3},
		{"?state=done", nil, 0},
	}
	for _, tt := range tests {
		resp, body := call(t, "GET", f.URL+"/jobs"+tt.query, "")
		l := decode[list](t, body)
		var got []string
		for _, r := range l.Jobs {
			got = append(got, r.ID)
		}
		if tt.want == nil && len(got) == tt.total {
			tt.want = got // any order: canceled records are dated when canceled
		}
		if resp.StatusCode != 200 || fmt.Sprint(got) != fmt.Sprint(tt.want) || l.Total != tt.total {
			t.Errorf("%s: got %d %v total %d, want %v total %d", tt.query, resp.StatusCode, got, l.Total, tt.want, tt.total)
		}
	}
	for _, q := range []string{"?state=sleeping", "?limit=0", "?limit=x"} {
		if resp, _ := call(t, "GET", f.URL+"/jobs"+q, ""); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: got %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestJobIDsThatAreNotPlainNamesNeverReachTheFileSystem(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	// A secret beside the spool, and a record that is a symlink to it.
	secret := filepath.Join(filepath.Dir(sp.Path()), "secret.json")
	os.WriteFile(secret, []byte(`{"id":"x","state":"done","job":{"s":"TOPSECRET"}}`), 0o600)
	if err := os.Symlink(secret, filepath.Join(sp.Path(), "done", "evil.json")); err != nil {
		t.Fatal(err)
	}
	paths := []string{
		"/jobs/..%2F..%2Fsecret",
		"/jobs/%2e%2e",
		"/jobs/%2e%2e%2fsecret",
		"/jobs/%2Fetc%2Fpasswd",
		"/jobs/../../secret",
		"/jobs//etc/passwd",
		"/jobs/.hidden",
		"/jobs/evil",
		"/jobs/evil/out",
		"/jobs/%2e%2e/out",
	}
	for _, p := range paths {
		for _, method := range []string{"GET", "DELETE"} {
			resp, body := call(t, method, f.URL+p, "")
			if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "TOPSECRET") {
				t.Errorf("%s %s: got %d %s", method, p, resp.StatusCode, body)
			}
		}
	}
	if resp, _ := call(t, "GET", f.URL+"/jobs/%2e%2e", ""); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("%%2e%%2e: got %d, want 400", resp.StatusCode)
	}
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("the secret was touched: %v", err)
	}
}

func TestRequestLimits(t *testing.T) {
	f := startFront(t, newSpool(t), func(c *httpfront.Config) { c.MaxBody = 1024 })
	big := `{"model":"m","prompt":"` + strings.Repeat("x", 2000) + `"}`
	tests := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		says                     string
	}{
		{"BodyOverTheLimitIs413", "POST", "/jobs", big, nil, 413, "limit of 1024 bytes"},
		{"DropInBodyOverTheLimitIs413", "POST", "/api/chat", big, nil, 413, "limit"},
		{"XMLIs415", "POST", "/jobs", chatJob, []string{"Content-Type", "application/xml"}, 415, "Content-Type"},
		{"MultipartIs415OnTheDropIn", "POST", "/api/generate", chatJob, []string{"Content-Type", "multipart/form-data; boundary=x"}, 415, "Content-Type"},
		{"MalformedJSONIs400WithThePosition", "POST", "/jobs", "{\"model\": \"m\",\n \"prompt\": x}", nil, 400, "line 2, column 12"},
		{"TruncatedJSONIs400", "POST", "/jobs", `{"model": "m"`, nil, 400, "ends early"},
		{"EmptyBodyIs400", "POST", "/jobs", "", nil, 400, "empty"},
		{"ValidJSONThatIsNoJobIs422", "POST", "/jobs", `{"model": "m"}`, nil, 422, "cannot tell which endpoint"},
		{"AJSONArrayIs422", "POST", "/jobs", `[1, 2]`, nil, 422, "JSON object"},
		{"UnknownJobIs404", "GET", "/jobs/20990101T000000.000000Z-abcdef", "", nil, 404, "no such job"},
		{"UnknownJobOutputIs404", "GET", "/jobs/nosuch/out", "", nil, 404, "no such job"},
		{"CurlsFormContentTypeIsTakenAsJSON", "POST", "/jobs", chatJob, []string{"Content-Type", "application/x-www-form-urlencoded"}, 202, `"queued"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := call(t, tt.method, f.URL+tt.path, tt.body, tt.header...)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.says) {
				t.Errorf("got %d %s, want %d saying %q", resp.StatusCode, body, tt.status, tt.says)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type: got %q, want JSON", ct)
			}
		})
	}
	t.Run("TheMalformedJSONErrorCarriesLineAndColumn", func(t *testing.T) {
		_, body := call(t, "POST", f.URL+"/jobs", "{\n  \"model\": ,}")
		e := decode[struct {
			Error  string `json:"error"`
			Line   int    `json:"line"`
			Column int    `json:"column"`
		}](t, body)
		if e.Line != 2 || e.Column != 12 {
			t.Errorf("got line %d column %d (%s), want 2, 12", e.Line, e.Column, e.Error)
		}
	})
}

// MaxWaiters bounds the drop-in requests waiting on their jobs; a
// long-poll does not take one of their slots.
func TestMaxWaitersAnswers503(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) { c.MaxWaiters = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := postInBackground(ctx, f.URL+"/api/chat", chatJob)
	id := receive(t, f.waits, "the first drop-in request")
	resp, body := call(t, "POST", f.URL+"/api/chat", chatJob)
	if resp.StatusCode != http.StatusServiceUnavailable || decode[ollamaError](t, body).Error != "server busy, please try again.  maximum pending requests exceeded" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("got %d %s, want 503 in Ollama's words with Retry-After", resp.StatusCode, body)
	}
	polled := make(chan int, 1)
	go func() {
		resp, _ := call(t, "GET", f.URL+"/jobs/"+id+"?wait=1m", "")
		polled <- resp.StatusCode
	}()
	receive(t, f.waits, "a long-poll beside the drop-in request")
	cancel()
	receive(t, first, "the first request to end")
	if status := receive(t, polled, "the long-poll to answer once the job is canceled"); status != 200 {
		t.Errorf("long-poll: got %d, want 200", status)
	}
}
