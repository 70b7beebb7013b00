package httpfront_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/spool"
)

const (
	chunk1    = `{"model":"llama3.2","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"Hel"},"done":false}`
	chunk2    = `{"model":"llama3.2","created_at":"2026-01-01T00:00:01Z","message":{"role":"assistant","content":"lo"},"done":false}`
	lastChunk = `{"model":"llama3.2","created_at":"2026-01-01T00:00:02Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":2}`
	chatReply = `{"model":"llama3.2","created_at":"2026-01-01T00:00:02Z","message":{"role":"assistant","content":"Hello"},"done":true,"done_reason":"stop","eval_count":2}`
)

func TestDropInChatStreaming(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)

	// The status line waits for the first chunk, so ask concurrently.
	answered := make(chan *http.Response, 1)
	go func() {
		answered <- send(t, context.Background(), "POST", f.URL+"/api/chat", chatJob)
	}()
	job := runner.next()
	if job.rec.Priority != 100 || job.rec.Endpoint != "chat" {
		t.Errorf("job: got priority %d endpoint %q, want 100 chat", job.rec.Priority, job.rec.Endpoint)
	}
	job.start()
	job.chunk(chunk1)
	resp := receive(t, answered, "the response to begin")
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("got %d %q, want 200 application/x-ndjson", resp.StatusCode, ct)
	}
	if got := resp.Header.Get("X-Hopper-Job-Id"); got != job.id() {
		t.Errorf("X-Hopper-Job-Id: got %q, want %q", got, job.id())
	}
	got := lines(resp.Body)
	// The job is still running: the client must have chunk 1 already.
	if l := receive(t, got, "chunk 1 while the job runs"); l != chunk1 {
		t.Errorf("chunk 1: got %s, want %s", l, chunk1)
	}
	job.chunk(chunk2)
	job.chunk(lastChunk)
	job.done(chatReply)
	wantLines(t, got, chunk2, lastChunk)
}

