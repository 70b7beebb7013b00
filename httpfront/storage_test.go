package httpfront_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A spool that cannot be written is a 5xx that says so, without the
// spool's paths or the system's words.
func TestStorageFailuresShowNoPaths(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	// Every write stages its file in tmp/: make tmp/ a file.
	tmp := filepath.Join(sp.Path(), "tmp")
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/jobs", "/api/chat", "/v1/chat/completions"} {
		resp, body := call(t, "POST", f.URL+path, chatJob)
		if resp.StatusCode != 500 || !strings.Contains(string(body), "cannot") {
			t.Errorf("%s: got %d %s, want 500 saying what failed", path, resp.StatusCode, body)
		}
		for _, leak := range []string{sp.Path(), "tmp/", "open ", "no such file", "not a directory"} {
			if strings.Contains(string(body), leak) {
				t.Errorf("%s: the answer %s shows %q", path, body, leak)
			}
		}
	}
	resp, body := call(t, "GET", f.URL+"/healthz", "")
	if resp.StatusCode != 503 || strings.Contains(string(body), sp.Path()) {
		t.Errorf("/healthz: got %d %q, want 503 without the spool's path", resp.StatusCode, body)
	}
}
