package ollamatest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

func chatWith(model, keepAlive string) string {
	body := `{"model":"` + model + `","stream":false,"messages":[{"role":"user","content":"hi"}]`
	if keepAlive != "" {
		body += `,"keep_alive":` + keepAlive
	}
	return body + "}"
}

func TestLoadsHappenOnlyWhenTheModelIsNotResident(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithLoadDelay(30*time.Millisecond))
	first := post(t, s, "/api/chat", chatWith("tiny", "")).ok(t).object(t)
	second := post(t, s, "/api/chat", chatWith("tiny", "")).ok(t).object(t)
	if s.Loads() != 1 || s.LoadsOf("tiny") != 1 {
		t.Errorf("Loads %d, LoadsOf %d; want 1", s.Loads(), s.LoadsOf("tiny"))
	}
	if d := time.Duration(first["load_duration"].(float64)); d < 30*time.Millisecond {
		t.Errorf("first load_duration %v, want at least the load delay", d)
	}
	if d := time.Duration(second["load_duration"].(float64)); d >= 30*time.Millisecond {
		t.Errorf("second load_duration %v, want no load", d)
	}
	if got := s.Resident(); !slices.Equal(got, []string{"tiny:latest"}) {
		t.Errorf("Resident %v", got)
	}
}

func TestKeepAlive(t *testing.T) {
	tests := []struct {
		name      string
		keepAlive string
		stillIn   time.Duration // resident after this much time
		goneAfter time.Duration // and gone after this much (0: never)
	}{
		{"DefaultIsFiveMinutes", "", 5*time.Minute - time.Second, 5 * time.Minute},
		{"NumberIsSeconds", `30`, 29 * time.Second, 30 * time.Second},
		{"FractionalSeconds", `1.5`, time.Second, 1500 * time.Millisecond},
		{"DurationString", `"1h30m"`, 89 * time.Minute, 90 * time.Minute},
		{"NegativeNumberIsForever", `-1`, 100 * 365 * 24 * time.Hour, 0},
		{"NegativeDurationIsForever", `"-5m"`, 100 * 365 * 24 * time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			s := ollamatest.NewServer(t, ollamatest.WithClock(c.now))
			post(t, s, "/api/chat", chatWith("tiny", tt.keepAlive)).ok(t)
			c.add(tt.stillIn)
			if len(s.Resident()) != 1 {
				t.Fatalf("unloaded before %v", tt.stillIn)
			}
			if tt.goneAfter == 0 {
				return
			}
			c.add(tt.goneAfter - tt.stillIn)
			if got := s.Resident(); len(got) != 0 {
				t.Errorf("still resident after %v: %v", tt.goneAfter, got)
			}
		})
	}
	t.Run("ZeroUnloadsWhenTheRequestEnds", func(t *testing.T) {
		s := ollamatest.NewServer(t)
		post(t, s, "/api/chat", chatWith("tiny", `0`)).ok(t)
		if got := s.Resident(); len(got) != 0 {
			t.Errorf("resident %v", got)
		}
		post(t, s, "/api/chat", chatWith("tiny", `"0s"`)).ok(t)
		if s.Loads() != 2 || len(s.Resident()) != 0 {
			t.Errorf("Loads %d Resident %v", s.Loads(), s.Resident())
		}
	})
	t.Run("ARequestWithoutOneLeavesTheLoadedModelsAlone", func(t *testing.T) {
		// Ollama's scheduler changes a loaded model's keep_alive only when a
		// request gives one (sessionDuration is nil otherwise); /v1 requests
		// never give one.
		c := newClock()
		s := ollamatest.NewServer(t, ollamatest.WithClock(c.now))
		post(t, s, "/api/chat", chatWith("tiny", `-1`)).ok(t)
		post(t, s, "/api/chat", chatWith("tiny", "")).ok(t)
		post(t, s, "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"hi"}]}`).ok(t)
		c.add(24 * time.Hour)
		if len(s.Resident()) != 1 {
			t.Error("a request without keep_alive cut the model's keep_alive of forever")
		}
	})
	t.Run("EachRequestSetsItsOwnKeepAlive", func(t *testing.T) {
		c := newClock()
		s := ollamatest.NewServer(t, ollamatest.WithClock(c.now))
		post(t, s, "/api/chat", chatWith("tiny", `-1`)).ok(t)
		post(t, s, "/api/chat", chatWith("tiny", `"1m"`)).ok(t)
		c.add(time.Minute)
		if got := s.Resident(); len(got) != 0 {
			t.Errorf("resident %v, want the later keep_alive to rule", got)
		}
	})
	t.Run("PSShowsExpiry", func(t *testing.T) {
		c := newClock()
		s := ollamatest.NewServer(t, ollamatest.WithClock(c.now))
		post(t, s, "/api/generate", `{"model":"tiny","prompt":"x","stream":false,"keep_alive":"10m"}`).ok(t)
		var ps struct {
			Models []struct {
				Name, Model   string
				ExpiresAt     time.Time `json:"expires_at"`
				Size          int64
				SizeVRAM      int64 `json:"size_vram"`
				ContextLength int   `json:"context_length"`
				Digest        string
			}
		}
		if err := json.Unmarshal([]byte(get(t, s, "/api/ps").ok(t).body), &ps); err != nil {
			t.Fatal(err)
		}
		m := ps.Models[0]
		if len(ps.Models) != 1 || m.Name != "tiny:latest" || m.Model != "tiny:latest" || !m.ExpiresAt.Equal(c.now().Add(10*time.Minute)) ||
			m.Size == 0 || m.SizeVRAM != m.Size || m.ContextLength != 4096 || len(m.Digest) != 64 {
			t.Errorf("ps %+v, clock %v", ps, c.now())
		}
	})
}