func TestDropInNonStreamingAnswersOneObject(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)
	tests := []struct {
		name, path, body, reply string
	}{
		{"Chat", "/api/chat", `{"model":"llama3.2","messages":[],"stream":false}`, chatReply},
		{"Generate", "/api/generate", `{"model":"llama3.2","prompt":"hi","stream":false}`, `{"model":"llama3.2","response":"Hello","done":true}`},
		{"Embed", "/api/embed", `{"model":"all-minilm","input":"hi"}`, `{"model":"all-minilm","embeddings":[[0.1,0.2]]}`},
		{"Embeddings", "/api/embeddings", `{"model":"all-minilm","prompt":"hi"}`, `{"embedding":[0.1,0.2]}`},
		{"OpenAIChat", "/v1/chat/completions", `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}`, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}]}`},
		{"OpenAICompletions", "/v1/completions", `{"model":"llama3.2","prompt":"hi"}`, `{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"Hello","finish_reason":"stop"}]}`},
		{"OpenAIEmbeddings", "/v1/embeddings", `{"model":"all-minilm","input":"hi"}`, `{"object":"list","data":[{"object":"embedding","embedding":[0.1],"index":0}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answered := make(chan []byte, 1)
			status := make(chan int, 1)
			go func() {
				resp, body := call(t, "POST", f.URL+tt.path, tt.body)
				status <- resp.StatusCode
				answered <- body
			}()
			job := runner.next().start()
			job.done(tt.reply)
			if s := receive(t, status, "the answer"); s != 200 {
				t.Errorf("status: got %d, want 200", s)
			}
			if got := receive(t, answered, "the body"); !jsonEqual(t, got, []byte(tt.reply)) {
				t.Errorf("got %s, want %s", got, tt.reply)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

func TestDropInOpenAIStreamingIsSSEEndingInDone(t *testing.T) {
	const (
		c1    = `{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}`
		c2    = `{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"lo"},"finish_reason":"stop"}]}`
		usage = `{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
	)
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"WithoutUsage", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			[]string{"data: " + c1, "", "data: " + c2, "", "data: [DONE]", ""}},
		{"WithUsage", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			[]string{"data: " + c1, "", "data: " + c2, "", "data: " + usage, "", "data: [DONE]", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answered := make(chan *http.Response, 1)
			go func() { answered <- send(t, context.Background(), "POST", f.URL+"/v1/chat/completions", tt.body) }()
			job := runner.next().start()
			job.chunk(c1)
			resp := receive(t, answered, "the stream to begin")
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
				t.Fatalf("got %d %q, want 200 text/event-stream", resp.StatusCode, ct)
			}
			got := lines(resp.Body)
			if l := receive(t, got, "the first event"); l != "data: "+c1 {
				t.Errorf("first event: got %s", l)
			}
			job.chunk(c2)
			job.chunk(usage)
			job.done(`{"id":"chatcmpl-1","object":"chat.completion","choices":[]}`)
			wantLines(t, got, tt.want[1:]...)
		})
	}
}

func TestDropInFastJobStillStreamsItsAnswer(t *testing.T) {
	// The job runs and finishes before the front looks at its output: the
	// answer goes out whole, as one chunk (SSE: a chunk, usage, [DONE]).
	sp := newSpool(t)
	runner := newFakeRunner(t, sp)
	release := make(chan struct{})
	g := newFrontWithWaitHook(t, sp, func(string) { <-release })
	tests := []struct {
		name, path, body, reply string
		want                    []string
	}{
		{"Chat", "/api/chat", chatJob, chatReply, []string{chatReply}},
		{"OpenAIChat", "/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}`,
			[]string{
				`data: {"choices":[{"delta":{"role":"assistant","content":"Hello"},"finish_reason":"stop","index":0}],"id":"c","object":"chat.completion.chunk"}`, "",
				`data: {"choices":[],"id":"c","object":"chat.completion.chunk","usage":{"total_tokens":3}}`, "",
				"data: [DONE]", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answered := make(chan *http.Response, 1)
			go func() { answered <- send(t, context.Background(), "POST", g.URL+tt.path, tt.body) }()
			job := runner.next().start()
			job.chunk(`{"lost":"to the front"}`)
			job.done(tt.reply)
			release <- struct{}{}
			resp := receive(t, answered, "the answer")
			defer resp.Body.Close()
			got := lines(resp.Body)
			for _, want := range tt.want {
				if l := receive(t, got, "a line"); l != want {
					t.Errorf("got %s\nwant %s", l, want)
				}
			}
		})
	}
}

// newFrontWithWaitHook starts a front whose onWait hook runs hook, which
// may block the request before it first looks at its job.
func newFrontWithWaitHook(t *testing.T, sp *spool.Spool, hook func(id string)) *front {
	t.Helper()
	f := &front{sp: sp}
	f.srv, f.Server = serve(t, httpfront.WithHooks(httpfront.Config{Spool: sp}, hook, nil))
	return f
}

func TestDropInClientDisconnectCancelsItsJob(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)

	t.Run("WhileQueued", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "POST", f.URL+"/api/chat", strings.NewReader(chatJob))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		id := receive(t, f.waits, "the request to queue its job")
		cancel()
		rec := waitRecord(t, sp, id)
		if rec.State != spool.StateFailed || rec.Error == nil || rec.Error.Kind != spool.KindCanceled {
			t.Errorf("got %s %+v, want failed canceled", rec.State, rec.Error)
		}
		runner.q.Remove(spool.DirNew, id+".json")
	})
	t.Run("WhileStreaming", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		answered := make(chan *http.Response, 1)
		go func() { answered <- send(t, ctx, "POST", f.URL+"/api/chat", chatJob) }()
		job := runner.next().start()
		job.chunk(chunk1)
		resp := receive(t, answered, "the stream to begin")
		got := lines(resp.Body)
		receive(t, got, "chunk 1")
		cancel()
		if id := receive(t, runner.cancels, "the cancel request"); id != job.id() {
			t.Errorf("cancel request for %s, want %s", id, job.id())
		}
		job.fail(spool.KindCanceled, "canceled while running", 0)
	})
}

