package httpfront_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

// modelHost stands in for Ollama's model management: it keeps a set of
// model names and blobs, records what it was asked, and answers pull,
// create, push, delete, copy, tags, ps and blobs in Ollama's shapes and
// words.
type modelHost struct {
	*httptest.Server
	mu      sync.Mutex
	models  map[string]bool // full names: "m1:latest"
	blobs   map[string][]byte
	asked   []string // "METHOD /path"
	pullErr string   // a pull streams "pulling manifest", then this error
	refuse  string   // a pull or create answers 500 with this at once
}

func newModelHost(t *testing.T, models ...string) *modelHost {
	t.Helper()
	h := &modelHost{models: map[string]bool{}, blobs: map[string][]byte{}}
	for _, m := range models {
		h.models[full(m)] = true
	}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

// full gives a name its tag, as Ollama does.
func full(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name
	}
	return name + ":latest"
}

func (h *modelHost) has(model string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.models[full(model)]
}

func (h *modelHost) blobOf(digest string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.blobs[digest]
}

func (h *modelHost) requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.asked)
}

func (h *modelHost) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.asked = append(h.asked, r.Method+" "+r.URL.Path)
	h.mu.Unlock()
	if strings.HasPrefix(r.URL.Path, "/api/blobs/") {
		h.blob(w, r)
		return
	}
	var req struct {
		Model, Name, Source, Destination string
		Stream                           *bool
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	model := full(req.Model + req.Name)
	answer := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(v)
	}
	notFound := func(msg string) { answer(http.StatusNotFound, map[string]string{"error": msg}) }
	h.mu.Lock()
	defer h.mu.Unlock()
	switch r.URL.Path {
	case "/api/pull", "/api/create", "/api/push":
		if h.refuse != "" {
			answer(http.StatusInternalServerError, map[string]string{"error": h.refuse})
			return
		}
		steps := []map[string]any{{"status": "pulling manifest"}}
		for _, done := range []int{0, 50, 100} {
			steps = append(steps, map[string]any{"status": "pulling 000000000001", "digest": "sha256:0000000000010000", "total": 100, "completed": done})
		}
		steps = append(steps, map[string]any{"status": "verifying sha256 digest"}, map[string]any{"status": "writing manifest"})
		if h.pullErr != "" {
			steps = []map[string]any{{"status": "pulling manifest"}, {"error": h.pullErr}}
		} else {
			h.models[model] = true
			steps = append(steps, map[string]any{"status": "success"})
		}
		if req.Stream != nil && !*req.Stream {
			last := steps[len(steps)-1]
			if _, bad := last["error"]; bad {
				answer(http.StatusInternalServerError, last)
				return
			}
			answer(http.StatusOK, last)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, s := range steps {
			json.NewEncoder(w).Encode(s)
			w.(http.Flusher).Flush()
		}
	case "/api/delete":
		if !h.models[model] {
			notFound(fmt.Sprintf("model '%s' not found", req.Model+req.Name))
			return
		}
		delete(h.models, model)
	case "/api/copy":
		if !h.models[full(req.Source)] {
			notFound(fmt.Sprintf("model %q not found", req.Source))
			return
		}
		h.models[full(req.Destination)] = true
	case "/api/tags", "/api/ps":
		list := []map[string]any{}
		for m := range h.models {
			list = append(list, map[string]any{"name": m, "model": m, "digest": "d-" + m,
				"modified_at": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "expires_at": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		}
		answer(http.StatusOK, map[string]any{"models": list})
	default:
		answer(http.StatusNotFound, map[string]string{"error": "not served by modelHost"})
	}
}

func (h *modelHost) blob(w http.ResponseWriter, r *http.Request) {
	digest := strings.TrimPrefix(r.URL.Path, "/api/blobs/")
	h.mu.Lock()
	_, ok := h.blobs[digest]
	h.mu.Unlock()
	switch {
	case r.Method == http.MethodHead && !ok:
		w.WriteHeader(http.StatusNotFound)
	case ok:
		w.WriteHeader(http.StatusOK) // Ollama does not read a blob it has
	default:
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		h.mu.Lock()
		h.blobs[digest] = data
		h.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}
}

// targets configures the front with named targets, gpu1 first.
func targets(urls ...string) func(*httpfront.Config) {
	return func(c *httpfront.Config) {
		c.Target = ""
		for i, u := range urls {
			c.Targets = append(c.Targets, httpfront.Target{Name: fmt.Sprintf("gpu%d", i+1), URL: u})
		}
	}
}

// progressLine is a line of pull or create progress as clients read it.
type progressLine struct {
	Status    string `json:"status"`
	Digest    string `json:"digest"`
	Total     int64  `json:"total"`
	Completed int64  `json:"completed"`
	Error     string `json:"error"`
	Target    string `json:"target"`
}

// progressOf reads an NDJSON answer to the end.
func progressOf(t *testing.T, resp *http.Response) []progressLine {
	t.Helper()
	defer resp.Body.Close()
	var out []progressLine
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var p progressLine
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func statuses(lines []progressLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, cmp.Or(l.Status, "error: "+l.Error))
	}
	return out
}

func TestModelPullRunsOnEveryTargetInTurn(t *testing.T) {
	a, b := newModelHost(t), newModelHost(t)
	f := startFront(t, newSpool(t), targets(a.URL, b.URL))

	resp := send(t, context.Background(), "POST", f.URL+"/api/pull", `{"model":"llama3.2"}`)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
		t.Fatalf("got %d %s, want 200 NDJSON", resp.StatusCode, ct)
	}
	lines := progressOf(t, resp)
	want := []string{
		"pulling manifest (gpu1)", "pulling 000000000001 (gpu1)", "pulling 000000000001 (gpu1)", "pulling 000000000001 (gpu1)",
		"verifying sha256 digest (gpu1)", "writing manifest (gpu1)",
		"pulling manifest (gpu2)", "pulling 000000000001 (gpu2)", "pulling 000000000001 (gpu2)", "pulling 000000000001 (gpu2)",
		"verifying sha256 digest (gpu2)", "writing manifest (gpu2)",
		"success",
	}
	if got := statuses(lines); !slices.Equal(got, want) {
		t.Fatalf("statuses:\n got %q\nwant %q", got, want)
	}
	for _, l := range lines[:len(lines)-1] {
		if l.Target == "" || !strings.HasSuffix(l.Status, "("+l.Target+")") {
			t.Errorf("line %+v does not name its target", l)
		}
	}
	if d := lines[3]; d.Digest != "sha256:0000000000010000" || d.Total != 100 || d.Completed != 100 {
		t.Errorf("a layer's progress was changed: %+v", d)
	}
	if !a.has("llama3.2") || !b.has("llama3.2") {
		t.Error("the model is not on both targets")
	}

	t.Run("UnstreamedAnswersOneObject", func(t *testing.T) {
		resp, body := call(t, "POST", f.URL+"/api/create", `{"model":"mine","from":"llama3.2","stream":false}`)
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"success"}` {
			t.Errorf("got %d %s, want one success", resp.StatusCode, body)
		}
		if !a.has("mine") || !b.has("mine") {
			t.Error("the model was not created on both targets")
		}
	})
}

func TestModelPullGoesOnlyWhereTheModelsListsAdmitIt(t *testing.T) {
	a, b := newModelHost(t), newModelHost(t)
	f := startFront(t, newSpool(t), func(c *httpfront.Config) {
		c.Target = ""
		c.Targets = []httpfront.Target{
			{Name: "gpu1", URL: a.URL, Models: []string{"llama3*"}},
			{Name: "gpu2", URL: b.URL, Models: []string{"qwen*"}},
		}
	})
	lines := progressOf(t, send(t, context.Background(), "POST", f.URL+"/api/pull", `{"name":"qwen3:8b"}`))
	// One target: its answer as it is, unlabelled.
	if got := statuses(lines); got[0] != "pulling manifest" || got[len(got)-1] != "success" {
		t.Errorf("got %q, want gpu2's own progress", got)
	}
	if a.has("qwen3:8b") || !b.has("qwen3:8b") || len(a.requests()) != 0 {
		t.Errorf("gpu1 was asked %v; want qwen3 pulled on gpu2 only", a.requests())
	}
	resp, body := call(t, "POST", f.URL+"/api/pull", `{"model":"mistral"}`)
	if e := decode[ollamaError](t, body).Error; resp.StatusCode != 400 || !strings.Contains(e, "no target may run model 'mistral'") || !strings.Contains(e, "gpu2: qwen*") {
		t.Errorf("got %d %s, want 400 naming the lists", resp.StatusCode, body)
	}
}

func TestModelPullReportsAFailedTargetAfterTryingTheRest(t *testing.T) {
	t.Run("MidStream", func(t *testing.T) {
		a, b := newModelHost(t), newModelHost(t)
		a.pullErr = "pull model manifest: file does not exist"
		f := startFront(t, newSpool(t), targets(a.URL, b.URL))
		lines := progressOf(t, send(t, context.Background(), "POST", f.URL+"/api/pull", `{"model":"m1"}`))
		got := statuses(lines)
		last := lines[len(lines)-1]
		if got[0] != "pulling manifest (gpu1)" || got[1] != "pulling manifest (gpu2)" || slices.Contains(got, "success") ||
			last.Error != "target gpu1: pull model manifest: file does not exist (done on gpu2)" {
			t.Errorf("got %q, want gpu1's failure named last, no success", got)
		}
		if !b.has("m1") {
			t.Error("gpu2 was not pulled after gpu1 failed")
		}
	})
	t.Run("TheSameFailureEverywhereIsOllamasOwnWords", func(t *testing.T) {
		a, b := newModelHost(t), newModelHost(t)
		a.pullErr, b.pullErr = "pull model manifest: file does not exist", "pull model manifest: file does not exist"
		f := startFront(t, newSpool(t), targets(a.URL, b.URL))
		lines := progressOf(t, send(t, context.Background(), "POST", f.URL+"/api/pull", `{"model":"nosuch"}`))
		if last := lines[len(lines)-1]; last.Error != "pull model manifest: file does not exist" {
			t.Errorf("got %q", statuses(lines))
		}
	})
	t.Run("BeforeAnyProgressItIsTheStatus", func(t *testing.T) {
		a, b := newModelHost(t), newModelHost(t)
		a.refuse, b.refuse = "disk full", "no space left"
		f := startFront(t, newSpool(t), targets(a.URL, b.URL))
		resp, body := call(t, "POST", f.URL+"/api/pull", `{"model":"m1"}`)
		if e := decode[ollamaError](t, body).Error; resp.StatusCode != 500 || e != "target gpu1: disk full; target gpu2: no space left" {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
	t.Run("ATargetThatIsDown", func(t *testing.T) {
		a, b := newModelHost(t), newModelHost(t)
		a.Close()
		f := startFront(t, newSpool(t), targets(a.URL, b.URL))
		lines := progressOf(t, send(t, context.Background(), "POST", f.URL+"/api/pull", `{"model":"m1"}`))
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last.Error, "target gpu1: cannot reach "+a.URL) || !strings.HasSuffix(last.Error, "(done on gpu2)") || !b.has("m1") {
			t.Errorf("got %q", statuses(lines))
		}
	})
}

func TestModelDeleteRemovesFromEveryTargetThatHasIt(t *testing.T) {
	a, b := newModelHost(t, "m1", "m2"), newModelHost(t, "m1")
	f := startFront(t, newSpool(t), targets(a.URL, b.URL))
	if resp, body := call(t, "DELETE", f.URL+"/api/delete", `{"model":"m1"}`); resp.StatusCode != 200 {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if a.has("m1") || b.has("m1") {
		t.Error("m1 is still on a target")
	}
	if resp, body := call(t, "DELETE", f.URL+"/api/delete", `{"name":"m2"}`); resp.StatusCode != 200 || a.has("m2") {
		t.Errorf("m2, on gpu1 only: got %d %s", resp.StatusCode, body)
	}
	resp, body := call(t, "DELETE", f.URL+"/api/delete", `{"model":"m1"}`)
	if resp.StatusCode != 404 || strings.TrimSpace(string(body)) != `{"error":"model 'm1' not found"}` {
		t.Errorf("no target has it: got %d %s, want Ollama's 404", resp.StatusCode, body)
	}

	t.Run("ATargetThatIsDownIsNamed", func(t *testing.T) {
		up, down := newModelHost(t, "m1"), newModelHost(t, "m1")
		down.Close()
		f := startFront(t, newSpool(t), targets(up.URL, down.URL))
		resp, body := call(t, "DELETE", f.URL+"/api/delete", `{"model":"m1"}`)
		e := decode[ollamaError](t, body).Error
		if resp.StatusCode != 502 || !strings.HasPrefix(e, "target gpu2: cannot reach "+down.URL) || !strings.HasSuffix(e, "(done on gpu1)") || up.has("m1") {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
}

func TestModelCopyOnEveryTargetThatHasTheSource(t *testing.T) {
	a, b := newModelHost(t, "m1", "m2"), newModelHost(t, "m1")
	f := startFront(t, newSpool(t), targets(a.URL, b.URL))
	if resp, body := call(t, "POST", f.URL+"/api/copy", `{"source":"m1","destination":"m1-copy"}`); resp.StatusCode != 200 || !a.has("m1-copy") || !b.has("m1-copy") {
		t.Errorf("got %d %s, want the copy on both", resp.StatusCode, body)
	}
	if resp, body := call(t, "POST", f.URL+"/api/copy", `{"source":"m2","destination":"m2-copy"}`); resp.StatusCode != 200 || !a.has("m2-copy") || b.has("m2-copy") {
		t.Errorf("got %d %s, want the copy on gpu1 only", resp.StatusCode, body)
	}
	resp, body := call(t, "POST", f.URL+"/api/copy", `{"source":"nosuch","destination":"x"}`)
	if resp.StatusCode != 404 || strings.TrimSpace(string(body)) != `{"error":"model \"nosuch\" not found"}` {
		t.Errorf("got %d %s, want Ollama's 404", resp.StatusCode, body)
	}
}

func TestModelPushFromTheFirstTargetThatHasIt(t *testing.T) {
	a, b := newModelHost(t, "m0"), newModelHost(t, "me/m1")
	f := startFront(t, newSpool(t), targets(a.URL, b.URL))
	lines := progressOf(t, send(t, context.Background(), "POST", f.URL+"/api/push", `{"model":"me/m1"}`))
	if got := statuses(lines); got[len(got)-1] != "success" || slices.Contains(a.requests(), "POST /api/push") || !slices.Contains(b.requests(), "POST /api/push") {
		t.Errorf("got %q; gpu1 asked %v, gpu2 %v; want the push from gpu2", got, a.requests(), b.requests())
	}
}

func TestModelBlobsGoToEveryTarget(t *testing.T) {
	a, b := newModelHost(t), newModelHost(t)
	digest := "sha256:" + strings.Repeat("ab", 32)
	a.blobs[digest] = []byte("layer")
	f := startFront(t, newSpool(t), targets(a.URL, b.URL))
	if resp, _ := call(t, "HEAD", f.URL+"/api/blobs/"+digest, ""); resp.StatusCode != 404 {
		t.Errorf("HEAD with the blob on gpu1 only: got %d, want 404", resp.StatusCode)
	}
	layer := strings.Repeat("x", 1<<20)
	if resp, body := call(t, "POST", f.URL+"/api/blobs/"+digest, layer); resp.StatusCode != 201 {
		t.Errorf("POST: got %d %s, want 201", resp.StatusCode, body)
	}
	if got := string(b.blobOf(digest)); got != layer {
		t.Errorf("gpu2 stored %d bytes, want %d", len(got), len(layer))
	}
	if resp, _ := call(t, "HEAD", f.URL+"/api/blobs/"+digest, ""); resp.StatusCode != 200 {
		t.Errorf("HEAD with the blob everywhere: got %d, want 200", resp.StatusCode)
	}
	t.Run("ATargetThatIsDownIsLeftOut", func(t *testing.T) {
		down := newModelHost(t)
		down.Close()
		f := startFront(t, newSpool(t), targets(b.URL, down.URL))
		if resp, _ := call(t, "HEAD", f.URL+"/api/blobs/"+digest, ""); resp.StatusCode != 200 {
			t.Errorf("got %d, want 200", resp.StatusCode)
		}
	})
}

func TestTagsAreTheUnionOfTheTargets(t *testing.T) {
	a := ollamatest.NewServer(t, ollamatest.WithModels("m1", "shared"))
	b := ollamatest.NewServer(t, ollamatest.WithModels("shared", "m3"))
	f := startFront(t, newSpool(t), targets(a.URL, b.URL))

	_, body := call(t, "GET", f.URL+"/api/tags", "")
	tags := decode[struct {
		Models []struct {
			Name       string    `json:"name"`
			Digest     string    `json:"digest"`
			ModifiedAt time.Time `json:"modified_at"`
		} `json:"models"`
	}](t, body)
	var names []string
	for i, m := range tags.Models {
		names = append(names, m.Name)
		if m.Digest == "" || (i > 0 && m.ModifiedAt.Unix() > tags.Models[i-1].ModifiedAt.Unix()) {
			t.Errorf("entry %d %+v: want Ollama's fields, newest first", i, m)
		}
	}
	slices.Sort(names)
	if want := []string{"m1:latest", "m3:latest", "shared:latest"}; !slices.Equal(names, want) {
		t.Errorf("/api/tags names %v, want %v", names, want)
	}

	_, body = call(t, "GET", f.URL+"/v1/models", "")
	list := decode[struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object string
		} `json:"data"`
	}](t, body)
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	if list.Object != "list" || !slices.Equal(ids, []string{"m1:latest", "m3:latest", "shared:latest"}) {
		t.Errorf("/v1/models: got %s", body)
	}

	t.Run("PsIsEveryModelLoadedAnywhere", func(t *testing.T) {
		a, b := newModelHost(t, "m1"), newModelHost(t, "m1", "m2")
		f := startFront(t, newSpool(t), targets(a.URL, b.URL))
		_, body := call(t, "GET", f.URL+"/api/ps", "")
		if n := strings.Count(string(body), `"name":`); n != 3 {
			t.Errorf("got %s, want the 3 loaded models", body)
		}
	})
}

func TestModelReadsSkipATargetThatIsDown(t *testing.T) {
	a := ollamatest.NewServer(t, ollamatest.WithModels("m1"))
	b := ollamatest.NewServer(t, ollamatest.WithModels("m2"))
	f := startFront(t, newSpool(t), targets(a.URL, b.URL))
	if resp, body := call(t, "POST", f.URL+"/api/show", `{"model":"m2"}`); resp.StatusCode != 200 {
		t.Errorf("show m2 with both up: got %d %s, want gpu2's answer", resp.StatusCode, body)
	}
	b.Stop()
	for _, tt := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/api/tags", "", 200, `"m1:latest"`},
		{"GET", "/v1/models", "", 200, `"m1:latest"`},
		{"GET", "/api/ps", "", 200, `"models"`},
		{"GET", "/api/version", "", 200, `"version"`},
		{"POST", "/api/show", `{"model":"m1"}`, 200, `"details"`},
		{"POST", "/api/show", `{"model":"m2"}`, 404, `{"error":"model 'm2' not found"}`},
		{"GET", "/", "", 200, "Ollama is running"},
	} {
		resp, body := call(t, tt.method, f.URL+tt.path, tt.body)
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s: got %d %s, want %d with %s", tt.method, tt.path, resp.StatusCode, body, tt.status, tt.want)
		}
	}

	t.Run("EveryTargetDownIs502", func(t *testing.T) {
		a.Stop()
		for _, path := range []string{"/api/tags", "/api/ps", "/api/version"} {
			resp, body := call(t, "GET", f.URL+path, "")
			e := decode[ollamaError](t, body).Error
			if resp.StatusCode != 502 || !strings.HasPrefix(e, "cannot reach the Ollama targets gpu1 at "+a.URL+": ") ||
				!strings.Contains(e, "; gpu2 at "+b.URL+": ") || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Errorf("%s: got %d %s", path, resp.StatusCode, body)
			}
		}
		resp, body := call(t, "GET", f.URL+"/v1/models", "")
		if e := decode[openaiError](t, body); resp.StatusCode != 502 || !strings.HasPrefix(e.Error.Message, "cannot reach the Ollama targets") {
			t.Errorf("/v1/models: got %d %s, want OpenAI's shape", resp.StatusCode, body)
		}
		if resp, body := call(t, "HEAD", f.URL+"/", ""); resp.StatusCode != 200 {
			t.Errorf("HEAD /: got %d %s; the ollama CLI checks it before every command", resp.StatusCode, body)
		}
	})
}

func TestModelTargetsAreChecked(t *testing.T) {
	sp := newSpool(t)
	for _, tt := range []struct {
		targets []httpfront.Target
		field   string
	}{
		{[]httpfront.Target{{Name: "a", URL: "http://x:1"}, {URL: "http://y:1"}}, "targets[1].name"},
		{[]httpfront.Target{{Name: "a", URL: "http://x:1"}, {Name: "a", URL: "http://y:1"}}, "targets[1].name"},
		{[]httpfront.Target{{Name: "a", URL: "ftp://x"}}, "targets[0].url"},
		{[]httpfront.Target{{Name: "a", URL: "http://x:1", Models: []string{"[llama"}}}, "targets[0].models[0]"},
	} {
		_, err := httpfront.New(httpfront.Config{Spool: sp, Targets: tt.targets})
		var ce *httpfront.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("%+v: got %v, want a ConfigError for %s", tt.targets, err, tt.field)
		}
	}
	srv, err := httpfront.New(httpfront.Config{Spool: sp, Targets: []httpfront.Target{{URL: "127.0.0.1:11434"}}})
	if err != nil {
		t.Fatalf("one unnamed target: %v", err)
	}
	srv.Close()
}

// TestModelCreateStreamsWhileItsBodyIsStillComing: with one target the
// front passes a create through, and the target may answer before it has
// read the whole body (Ollama streams "gathering model components" early).
// The front must keep sending the body while the answer streams back: a
// server that is not full duplex would end the body at the first answer
// line and the target's answer would break off.
func TestModelCreateStreamsWhileItsBodyIsStillComing(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"status":"gathering model components"}`)
		_ = http.NewResponseController(w).Flush()
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			fmt.Fprintf(w, "{\"error\":%q}\n", err.Error())
			return
		}
		fmt.Fprintf(w, "{\"status\":\"read %d bytes\"}\n{\"status\":\"success\"}\n", n)
	}))
	t.Cleanup(target.Close)
	f := startFront(t, newSpool(t), func(c *httpfront.Config) { c.Target = target.URL })

	head := `{"model":"mine","from":"llama3.2","license":"`
	rest := strings.Repeat("x", 300<<10) + `"}`
	pr, pw := io.Pipe()
	defer pw.CloseWithError(errors.New("the test is over")) // unblocks the front if the answer never began
	started := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", f.URL+"/api/create", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(head) + len(rest))
	go func() {
		// The rest of the body goes only once the answer has begun.
		_, _ = io.WriteString(pw, head)
		<-started
		_, _ = io.WriteString(pw, rest)
		pw.Close()
	}()
	resp, err := http.DefaultClient.Do(req)
	close(started)
	if err != nil {
		t.Fatal(err)
	}
	lines := progressOf(t, resp)
	want := []string{"gathering model components", fmt.Sprintf("read %d bytes", len(head)+len(rest)), "success"}
	if got := statuses(lines); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
