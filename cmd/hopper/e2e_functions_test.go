package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/functionstest"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

func TestFunctionsByCLIAndHTTP(t *testing.T) {
	w := newWorld(t, ollamatest.WithReply(func(ollamatest.Request) string { return `{"label":"question"}` }))
	w.functions(map[string]string{"label": functionstest.Label("m1", 0)})
	_, base := w.startFront("serve")

	t.Run("InvokeWaitPrintsTheOutput", func(t *testing.T) {
		out := w.hopper("invoke", "label", "--var", "text=how do I change the port?", "--wait")
		if !strings.Contains(out, `"label": "question"`) {
			t.Errorf("invoke --wait printed %q", out)
		}
	})
	t.Run("InvokeRefusesAMissingVarAndWritesNothing", func(t *testing.T) {
		before := w.count("new") + w.count("done") + w.count("failed")
		out, err := w.hopperErr("invoke", "label")
		if err == nil || !strings.Contains(out, `"text"`) {
			t.Errorf("got %q, %v; want a refusal naming the var", out, err)
		}
		if after := w.count("new") + w.count("done") + w.count("failed"); after != before {
			t.Errorf("a job was written: %d files before, %d after", before, after)
		}
	})
	t.Run("HTTPSync", func(t *testing.T) {
		code, _, body := runtest.Call(t, time.Minute, "POST", base+"/functions/label", `{"text":"it crashes"}`)
		var got struct {
			ID       string
			Output   map[string]string
			Response json.RawMessage
		}
		if err := json.Unmarshal(body, &got); err != nil || code != 200 || got.ID == "" || got.Output["label"] != "question" || len(got.Response) == 0 {
			t.Errorf("got %d %+v, %v", code, got, err)
		}
	})
	t.Run("HTTPAsync", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/functions/label", strings.NewReader(`{"text":"add json output"}`))
		req.Header.Set("Prefer", "respond-async")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "/jobs/") {
			t.Fatalf("got %d, Location %q", resp.StatusCode, loc)
		}
		_, _, body := runtest.Call(t, time.Minute, "GET", base+loc+"?wait=30s", nil)
		var rec struct {
			State  string
			Output map[string]string
		}
		if err := json.Unmarshal(body, &rec); err != nil || rec.State != "done" || rec.Output["label"] != "question" {
			t.Errorf("got %+v, %v", rec, err)
		}
	})
	t.Run("HTTPUnknownFunctionAndBadVarsAre4xx", func(t *testing.T) {
		for _, c := range []struct {
			path, body string
			want       int
		}{
			{"/functions/nope", `{}`, 404},
			{"/functions/label", `{"txt":"typo"}`, 400}, // bad vars
		} {
			if code, _, _ := runtest.Call(t, time.Minute, "POST", base+c.path, c.body); code != c.want {
				t.Errorf("POST %s %s: got %d, want %d", c.path, c.body, code, c.want)
			}
		}
	})
}

// TestGETFunctionsListsThem: the front lists the functions as `hopper
// functions --json` does.
func TestGETFunctionsListsThem(t *testing.T) {
	w := newWorld(t)
	w.functions(map[string]string{"shout": "model: m1\nprompt: \"{{.text}}\"\nvars:\n  text: {required: true}\n"})
	_, base := w.startFront("serve")
	var body []byte
	waitFor(t, "GET /functions", func() bool {
		var code int
		code, _, body = runtest.Call(t, time.Minute, "GET", base+"/functions", nil)
		return code == http.StatusOK
	})
	if !strings.Contains(string(body), `"name":"shout"`) || !strings.Contains(string(body), `"required":true`) {
		t.Errorf("GET /functions: %s", body)
	}
}

// TestServeWarnsOfAFunctionWhoseModelNoTargetHas: the example functions
// name llama3.2; a server without it gets a warning at start, not a
// silent failure at the first call.
func TestServeWarnsOfAFunctionWhoseModelNoTargetHas(t *testing.T) {
	w := newWorld(t)
	defs := map[string]string{}
	for name, model := range map[string]string{"absent": "llama3.2", "present": "m1"} {
		defs[name] = "model: " + model + "\nprompt: \"{{.text}}\"\nvars:\n  text: {required: true}\n"
	}
	w.functions(defs)
	srv := w.serve()
	waitFor(t, "the warning", func() bool {
		return strings.Contains(srv.log.String(), "function absent names model llama3.2, which no target has")
	})
	if strings.Contains(srv.log.String(), "function present names") {
		t.Errorf("warned of a function whose model the target has:\n%s", srv.log.String())
	}
}