func TestDropInErrors(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)

	t.Run("AFailedRecordAnswersInEachDialect", func(t *testing.T) {
		tests := []struct {
			name, path, body string
			kind             spool.ErrorKind
			msg              string
			status           int
			wantStatus       int
			wantMsg          string
			wantType         string // OpenAI's error type; "" for Ollama's shape
		}{
			{"TargetNotFoundOnChat", "/api/chat", chatJob, spool.KindTarget, "model 'llama3.2' not found", 404, 404, "model 'llama3.2' not found", ""},
			{"TargetNotFoundOnV1", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, spool.KindTarget, "model 'nope' not found", 404, 404, "model 'nope' not found", "api_error"},
			{"TargetNotFoundOnStreamingV1", "/v1/chat/completions", `{"model":"nope","stream":true,"messages":[{"role":"user","content":"hi"}]}`, spool.KindTarget, "model 'nope' not found", 404, 404, "model 'nope' not found", "api_error"},
			{"TargetBadRequest", "/api/generate", `{"model":"m","prompt":"p","stream":false}`, spool.KindTarget, "raw mode does not support template, system, or context", 400, 400, "raw mode does not support", ""},
			{"TargetErrorInsideAStream", "/api/chat", chatJob, spool.KindTarget, "llama runner crashed (after 3 attempts)", 200, 500, "llama runner crashed", ""},
			{"BadInput", "/api/chat", chatJob, spool.KindBadInput, "unknown function", 0, 400, "unknown function", ""},
			{"Canceled", "/api/chat", chatJob, spool.KindCanceled, "canceled over HTTP", 0, 499, "request canceled", ""},
			{"Timeout", "/v1/completions", `{"model":"m","prompt":"p"}`, spool.KindTimeout, "the job ran longer than its timeout of 30m0s", 0, 504, "timeout", "api_error"},
			{"Expired", "/api/embed", `{"model":"m","input":"x"}`, spool.KindExpired, "the job waited 2h", 0, 503, "waited", ""},
			{"Interrupted", "/api/chat", chatJob, spool.KindInterrupted, "hopper stopped", 0, 500, "hopper stopped", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				type result struct {
					status int
					body   []byte
				}
				got := make(chan result, 1)
				go func() {
					resp, body := call(t, "POST", f.URL+tt.path, tt.body)
					got <- result{resp.StatusCode, body}
				}()
				runner.next().start().fail(tt.kind, tt.msg, tt.status)
				r := receive(t, got, "the answer")
				if r.status != tt.wantStatus {
					t.Errorf("status: got %d, want %d (%s)", r.status, tt.wantStatus, r.body)
				}
				if tt.wantType == "" {
					e := decode[ollamaError](t, r.body)
					if !strings.Contains(e.Error, tt.wantMsg) {
						t.Errorf("error: got %q, want %q", e.Error, tt.wantMsg)
					}
					return
				}
				e := decode[openaiError](t, r.body)
				if !strings.Contains(e.Error.Message, tt.wantMsg) || e.Error.Type != tt.wantType ||
					string(e.Error.Param) != "null" || string(e.Error.Code) != "null" {
					t.Errorf("error: got %s, want message %q type %q, param and code null", r.body, tt.wantMsg, tt.wantType)
				}
			})
		}
	})

	t.Run("RequestsOllamaRefusesAreRefusedBeforeQueueing", func(t *testing.T) {
		tests := []struct {
			name, path, body string
			status           int
			msg              string
		}{
			{"EmptyBody", "/api/chat", "", 400, "missing request body"},
			{"TruncatedJSON", "/api/chat", `{"model": "m"`, 400, "unexpected EOF"},
			{"InvalidCharacter", "/api/generate", `{model: "m"}`, 400, "invalid character 'm' looking for beginning of object key string"},
			{"ModelNotAString", "/api/chat", `{"model": 5}`, 400, "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"},
			{"ChatWithoutModel", "/api/chat", `{"messages": []}`, 400, "model is required"},
			{"GenerateWithoutModel", "/api/generate", `{"prompt": "p"}`, 404, "model '' not found"},
			{"EmbedWithoutModel", "/api/embed", `{"input": "p"}`, 404, "model '' not found"},
			{"EmbeddingsWithoutModel", "/api/embeddings", `{"prompt": "p"}`, 400, "model is required"},
			{"BadPriorityHeader", "/api/chat", chatJob, 400, "X-Hopper-Priority"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var header []string
				if tt.name == "BadPriorityHeader" {
					header = []string{"X-Hopper-Priority", "high"}
				}
				resp, body := call(t, "POST", f.URL+tt.path, tt.body, header...)
				e := decode[ollamaError](t, body)
				if resp.StatusCode != tt.status || e.Error != tt.msg && !strings.Contains(e.Error, tt.msg) {
					t.Errorf("got %d %q, want %d %q", resp.StatusCode, e.Error, tt.status, tt.msg)
				}
			})
		}
		v1 := []struct {
			name, path, body string
			status           int
			msg, typ         string
		}{
			{"NoMessages", "/v1/chat/completions", `{"model":"m","messages":[]}`, 400, "[] is too short - 'messages'", "invalid_request_error"},
			{"ChatWithoutModel", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "model is required", "api_error"},
			{"CompletionWithoutModel", "/v1/completions", `{"prompt":"hi"}`, 404, "model '' not found", "api_error"},
			{"Truncated", "/v1/embeddings", `{"model":`, 400, "unexpected EOF", "invalid_request_error"},
		}
		for _, tt := range v1 {
			t.Run("V1"+tt.name, func(t *testing.T) {
				resp, body := call(t, "POST", f.URL+tt.path, tt.body)
				e := decode[openaiError](t, body)
				if resp.StatusCode != tt.status || e.Error.Message != tt.msg || e.Error.Type != tt.typ {
					t.Errorf("got %d %s, want %d %q %q", resp.StatusCode, body, tt.status, tt.msg, tt.typ)
				}
			})
		}
		if n := countFiles(t, sp, "new"); n != 0 {
			t.Errorf("jobs queued: got %d, want none", n)
		}
	})

	t.Run("AnAttemptFailingMidStreamEndsTheStreamAndCancelsTheRetry", func(t *testing.T) {
		answered := make(chan *http.Response, 1)
		go func() { answered <- send(t, context.Background(), "POST", f.URL+"/api/chat", chatJob) }()
		job := runner.next().start()
		job.chunk(chunk1)
		resp := receive(t, answered, "the stream")
		defer resp.Body.Close()
		got := lines(resp.Body)
		receive(t, got, "chunk 1")
		job.chunk(`{"error":"llama runner process has terminated"}`)
		job.deferAttempt("llama runner process has terminated")
		l := receive(t, got, "the error line")
		if e := decode[ollamaError](t, []byte(l)); !strings.Contains(e.Error, "terminated") {
			t.Errorf("got %s, want the attempt's error", l)
		}
		if rec := waitRecord(t, sp, job.id()); rec.Error == nil || rec.Error.Kind != spool.KindCanceled {
			t.Errorf("the deferred job: got %s %+v, want failed canceled", rec.State, rec.Error)
		}
	})

	t.Run("APriorityHeaderSetsThePriority", func(t *testing.T) {
		answered := make(chan int, 1)
		go func() {
			resp, _ := call(t, "POST", f.URL+"/api/chat", chatJob, "X-Hopper-Priority", "7")
			answered <- resp.StatusCode
		}()
		job := runner.next()
		if job.rec.Priority != 7 {
			t.Errorf("priority: got %d, want 7", job.rec.Priority)
		}
		job.start().done(chatReply)
		if status := receive(t, answered, "the answer"); status != 200 {
			t.Errorf("status: got %d, want 200", status)
		}
	})
}

// The job file keeps the text the client sent: <, > and & are not escaped
// (a body full of markup must not grow past max_job_size on the way).
func TestDropInJobKeepsMarkupAsSent(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	runner := newFakeRunner(t, sp)
	status := make(chan int, 1)
	go func() {
		resp, _ := call(t, "POST", f.URL+"/api/chat", `{"model":"llama3.2","messages":[{"role":"user","content":"<b>fish & chips</b>"}],"stream":false}`)
		status <- resp.StatusCode
	}()
	job := runner.next()
	if !strings.Contains(string(job.rec.Job), `"content":"<b>fish & chips</b>"`) {
		t.Errorf("job file: %s, want the content as sent", job.rec.Job)
	}
	job.start().done(chatReply)
	if s := receive(t, status, "the answer"); s != 200 {
		t.Errorf("status: got %d, want 200", s)
	}
}
