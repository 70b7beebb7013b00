package e2ereal_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/internal/realollama"
	"github.com/hopper-dev/hopper/internal/realollama/gguf"
	"github.com/hopper-dev/hopper/internal/runtest"
)

// TestOllamaCLIThroughHopper runs the ollama binary as the CLI, with
// OLLAMA_HOST at hopper's front, against two real servers (gpu1, gpu2):
// the model-management commands reach both, the listing is their union,
// errors read as they read against Ollama itself, and a target that stops
// is named. Each server sits behind a gate the test closes to stop it for
// the front (the runner talks to the servers directly).
func TestOllamaCLIThroughHopper(t *testing.T) {
	bin := realollama.Binary(t)
	a, b := slotServer(t, 1, "tiny"), slotServer(t, 1, "tiny")
	gateA, gateB := newGate(t, a.URL), newGate(t, b.URL)
	h := lanesHopper(t, 1, a, b)
	h.start() // `ollama rm` first unloads the model: a generate the runner runs
	both := cliFront(t, h, httpfront.Target{Name: "gpu1", URL: gateA.URL}, httpfront.Target{Name: "gpu2", URL: gateB.URL})
	one := cliFront(t, h, httpfront.Target{Name: "default", URL: gateA.URL})
	ollamaCLI := func(t *testing.T, host string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(patient(t), bin, args...)
		cmd.Env = append(cliEnv(), "HOME="+t.TempDir(), "OLLAMA_HOST="+host)
		out, err := cmd.CombinedOutput()
		t.Logf("OLLAMA_HOST=%s ollama %s: %v\n%s", host, strings.Join(args, " "), err, out)
		return string(out), err
	}
	tags := func(t *testing.T, srv *realollama.Server) []string {
		t.Helper()
		var names []string
		for _, m := range installed(t, srv.URL) {
			names = append(names, m.Name)
		}
		return names
	}

	t.Run("LsListsTheModelOnce", func(t *testing.T) {
		for _, host := range []string{both, one} {
			out, err := ollamaCLI(t, host, "ls")
			if err != nil || strings.Count(out, "tiny:latest") != 1 || !strings.Contains(out, "NAME") {
				t.Errorf("%s: got %v\n%s\nwant one line for tiny:latest", host, err, out)
			}
		}
	})
	t.Run("CpAndRmReachEveryTarget", func(t *testing.T) {
		if out, err := ollamaCLI(t, both, "cp", "tiny", "tiny2"); err != nil || !strings.Contains(out, "copied 'tiny' to 'tiny2'") {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		for _, srv := range []*realollama.Server{a, b} {
			if names := tags(t, srv); !slices.Contains(names, "tiny2:latest") {
				t.Errorf("%s has %v after cp, want tiny2 too", srv.URL, names)
			}
		}
		if out, err := ollamaCLI(t, both, "rm", "tiny2"); err != nil || !strings.Contains(out, "deleted 'tiny2'") {
			t.Fatalf("rm: %v\n%s", err, out)
		}
		for _, srv := range []*realollama.Server{a, b} {
			if names := tags(t, srv); slices.Contains(names, "tiny2:latest") || !slices.Contains(names, "tiny:latest") {
				t.Errorf("%s has %v after rm, want tiny only", srv.URL, names)
			}
		}
		out, err := ollamaCLI(t, both, "rm", "tiny2")
		if err == nil || !strings.Contains(out, "Error: model 'tiny2' not found") {
			t.Errorf("rm again: %v\n%s\nwant Ollama's not found", err, out)
		}
	})
	t.Run("ShowAnswersFromATargetThatHasIt", func(t *testing.T) {
		// The CLI prints the parameters in map order: compare the lines as sets.
		direct, _ := ollamaCLI(t, a.Host, "show", "tiny")
		for _, host := range []string{both, one} {
			out, err := ollamaCLI(t, host, "show", "tiny")
			if err != nil || !slices.Equal(sortedLines(out), sortedLines(direct)) || !strings.Contains(out, "architecture") {
				t.Errorf("%s: got %v\n%s\nwant what Ollama shows:\n%s", host, err, out, direct)
			}
		}
	})
	t.Run("RunOfAMissingModelFailsAsAgainstOllama", func(t *testing.T) {
		direct, err := ollamaCLI(t, a.Host, "run", "nosuchmodel", "hi")
		want := lastError(direct)
		if err == nil || want == "" || !strings.Contains(direct, "pulling manifest") {
			t.Fatalf("against Ollama: %v\n%s\nwant a pull that fails", err, direct)
		}
		for _, host := range []string{both, one} {
			out, err := ollamaCLI(t, host, "run", "nosuchmodel", "hi")
			if err == nil || lastError(out) != want || !strings.Contains(out, "pulling manifest") {
				t.Errorf("%s: got %v, %q\nwant %q after pulling", host, err, lastError(out), want)
			}
		}
	})
	t.Run("CreateReachesEveryTarget", func(t *testing.T) {
		// A model of its own weights: its blob is on neither server yet.
		dir := t.TempDir()
		if err := gguf.WriteFile(filepath.Join(dir, "tiny.gguf"), gguf.Tiny(7)); err != nil {
			t.Fatal(err)
		}
		modelfile := filepath.Join(dir, "Modelfile")
		if err := os.WriteFile(modelfile, []byte(realollama.Modelfile(filepath.Join(dir, "tiny.gguf"))), 0o640); err != nil {
			t.Fatal(err)
		}
		out, err := ollamaCLI(t, both, "create", "tiny7", "-f", modelfile)
		if err != nil || !strings.Contains(out, "success") || !strings.Contains(out, "(gpu2)") {
			t.Fatalf("create: %v\n%s", err, out)
		}
		for _, srv := range []*realollama.Server{a, b} {
			if names := tags(t, srv); !slices.Contains(names, "tiny7:latest") {
				t.Errorf("%s has %v after create, want tiny7 too", srv.URL, names)
			}
		}
	})
	t.Run("ATargetThatStopsIsNamed", func(t *testing.T) {
		gateB.Close()
		if out, err := ollamaCLI(t, both, "ls"); err != nil || !strings.Contains(out, "tiny:latest") {
			t.Errorf("gpu2 down: got %v\n%s\nwant gpu1's models", err, out)
		}
		gateA.Close()
		out, err := ollamaCLI(t, both, "ls")
		if err == nil || !strings.Contains(out, "Error: cannot reach the Ollama targets gpu1 at "+gateA.URL+": ") ||
			!strings.Contains(out, "; gpu2 at "+gateB.URL+": ") {
			t.Errorf("both down: got %v\n%s\nwant an error naming both", err, out)
		}
		out, err = ollamaCLI(t, one, "ls")
		if err == nil || !strings.Contains(out, "Error: cannot reach the Ollama target default at "+gateA.URL+": ") {
			t.Errorf("the one target down: got %v\n%s\nwant an error naming it", err, out)
		}
	})
}

// lastError is the last "Error: ..." line the CLI printed.
func lastError(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); strings.HasPrefix(l, "Error: ") {
			return l
		}
	}
	return ""
}

func sortedLines(out string) []string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	slices.Sort(lines)
	return lines
}

// cliEnv is the test's environment without OLLAMA_* and HOME, for the CLI.
func cliEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OLLAMA_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// newGate is a reverse proxy to target that the test closes to stop the
// server for whoever goes through the gate.
func newGate(t *testing.T, target string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(slog.NewTextHandler(output(t), nil), slog.LevelError),
	}
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Ollama may answer before the proxy has read the request body to
		// its end; without full duplex the server would close that body
		// under the proxy's feet and the answer would break off.
		_ = http.NewResponseController(w).EnableFullDuplex()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	return gate
}

// cliFront serves hopper's front for h's spool with the given targets and
// returns its address as OLLAMA_HOST takes it.
func cliFront(t *testing.T, h *hopper, targets ...httpfront.Target) string {
	t.Helper()
	f, err := httpfront.New(httpfront.Config{
		Spool:   h.spool,
		Targets: targets,
		Logger:  slog.New(slog.NewTextHandler(output(t), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, "the front", patience, func(ctx context.Context) error { return f.Serve(ctx, ln) })
	return ln.Addr().String()
}
