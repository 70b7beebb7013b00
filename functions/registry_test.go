package functions

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
)

// syncBuffer is a log destination safe for the watcher's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits, reload by reload, until cond holds.
func waitFor(t *testing.T, r *Registry, what string, cond func() bool) {
	t.Helper()
	if !runtest.Await(10*time.Second, r.Reloaded, cond) {
		t.Fatalf("timed out waiting until %s (last reload error: %v)", what, r.Err())
	}
}

func prompt(r *Registry, name string) string {
	f, ok := r.Get(name)
	if !ok {
		return ""
	}
	return f.Prompt
}

// startWatch runs Watch until the test ends and returns once it watches.
func startWatch(t *testing.T, r *Registry) {
	t.Helper()
	runtest.Start(t, "Watch", 10*time.Second, r.Watch)
	// Watch reloads once it watches; if it returned early instead, Start's
	// cleanup says why.
	runtest.Receive(t, r.Reloaded(), 10*time.Second, "Watch to start")
}

func TestRegistryHotReloadKeepsLastGoodSetOnABrokenEdit(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "greet.yaml", "model: m\nprompt: v1\n")
	var logs syncBuffer
	r, err := NewRegistry(nil, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	startWatch(t, r)

	writeFile(t, dir, "greet.yaml", "model: m\nprompt: v2\n")
	waitFor(t, r, "the edit is loaded", func() bool { return prompt(r, "greet") == "v2" })

	writeFile(t, dir, "other.yaml", "model: m\nprompt: other\n")
	waitFor(t, r, "a new file is loaded", func() bool { return prompt(r, "other") == "other" })

	path := writeFile(t, dir, "greet.yaml", "model: m\nprompt: \"{{.broken\"\n")
	waitFor(t, r, "the broken edit is refused", func() bool { return r.Err() != nil })
	if got := prompt(r, "greet"); got != "v2" {
		t.Errorf("after a broken edit greet's prompt is %q, want the last good v2", got)
	}
	if got := prompt(r, "other"); got != "other" {
		t.Errorf("after a broken edit other's prompt is %q, want other", got)
	}
	if msg := r.Err().Error(); !strings.Contains(msg, path+":2: prompt") {
		t.Errorf("Err() = %q, want it to name %s:2 and the field", msg, path)
	}
	if !strings.Contains(logs.String(), "keeping the last good set") {
		t.Errorf("the broken edit was not logged; logs:\n%s", logs.String())
	}

	writeFile(t, dir, "greet.yaml", "model: m\nprompt: v3\n")
	waitFor(t, r, "the fix is loaded", func() bool { return r.Err() == nil && prompt(r, "greet") == "v3" })

	if err := os.Remove(filepath.Join(dir, "other.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, "a removed file is dropped", func() bool { _, ok := r.Get("other"); return !ok })
}

func TestRegistryReloadReturnsWhyAndKeepsTheSet(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", minimal)
	r, err := NewRegistry(map[string]any{"b": map[string]any{"model": "m", "prompt": "hi"}}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "a.yaml", "model: m\n")
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "needs a prompt or messages") {
		t.Errorf("Reload() = %v, want the problem", err)
	}
	if _, ok := r.Get("a"); !ok {
		t.Error("a is gone after a failed reload")
	}
	if got := r.Current().Names(); strings.Join(got, ",") != "a,b" {
		t.Errorf("Current().Names() = %v, want a, b", got)
	}
}

func TestNewRegistryFailsOnBrokenFunctions(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", "prompt: hi\n")
	if _, err := NewRegistry(nil, dir, nil); err == nil {
		t.Fatal("NewRegistry succeeded with a function that has no model")
	}
}

func TestWatchWithoutDirectoryWaitsForCancel(t *testing.T) {
	r, err := NewRegistry(nil, filepath.Join(t.TempDir(), "missing"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Watch returned before cancel: %v", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestRegistryIsSafeForConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", minimal)
	r, err := NewRegistry(nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				if f, ok := r.Get("a"); ok {
					if _, _, err := f.Expand(nil); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	for range 10 {
		if err := r.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
