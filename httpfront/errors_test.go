package httpfront_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/spool"
)

// TestNotJSONReadsTheSameEverywhere checks that a job that is not JSON is
// refused in the same words, with the same line, column and byte offset,
// by POST /jobs and by the spool that `hopper submit` writes through.
func TestNotJSONReadsTheSameEverywhere(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	tests := []struct{ name, job, want string }{
		{"ABadByte", "{\"model\": \"m\",\n \"prompt\": x}", "the job is not valid JSON: invalid character 'x' looking for beginning of value at line 2, column 12, byte offset 26"},
		{"ABadByteAfterAMultiByteCharacter", "{\"model\": \"é\",\n \"prompt\": \"ü\" \"x\"}", "the job is not valid JSON: invalid character '\"' after object key:value pair at line 2, column 16, byte offset 32"},
		{"AJobCutShort", "{\"model\": \"m\",\n \"prompt\": \"p", "the job is not valid JSON: it ends early at line 2, column 14, byte offset 28 (was it cut off?)"},
		{"GarbageAfterTheJob", `{"model":"m","prompt":"p"} x`, "the job is not valid JSON: invalid character 'x' after top-level value at line 1, column 28, byte offset 27"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sp.Submit([]byte(tt.job), spool.SubmitOptions{})
			var bad *spool.BadInputError
			if !errors.As(err, &bad) || bad.Reason != tt.want {
				t.Errorf("spool: got %v, want %q", err, tt.want)
			}
			resp, body := call(t, "POST", f.URL+"/jobs", tt.job)
			e := decode[struct {
				Error                string
				Line, Column, Offset int
			}](t, body)
			if resp.StatusCode != http.StatusBadRequest || e.Error != tt.want {
				t.Errorf("POST /jobs: got %d %q, want 400 %q", resp.StatusCode, e.Error, tt.want)
			}
			if bad != nil && e.Error == bad.Reason && e.Line == 0 {
				t.Errorf("POST /jobs: got no position in %s", body)
			}
		})
	}
}

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