func TestLoadAndUnloadRequests(t *testing.T) {
	s := ollamatest.NewServer(t)
	for _, tt := range []struct{ path, body string }{
		{"/api/chat", `{"model":"tiny"}`},
		{"/api/chat", `{"model":"tiny","messages":[],"stream":true}`},
		{"/api/generate", `{"model":"tiny"}`},
	} {
		r := post(t, s, tt.path, tt.body).ok(t)
		o := r.object(t) // one object even when streaming was asked for
		if o["done_reason"] != "load" || o["done"] != true || r.contentType != "application/json; charset=utf-8" {
			t.Errorf("%s %s: %s", tt.path, tt.body, r.body)
		}
		if _, ok := o["total_duration"]; ok {
			t.Errorf("load answer has metrics: %s", r.body)
		}
	}
	if s.Loads() != 1 || len(s.Resident()) != 1 {
		t.Fatalf("Loads %d Resident %v, want one load", s.Loads(), s.Resident())
	}
	o := post(t, s, "/api/generate", `{"model":"tiny","keep_alive":0}`).ok(t).object(t)
	if o["done_reason"] != "unload" || o["response"] != "" {
		t.Errorf("unload answer %v", o)
	}
	if len(s.Resident()) != 0 || s.Loads() != 1 {
		t.Errorf("after unload: Loads %d Resident %v", s.Loads(), s.Resident())
	}
	o = post(t, s, "/api/chat", `{"model":"tiny","keep_alive":0}`).ok(t).object(t)
	if o["done_reason"] != "unload" || field(o, "message", "role") != "assistant" || s.Loads() != 1 {
		t.Errorf("unloading an unloaded model: %v, Loads %d", o, s.Loads())
	}
}

func TestMaxLoadedEvictsTheShortestKeepAliveFirst(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModels("a", "b", "c", "d"), ollamatest.WithMaxLoaded(2))
	post(t, s, "/api/chat", chatWith("b", `-1`)).ok(t)
	post(t, s, "/api/chat", chatWith("a", `"1m"`)).ok(t)
	post(t, s, "/api/chat", chatWith("c", `"10m"`)).ok(t)
	if got := s.Resident(); !slices.Equal(got, []string{"b:latest", "c:latest"}) {
		t.Errorf("after c: %v, want a evicted", got)
	}
	post(t, s, "/api/chat", chatWith("d", `"10m"`)).ok(t)
	if got := s.Resident(); !slices.Equal(got, []string{"b:latest", "d:latest"}) {
		t.Errorf("after d: %v, want c evicted and the pinned b kept", got)
	}
	post(t, s, "/api/chat", chatWith("a", `"1m"`)).ok(t)
	if got := s.Resident(); !slices.Equal(got, []string{"a:latest", "b:latest"}) || s.LoadsOf("a") != 2 {
		t.Errorf("after a again: %v, loads of a %d", got, s.LoadsOf("a"))
	}
}

