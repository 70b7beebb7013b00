package ollamatest_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

// endless is a streaming chat that generates until its client goes away,
// given WithTokens(endlessTokens) and a token delay of some milliseconds:
// it would take minutes.
const endlessTokens = 50_000

func endless(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":"x"}]}`
}

// short is a chat answered in one object after n tokens, with the given
// options besides num_predict ("" for none).
func short(model string, n int, options string) string {
	opts := `"num_predict":` + strconv.Itoa(n)
	if options != "" {
		opts += "," + options
	}
	return `{"model":"` + model + `","stream":false,"options":{` + opts + `},"messages":[{"role":"user","content":"x"}]}`
}

// holding opens an endless stream and returns once its first token has
// arrived, so that the request holds a slot; cancel ends it, and so does
// the end of the test.
func holding(t *testing.T, s *ollamatest.Server, model string) (cancel func()) {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	r, closeBody := stream(t, ctx, s, "/api/chat", endless(model))
	cancel = func() { stop(); closeBody() }
	t.Cleanup(cancel)
	if _, err := r.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	return cancel
}

// blocked sends the chat body in the background, waits until it is the
// one request waiting for its model (what names it), and checks that it
// has no answer yet, because of why.
func blocked(t *testing.T, s *ollamatest.Server, body, what, why string) <-chan response {
	t.Helper()
	ch := later(s, "/api/chat", body)
	eventually(t, what, func() bool { return s.Waiting() == 1 })
	pending(t, ch, why)
	return ch
}

// later sends a request in the background; the channel delivers its
// response.
func later(s *ollamatest.Server, path, body string) <-chan response {
	out := make(chan response, 1)
	go func() {
		r, _ := fetch(context.Background(), s, http.MethodPost, path, body)
		out <- r
	}()
	return out
}

// await returns the response from ch, failing the test after 10 seconds.
func await(t *testing.T, ch <-chan response) response {
	t.Helper()
	return runtest.Receive(t, ch, 10*time.Second, "a response")
}

// pending fails the test if ch already has a response.
func pending(t *testing.T, ch <-chan response, why string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("answered %d %s while %s", r.status, r.body, why)
	default:
	}
}

// eventually waits until cond holds, checking every millisecond, and fails
// the test after 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !runtest.Poll(10*time.Second, time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestParallelServesNRequestsAtOnceAndQueuesTheRest(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithParallel(2),
		ollamatest.WithTokens(endlessTokens), ollamatest.WithTokenDelay(5*time.Millisecond))
	stop1 := holding(t, s, "tiny")
	stop2 := holding(t, s, "tiny")
	third := blocked(t, s, short("tiny", 3, ""),
		"the third request to wait", "two requests held both slots")
	if s.Serving() != 2 || s.InFlight() != 3 || s.Loads() != 1 {
		t.Errorf("Serving %d InFlight %d Loads %d, want 2, 3, 1", s.Serving(), s.InFlight(), s.Loads())
	}

	stop1()
	o := await(t, third).ok(t).object(t)
	if o["done_reason"] != "length" || field(o, "message", "content") != "reply from tiny" {
		t.Errorf("third answer %v", o)
	}
	if got := s.MaxServing(); got != 2 {
		t.Errorf("MaxServing %d, want 2", got)
	}
	if got := s.MaxInFlight(); got != 3 {
		t.Errorf("MaxInFlight %d, want 3", got)
	}
	stop2()
	eventually(t, "all requests to end", func() bool { return s.InFlight() == 0 })
	if s.Serving() != 0 || s.Waiting() != 0 || s.Loads() != 1 {
		t.Errorf("after: Serving %d Waiting %d Loads %d", s.Serving(), s.Waiting(), s.Loads())
	}
}

func TestParallelDefaultsToOne(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithTokens(endlessTokens), ollamatest.WithTokenDelay(5*time.Millisecond))
	stop := holding(t, s, "tiny")
	second := blocked(t, s, short("tiny", 2, ""),
		"the second request to wait", "the first held the only slot")
	// A load request needs no slot: Ollama answers it once the model is loaded.
	if o := post(t, s, "/api/generate", `{"model":"tiny"}`).ok(t).object(t); o["done_reason"] != "load" {
		t.Errorf("load answer %v", o)
	}
	stop()
	await(t, second).ok(t)
	if got := s.MaxServing(); got != 1 {
		t.Errorf("MaxServing %d, want 1", got)
	}
}

func TestEmbeddingModelsServeOneAtATime(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModel(ollamatest.Model{Name: "emb", Embedding: true}),
		ollamatest.WithParallel(4), ollamatest.WithLoadDelay(50*time.Millisecond))
	var answers []<-chan response
	for range 8 {
		answers = append(answers, later(s, "/api/embed", `{"model":"emb","input":"x"}`))
	}
	for _, a := range answers {
		await(t, a).ok(t)
	}
	if got := s.MaxServing(); got != 1 {
		t.Errorf("MaxServing %d, want 1: Ollama loads embedding models with one slot", got)
	}
}

