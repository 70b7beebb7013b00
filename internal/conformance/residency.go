package conformance

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
)

// running is one entry of /api/ps.
type running struct {
	name    string
	expires time.Time
}

// ps reads /api/ps, checking its shape and that each entry's model is its
// name.
func ps(t testing.TB, c client) []running {
	t.Helper()
	r := c.get("/api/ps").ok(t, "GET /api/ps")
	if r.contentType() != jsonUTF8 {
		t.Errorf("/api/ps Content-Type = %q, want %q", r.contentType(), jsonUTF8)
	}
	m := object(t, r.body)
	models := list(t, m, "models")
	if len(models) == 0 {
		wantShape(t, "/api/ps", m, psEmptyShape)
		return nil
	}
	wantShape(t, "/api/ps", m, psShape)
	var out []running
	for _, e := range models {
		e := e.(map[string]any)
		name := str(t, e, "name")
		if model := str(t, e, "model"); model != name {
			t.Errorf("/api/ps: model %q, name %q; want them equal", model, name)
		}
		out = append(out, running{name: name, expires: timestamp(t, e, "expires_at")})
	}
	return out
}

func names(rs []running) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.name)
	}
	slices.Sort(out)
	return out
}

// waitPS polls /api/ps until it lists exactly the models want (as
// "name:tag"), and returns its entries. Ollama unloads a model after the
// request that asked for it has been answered, so the change is not
// immediate.
func waitPS(t testing.TB, c client, want ...string) []running {
	t.Helper()
	slices.Sort(want)
	var rs []running
	listed := func() bool { rs = ps(t, c); return slices.Equal(names(rs), want) }
	if !runtest.Poll(patience, 20*time.Millisecond, listed) { // polling the server: nothing to wait on
		t.Fatalf("/api/ps lists %v, want %v", names(rs), want)
	}
	return rs
}

// expiresIn checks that model, the only resident one, comes to expire
// keep after a moment between before and after. The server sets the timer
// once it is done with the request, a moment after it answered: until
// then /api/ps may still show the expiry an earlier request set.
func expiresIn(t testing.TB, c client, model string, before, after time.Time, keep time.Duration) {
	t.Helper()
	const slack = 10 * time.Second
	lo, hi := before.Add(keep-slack), after.Add(keep+slack)
	var rs []running
	set := func() bool {
		rs = waitPS(t, c, model)
		return len(rs) == 1 && !rs[0].expires.Before(lo) && !rs[0].expires.After(hi)
	}
	if !runtest.Poll(patience, 20*time.Millisecond, set) { // polling the server: nothing to wait on
		t.Errorf("/api/ps %+v, want one model expiring between %v and %v (keep_alive %v)", rs, lo, hi, keep)
	}
}

