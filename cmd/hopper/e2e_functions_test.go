package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

const labelFn = `model: m1
system: 'Classify. Answer {"label": "..."}.'
prompt: "{{.text}}"
vars:
  text: {required: true, description: the message}
format:
  type: object
  properties:
    label: {type: string, enum: [bug, feature, question]}
  required: [label]
`

func TestFunctionsByCLIAndHTTP(t *testing.T) {
	w := newWorld(t, ollamatest.WithReply(func(ollamatest.Request) string { return `{"label":"question"}` }))
	fdir := filepath.Join(w.dir, "functions")
	os.MkdirAll(fdir, 0o750)
	if err := os.WriteFile(filepath.Join(fdir, "label.yaml"), []byte(labelFn), 0o640); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, "HOPPER_FUNCTIONS_DIR="+fdir)
	addr := runtest.FreeAddr(t)
	w.serve("--http", addr)
	base := "http://" + addr
	waitFor(t, "the front", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

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
		resp, err := http.Post(base+"/functions/label", "application/json", strings.NewReader(`{"text":"it crashes"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			ID       string
			Output   map[string]string
			Response json.RawMessage
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 || got.ID == "" || got.Output["label"] != "question" || len(got.Response) == 0 {
			t.Errorf("got %d %+v, %v", resp.StatusCode, got, err)
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
		resp, err = http.Get(base + loc + "?wait=30s")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rec struct {
			State  string
			Output map[string]string
		}
		json.NewDecoder(resp.Body).Decode(&rec)
		if rec.State != "done" || rec.Output["label"] != "question" {
			t.Errorf("got %+v", rec)
		}
	})
	t.Run("HTTPUnknownFunctionAndBadVarsAre4xx", func(t *testing.T) {
		for path, want := range map[string]int{"/functions/nope": 404} {
			resp, err := http.Post(base+path, "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s: got %d, want %d", path, resp.StatusCode, want)
			}
		}
		resp, err := http.Post(base+"/functions/label", "application/json", strings.NewReader(`{"txt":"typo"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("bad vars: got %d, want 400", resp.StatusCode)
		}
	})
}

// TestGETFunctionsListsThem: the front lists the functions as `hopper
// functions --json` does.
func TestGETFunctionsListsThem(t *testing.T) {
	w := newWorld(t)
	fdir := filepath.Join(w.dir, "fns")
	if err := os.MkdirAll(fdir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fdir, "shout.yaml"), []byte("model: m1\nprompt: \"{{.text}}\"\nvars:\n  text: {required: true}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, "HOPPER_FUNCTIONS_DIR="+fdir)
	addr := runtest.FreeAddr(t)
	w.serve("--http", addr)
	var body []byte
	waitFor(t, "GET /functions", func() bool {
		resp, err := http.Get("http://" + addr + "/functions")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
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
	fdir := filepath.Join(w.dir, "fns")
	if err := os.MkdirAll(fdir, 0o750); err != nil {
		t.Fatal(err)
	}
	for name, model := range map[string]string{"absent": "llama3.2", "present": "m1"} {
		def := "model: " + model + "\nprompt: \"{{.text}}\"\nvars:\n  text: {required: true}\n"
		if err := os.WriteFile(filepath.Join(fdir, name+".yaml"), []byte(def), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	w.env = append(w.env, "HOPPER_FUNCTIONS_DIR="+fdir)
	srv := w.serve()
	waitFor(t, "the warning", func() bool {
		return strings.Contains(srv.log.String(), "function absent names model llama3.2, which no target has")
	})
	if strings.Contains(srv.log.String(), "function present names") {
		t.Errorf("warned of a function whose model the target has:\n%s", srv.log.String())
	}
}