func TestMaxModelsInFlight(t *testing.T) {
	t.Run("OneLoadedModelNeverServesBesideAnother", func(t *testing.T) {
		s := ollamatest.NewServer(t, ollamatest.WithModels("a", "b"), ollamatest.WithMaxLoaded(1),
			ollamatest.WithParallel(2), ollamatest.WithTokens(endlessTokens), ollamatest.WithTokenDelay(5*time.Millisecond))
		stopA1 := holding(t, s, "a")
		stopA2 := holding(t, s, "a")
		b := blocked(t, s, short("b", 2, ""),
			"b to wait for a", "a was busy and only one model may be loaded")
		if got := s.Resident(); !slices.Equal(got, []string{"a:latest"}) {
			t.Errorf("Resident %v while b waits", got)
		}
		stopA1()
		stopA2()
		await(t, b).ok(t)
		if got := s.MaxModelsInFlight(); got != 1 {
			t.Errorf("MaxModelsInFlight %d, want 1", got)
		}
		if got := s.MaxServing(); got != 2 {
			t.Errorf("MaxServing %d, want 2", got)
		}
		if got := s.Resident(); !slices.Equal(got, []string{"b:latest"}) || s.LoadsOf("a") != 1 || s.LoadsOf("b") != 1 {
			t.Errorf("Resident %v, loads of a %d, of b %d", got, s.LoadsOf("a"), s.LoadsOf("b"))
		}
	})
	t.Run("TwoLoadedModelsServeTogether", func(t *testing.T) {
		s := ollamatest.NewServer(t, ollamatest.WithModels("a", "b"), ollamatest.WithMaxLoaded(2),
			ollamatest.WithTokens(endlessTokens), ollamatest.WithTokenDelay(5*time.Millisecond))
		holding(t, s, "a")
		holding(t, s, "b")
		if got := s.MaxModelsInFlight(); got != 2 {
			t.Errorf("MaxModelsInFlight %d, want 2", got)
		}
	})
}

