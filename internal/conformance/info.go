package conformance

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// Shapes of the read-only endpoints hopper's front proxies.
const (
	detailsShape = `{families:[string],family:string,format:string,parameter_size:string,parent_model:string,quantization_level:string}`
	tagsShape    = `{models:[{details:` + detailsShape + `,digest:string,model:string,modified_at:string,name:string,size:number}]}`
	psShape      = `{models:[{context_length:number,details:` + detailsShape + `,digest:string,expires_at:string,model:string,name:string,size:number,size_vram:number}]}`
	psEmptyShape = `{models:[]}`
	// showShape is /api/show's top level; model_info and tensors depend
	// on the model file.
	showShape   = `{capabilities:array,details:object,model_info:object,modelfile:string,modified_at:string,parameters:string,template:string,tensors:array}`
	tensorShape = `{name:string,shape:[number],type:string}`
	modelsShape = `{data:[{created:number,id:string,object:string,owned_by:string}],object:string}`
)

// Version is the Ollama release the expectations were taken from.
const Version = "0.17.4"

func testInfo(t *testing.T, c client) {
	t.Run("RootSaysRunning", func(t *testing.T) {
		c := c.with(t)
		r := c.get("/").ok(t, "GET /")
		if string(r.body) != "Ollama is running" || r.contentType() != "text/plain; charset=utf-8" {
			t.Errorf("GET / = %q (%s), want %q (text/plain; charset=utf-8)", r.body, r.contentType(), "Ollama is running")
		}
		h := c.do(http.MethodHead, "/", nil).ok(t, "HEAD /")
		if len(h.body) != 0 || h.contentType() != "text/plain; charset=utf-8" {
			t.Errorf("HEAD / = %q (%s), want no body, text/plain; charset=utf-8", h.body, h.contentType())
		}
	})
	t.Run("Version", func(t *testing.T) {
		c := c.with(t)
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			r := c.do(method, "/api/version", nil).ok(t, method+" /api/version")
			want := `{"version":"` + Version + `"}`
			if method == http.MethodHead {
				want = ""
			}
			if string(r.body) != want || r.contentType() != jsonUTF8 {
				t.Errorf("%s /api/version = %s (%s), want %s (%s)", method, r.body, r.contentType(), want, jsonUTF8)
			}
		}
	})
	t.Run("TagsListsEveryModelAsNameColonTag", func(t *testing.T) {
		c := c.with(t)
		r := c.get("/api/tags").ok(t, "GET /api/tags")
		if r.contentType() != jsonUTF8 {
			t.Errorf("Content-Type = %q, want %q", r.contentType(), jsonUTF8)
		}
		m := object(t, r.body)
		wantShape(t, "/api/tags", m, tagsShape)
		var names []string
		for _, e := range list(t, m, "models") {
			e := e.(map[string]any)
			name := str(t, e, "name")
			if model := str(t, e, "model"); model != name {
				t.Errorf("/api/tags: model %q, name %q; want them equal", model, name)
			}
			timestamp(t, e, "modified_at")
			if d := str(t, e, "digest"); len(d) != 64 {
				t.Errorf("/api/tags: digest %q, want 64 hex digits", d)
			}
			names = append(names, name)
		}
		slices.Sort(names)
		if want := latest(Models...); !slices.Equal(names, want) {
			t.Errorf("/api/tags names = %v, want %v", names, want)
		}
		if h := c.do(http.MethodHead, "/api/tags", nil); h.status != http.StatusOK || len(h.body) != 0 {
			t.Errorf("HEAD /api/tags = %d %q, want 200 and no body", h.status, h.body)
		}
	})
	t.Run("Show", func(t *testing.T) {
		c := c.with(t)
		for _, body := range []map[string]any{{"model": "m1"}, {"name": "m1"}, {"model": "m1:latest"}} {
			r := c.post("/api/show", body).ok(t, "POST /api/show")
			m := object(t, r.body)
			if got := shape(m, 1); got != showShape {
				t.Errorf("/api/show %v has the shape\n  %s\nwant\n  %s", body, got, showShape)
			}
			wantShape(t, "/api/show details", m["details"], detailsShape)
			caps := list(t, m, "capabilities")
			if !slices.Contains(caps, any("completion")) {
				t.Errorf("/api/show capabilities = %v, want completion among them", caps)
			}
			info := field(t, m, "model_info")
			if arch, ok := info["general.architecture"].(string); !ok || arch == "" {
				t.Errorf("/api/show model_info[general.architecture] = %#v, want a string", info["general.architecture"])
			} else if _, ok := info[arch+".context_length"].(float64); !ok {
				t.Errorf("/api/show model_info[%s.context_length] = %#v, want a number", arch, info[arch+".context_length"])
			}
			for _, tensor := range list(t, m, "tensors") {
				wantShape(t, "/api/show tensor", tensor, tensorShape)
			}
			timestamp(t, m, "modified_at")
		}
	})
	t.Run("OpenAIModels", func(t *testing.T) {
		c := c.with(t)
		r := c.get("/v1/models").ok(t, "GET /v1/models")
		if r.contentType() != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", r.contentType())
		}
		m := object(t, r.body)
		wantShape(t, "/v1/models", m, modelsShape)
		var ids []string
		for _, e := range list(t, m, "data") {
			e := e.(map[string]any)
			ids = append(ids, str(t, e, "id"))
			if o, by := str(t, e, "object"), str(t, e, "owned_by"); o != "model" || by != "library" {
				t.Errorf("/v1/models entry object %q owned_by %q, want model, library", o, by)
			}
		}
		slices.Sort(ids)
		if want := latest(Models...); !slices.Equal(ids, want) {
			t.Errorf("/v1/models ids = %v, want %v", ids, want)
		}
	})
}

// jsonUTF8 is the Content-Type of Ollama's own JSON answers (gin's c.JSON).
const jsonUTF8 = "application/json; charset=utf-8"

// latest returns the names as /api/ps and /api/tags show them.
func latest(names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		if !strings.Contains(n, ":") {
			n += ":latest"
		}
		out[i] = n
	}
	return out
}