func testKeepAlive(t *testing.T, c client) {
	for _, tc := range []struct {
		name string
		keep any // absent when nil
		want time.Duration
	}{
		{"AbsentIsFiveMinutes", nil, 5 * time.Minute},
		{"NumberIsSeconds", 600, 10 * time.Minute},
		{"FractionalSeconds", 90.5, 90*time.Second + 500*time.Millisecond},
		{"DurationString", "10m", 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c.with(t)
			body := map[string]any{"model": "m1", "prompt": "hello", "stream": false}
			if tc.keep != nil {
				body["keep_alive"] = tc.keep
			}
			before := time.Now()
			c.post("/api/generate", body).ok(t, "generate")
			after := time.Now()
			expiresIn(t, c, "m1:latest", before, after, tc.want)
		})
	}
	for _, keep := range []any{-1, "-1s"} {
		t.Run(fmt.Sprintf("NegativeKeepsForever/%v", keep), func(t *testing.T) {
			c := c.with(t)
			c.post("/api/chat", map[string]any{"model": "m1", "messages": hello(), "stream": false, "keep_alive": keep}).ok(t, "chat")
			rs := waitPS(t, c, "m1:latest")
			if rs[0].expires.Year() < 2200 {
				t.Errorf("keep_alive %v: expires_at %v, want centuries away", keep, rs[0].expires)
			}
		})
	}
	t.Run("ZeroUnloadsAfterAnswering", func(t *testing.T) {
		c := c.with(t)
		for _, req := range []struct {
			path string
			body map[string]any
		}{
			{"/api/generate", map[string]any{"model": "m1", "prompt": "hello", "stream": false, "keep_alive": 0}},
			{"/api/chat", map[string]any{"model": "m1", "messages": hello(), "keep_alive": "0s"}},
			{"/api/embed", map[string]any{"model": "m1", "input": "hello", "keep_alive": 0}},
		} {
			r := c.post(req.path, req.body).ok(t, req.path)
			if req.path == "/api/generate" {
				finished(t, "answer", object(t, r.body), "m1")
			}
			waitPS(t, c)
		}
	})
	t.Run("ZeroWithoutPromptUnloads", func(t *testing.T) {
		c := c.with(t)
		for _, req := range []struct {
			path         string
			load, unload map[string]any
			shape        string
		}{
			{"/api/generate", map[string]any{"model": "m1", "prompt": ""},
				map[string]any{"model": "m1", "prompt": "", "keep_alive": 0}, genLoadShape},
			{"/api/chat", map[string]any{"model": "m1", "messages": []any{}},
				map[string]any{"model": "m1", "messages": []any{}, "keep_alive": 0}, chatLoadShape},
		} {
			m := object(t, c.post(req.path, req.load).ok(t, req.path).body)
			if m["done_reason"] != "load" {
				t.Errorf("%s without input: done_reason %v, want load", req.path, m["done_reason"])
			}
			waitPS(t, c, "m1:latest")
			m = object(t, c.post(req.path, req.unload).ok(t, req.path).body)
			wantShape(t, "unload answer", m, req.shape)
			if m["done"] != true || m["done_reason"] != "unload" {
				t.Errorf("%s keep_alive 0 without input: done %v done_reason %v, want true unload", req.path, m["done"], m["done_reason"])
			}
			waitPS(t, c)
		}
	})
}

// loadDuration reads load_duration from an answer.
func loadDuration(t testing.TB, m map[string]any) time.Duration {
	t.Helper()
	return time.Duration(num(t, m, "load_duration"))
}

func testSwaps(t *testing.T, c client) {
	// At most one model is resident: each switch unloads one and loads
	// another, which shows in load_duration and /api/ps. A warm request
	// still reports a (small) load_duration: the time to find the runner.
	// A real load of the tiny models takes 30ms or 300ms (Ollama checks the
	// new runner's health every 250ms), the fake's the configured delay;
	// a warm request is usually a few milliseconds, but the suite does not
	// rely on timings beyond "a load takes at least 10ms".
	forever := func(m map[string]any) map[string]any { m["keep_alive"] = -1; m["stream"] = false; return m }
	chat := func(model string) map[string]any {
		return forever(map[string]any{"model": model, "messages": hello()})
	}
	c.post("/api/chat", chat("m1")).ok(t, "chat m1")
	waitPS(t, c, "m1:latest")
	warm := loadDuration(t, object(t, c.post("/api/chat", chat("m1")).ok(t, "chat m1").body))
	t.Logf("warm load_duration %v", warm)

	for _, step := range []struct {
		name, path, model string
		body              map[string]any
	}{
		{"ChatSwapsToM2", "/api/chat", "m2", chat("m2")},
		{"GenerateSwapsToM3", "/api/generate", "m3", forever(map[string]any{"model": "m3", "prompt": "hello"})},
		{"EmbedSwapsToM1", "/api/embed", "m1", map[string]any{"model": "m1", "input": "hello", "keep_alive": -1}},
		{"BackToM2", "/api/generate", "m2", forever(map[string]any{"model": "m2", "prompt": "hello"})},
	} {
		t.Run(step.name, func(t *testing.T) {
			c := c.with(t)
			m := object(t, c.post(step.path, step.body).ok(t, step.path).body)
			load := loadDuration(t, m)
			t.Logf("%s %s: load_duration %v", step.path, step.model, load)
			if load < 10*time.Millisecond {
				t.Errorf("load_duration %v after a swap, want at least 10ms (a warm request took %v)", load, warm)
			}
			rs := waitPS(t, c, step.model+":latest")
			if rs[0].expires.Year() < 2200 {
				t.Errorf("expires_at %v, want centuries away (keep_alive -1)", rs[0].expires)
			}
		})
	}
	t.Run("OpenAIChatSwapsToo", func(t *testing.T) {
		c := c.with(t)
		c.post("/v1/chat/completions", map[string]any{"model": "m3", "messages": hello()}).ok(t, "/v1/chat/completions")
		waitPS(t, c, "m3:latest")
	})
}