func TestReload(t *testing.T) {
	t.Run("OtherNumCtxWaitsForInFlightRequestsThenReloads", func(t *testing.T) {
		const delay = 30 * time.Millisecond
		s := ollamatest.NewServer(t, ollamatest.WithParallel(2), ollamatest.WithLoadDelay(delay),
			ollamatest.WithTokens(endlessTokens), ollamatest.WithTokenDelay(5*time.Millisecond))
		stop := holding(t, s, "tiny")
		big := blocked(t, s, short("tiny", 2, `"num_ctx":8192`),
			"the num_ctx 8192 request to wait", "the model was busy with num_ctx 4096")
		if s.Serving() != 1 || s.LoadsOf("tiny") != 1 {
			t.Errorf("Serving %d, LoadsOf %d, want 1 and 1: a free slot is no use to other options", s.Serving(), s.LoadsOf("tiny"))
		}
		// Requests with the loaded options still share its slots.
		if o := post(t, s, "/api/chat", short("tiny", 2, `"num_ctx":4096,"temperature":0`)).ok(t).object(t); o["done_reason"] != "length" {
			t.Errorf("answer with the loaded options: %v", o)
		}
		pending(t, big, "the model was still busy")
		if s.Loads() != 1 {
			t.Fatalf("Loads %d before the first request ended", s.Loads())
		}

		stop()
		o := await(t, big).ok(t).object(t)
		if d := time.Duration(o["load_duration"].(float64)); d < delay {
			t.Errorf("load_duration %v, want at least the load delay %v", d, delay)
		}
		if s.Loads() != 2 || s.LoadsOf("tiny") != 2 {
			t.Errorf("Loads %d, LoadsOf %d, want 2", s.Loads(), s.LoadsOf("tiny"))
		}
		if got := s.Resident(); !slices.Equal(got, []string{"tiny:latest"}) {
			t.Errorf("Resident %v", got)
		}
		post(t, s, "/api/chat", short("tiny", 1, "")).ok(t)
		if s.Loads() != 3 {
			t.Errorf("Loads %d, want 3: back to the default num_ctx is another reload", s.Loads())
		}
	})

	t.Run("WhichOptionsReload", func(t *testing.T) {
		tests := []struct {
			name          string
			first, second string // options
			reload        bool
		}{
			{"NoneTwice", ``, ``, false},
			{"DefaultNumCtxSpelledOut", ``, `"num_ctx":4096`, false},
			{"NumCtx", ``, `"num_ctx":8192`, true},
			{"NumCtxBelowFourIsFour", `"num_ctx":1`, `"num_ctx":4`, false},
			{"FractionalNumCtxIsTruncated", `"num_ctx":2048.9`, `"num_ctx":2048`, false},
			{"NullIsIgnored", ``, `"num_ctx":null`, false},
			{"NumBatch", ``, `"num_batch":256`, true},
			{"NumGPU", ``, `"num_gpu":0`, true},
			{"NegativeNumGPUMatchesAny", `"num_gpu":2`, `"num_gpu":-1`, false},
			{"NumGPUAfterDefault", `"num_gpu":-1`, `"num_gpu":2`, true},
			{"MainGPU", ``, `"main_gpu":1`, true},
			{"UseMMapSet", ``, `"use_mmap":true`, true},
			{"UseMMapSame", `"use_mmap":false`, `"use_mmap":false`, false},
			{"UseMMapFlipped", `"use_mmap":false`, `"use_mmap":true`, true},
			{"NumThread", ``, `"num_thread":4`, true},
			{"SamplingOptionsDoNot", ``, `"temperature":0.1,"top_k":3,"seed":7,"num_keep":2,"stop":["x"]`, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := ollamatest.NewServer(t)
				post(t, s, "/api/chat", short("tiny", 1, tt.first)).ok(t)
				post(t, s, "/api/chat", short("tiny", 1, tt.second)).ok(t)
				want := 1
				if tt.reload {
					want = 2
				}
				if got := s.LoadsOf("tiny"); got != want {
					t.Errorf("LoadsOf %d, want %d", got, want)
				}
			})
		}
	})

	t.Run("EveryInferenceEndpointCompares", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		steps := []struct {
			path, body string
			loads      int
		}{
			{"/api/generate", `{"model":"tiny","prompt":"x","stream":false}`, 1},
			{"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`, 1},
			{"/api/embed", `{"model":"tiny","input":"x","options":{"num_ctx":8192}}`, 2},
			{"/api/embeddings", `{"model":"tiny","prompt":"x","options":{"num_ctx":8192}}`, 2},
			{"/v1/completions", `{"model":"tiny","prompt":"x"}`, 3},
			{"/v1/embeddings", `{"model":"tiny","input":"x"}`, 3},
			{"/api/chat", `{"model":"tiny","options":{"num_batch":64}}`, 4}, // a load request
		}
		for _, st := range steps {
			post(t, s, st.path, st.body).ok(t)
			if got := s.Loads(); got != st.loads {
				t.Errorf("after %s %s: Loads %d, want %d", st.path, st.body, got, st.loads)
			}
		}
	})

	t.Run("PSShowsTheLoadedNumCtxUpToTheTrainedContext", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		for _, tt := range []struct{ numCtx, want int }{{2048, 2048}, {8192, 4096}} {
			post(t, s, "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"options":{"num_ctx":`+
				strconv.Itoa(tt.numCtx)+`}}`).ok(t)
			ps := runtest.Decode[struct {
				Models []struct {
					ContextLength int `json:"context_length"`
				}
			}](t, []byte(get(t, s, "/api/ps").ok(t).body))
			if len(ps.Models) != 1 || ps.Models[0].ContextLength != tt.want {
				t.Errorf("num_ctx %d: ps %+v, want context_length %d", tt.numCtx, ps, tt.want)
			}
		}
	})

	t.Run("RequestsForAModelBeingReloadedShareTheNewLoad", func(t *testing.T) {
		s := ollamatest.NewServer(t, ollamatest.WithParallel(3), ollamatest.WithLoadDelay(20*time.Millisecond),
			ollamatest.WithTokens(endlessTokens), ollamatest.WithTokenDelay(5*time.Millisecond))
		stop := holding(t, s, "tiny")
		var bigs []<-chan response
		for range 3 {
			bigs = append(bigs, later(s, "/api/chat", short("tiny", 2, `"num_ctx":8192`)))
		}
		eventually(t, "three requests to wait", func() bool { return s.Waiting() == 3 })
		stop()
		for _, b := range bigs {
			await(t, b).ok(t)
		}
		if s.Loads() != 2 {
			t.Errorf("Loads %d, want 2: one reload for all three", s.Loads())
		}
	})
}

// TestWaitingRequestsGiveUp checks that a request waiting for a slot or a
// reload can be abandoned without leaking the slot or blocking the queue.
func TestWaitingRequestsGiveUp(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithTokens(endlessTokens), ollamatest.WithTokenDelay(5*time.Millisecond))
	stop := holding(t, s, "tiny")
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, body := range []string{short("tiny", 1, ""), short("tiny", 1, `"num_ctx":8192`)} {
		wg.Go(func() { fetch(ctx, s, http.MethodPost, "/api/chat", body) })
	}
	eventually(t, "both to wait", func() bool { return s.Waiting() == 2 })
	cancel()
	wg.Wait()
	eventually(t, "the abandoned requests to end", func() bool { return s.Waiting() == 0 && s.InFlight() == 1 })
	stop()
	post(t, s, "/api/chat", short("tiny", 1, `"num_ctx":8192`)).ok(t)
	post(t, s, "/api/chat", short("tiny", 1, `"num_ctx":8192`)).ok(t)
	if s.Loads() != 2 || s.MaxServing() != 1 {
		t.Errorf("Loads %d MaxServing %d, want 2 and 1", s.Loads(), s.MaxServing())
	}
}