func TestDefaultMaxLoadedIsThree(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithModels("a", "b", "c", "d"))
	for _, m := range []string{"a", "b", "c", "d"} {
		post(t, s, "/api/chat", chatWith(m, "")).ok(t)
	}
	if got := s.Resident(); len(got) != 3 {
		t.Errorf("resident %v, want 3", got)
	}
}

// TestOneRequestAtATimePerModel starts a second request while the first is
// generating and checks that the second's tokens come after the first's.
func TestOneRequestAtATimePerModel(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithTokens(20), ollamatest.WithTokenDelay(10*time.Millisecond))
	body := `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`
	first, closeFirst := stream(t, t.Context(), s, "/api/chat", body)
	defer closeFirst()
	if _, err := first.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		second response
	)
	wg.Go(func() {
		resp, err := http.Post(s.URL+"/api/chat", "application/json", strings.NewReader(body))
		if err != nil {
			second.err = err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		second = response{status: resp.StatusCode, body: string(b), err: err}
	})
	var firstEnd time.Time
	for {
		line, err := first.ReadBytes('\n')
		if err != nil {
			t.Fatal(err)
		}
		var chunk struct {
			CreatedAt time.Time `json:"created_at"`
			Done      bool
		}
		if err := json.Unmarshal(line, &chunk); err != nil {
			t.Fatal(err)
		}
		if chunk.Done {
			firstEnd = chunk.CreatedAt
			break
		}
	}
	wg.Wait()
	chunks := second.ok(t).lines(t)
	var secondStart time.Time
	if err := secondStart.UnmarshalText([]byte(chunks[0]["created_at"].(string))); err != nil {
		t.Fatal(err)
	}
	if secondStart.Before(firstEnd) {
		t.Errorf("second request's first token at %v, before the first finished at %v", secondStart, firstEnd)
	}
	if got := s.MaxInFlight(); got != 2 {
		t.Errorf("MaxInFlight %d, want 2 (both requests were being handled)", got)
	}
	if got := s.InFlight(); got != 0 {
		t.Errorf("InFlight %d after both ended", got)
	}
}

func TestInFlightCountsOnlyInference(t *testing.T) {
	s := ollamatest.NewServer(t)
	get(t, s, "/api/ps").ok(t)
	get(t, s, "/api/tags").ok(t)
	post(t, s, "/api/show", `{"model":"tiny"}`).ok(t)
	if s.MaxInFlight() != 0 {
		t.Errorf("MaxInFlight %d after metadata requests", s.MaxInFlight())
	}
	post(t, s, "/api/embed", `{"model":"tiny","input":"x"}`).ok(t)
	if s.MaxInFlight() != 1 || s.InFlight() != 0 {
		t.Errorf("MaxInFlight %d InFlight %d", s.MaxInFlight(), s.InFlight())
	}
}

func TestClientDisconnectAbortsGeneration(t *testing.T) {
	s := ollamatest.NewServer(t, ollamatest.WithTokens(1000), ollamatest.WithTokenDelay(10*time.Millisecond))
	body := `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`
	ctx, cancel := context.WithCancel(t.Context())
	r, closeBody := stream(t, ctx, s, "/api/chat", body)
	if _, err := r.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	closeBody()
	// Unaborted, the first generation would hold the model for 10 seconds.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel2()
	s.SlowTokens(0)
	if r := send(t, ctx2, s, "POST", "/api/chat", body); r.status != 200 || r.err != nil {
		t.Fatalf("second request: %d %v", r.status, r.err)
	}
}

func TestRequestsAreRecorded(t *testing.T) {
	c := newClock()
	s := ollamatest.NewServer(t, ollamatest.WithClock(c.now))
	post(t, s, "/api/generate", `{"model":"tiny","prompt":"x","stream":false}`).ok(t)
	c.add(time.Second)
	get(t, s, "/api/ps").ok(t)
	reqs := s.Requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests", len(reqs))
	}
	if r := reqs[0]; r.Method != "POST" || r.Path != "/api/generate" || string(r.Body) != `{"model":"tiny","prompt":"x","stream":false}` ||
		!r.Time.Equal(newClock().now()) || r.Header.Get("User-Agent") == "" {
		t.Errorf("first %+v", r)
	}
	if r := reqs[1]; r.Method != "GET" || r.Path != "/api/ps" || len(r.Body) != 0 || !r.Time.Equal(c.now()) {
		t.Errorf("second %+v", r)
	}
}
