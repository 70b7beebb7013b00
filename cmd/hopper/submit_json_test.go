package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hopper-dev/hopper/spool"
)

// TestSubmitSaysWhereAJobIsNotJSON checks that `hopper submit` refuses a
// job that is not JSON in the spool's words, which POST /jobs uses too
// (httpfront's TestNotJSONReadsTheSameEverywhere), with or without flags
// that set fields.
func TestSubmitSaysWhereAJobIsNotJSON(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // no hopper.yaml around
	sp, err := spool.Init(filepath.Join(dir, "spool"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	file := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(file, []byte("{\"model\": \"m\",\n \"prompt\": x}"), 0o640); err != nil {
		t.Fatal(err)
	}
	const want = "hopper: job refused, nothing was queued: the job is not valid JSON: " +
		"invalid character 'x' looking for beginning of value at line 2, column 12, byte offset 26\n"
	for name, args := range map[string][]string{
		"AsIs":         {"submit", file},
		"WithAFlagSet": {"submit", file, "-m", "llama3.2"},
	} {
		t.Run(name, func(t *testing.T) {
			a, _, stderr := testApp(t, nil)
			if code := execute(context.Background(), a, append([]string{"--spool", filepath.Join(dir, "spool")}, args...)); code != 1 {
				t.Errorf("exit code: got %d, want 1 (stderr %q)", code, stderr)
			}
			if stderr.String() != want {
				t.Errorf("stderr: got %q, want %q", stderr, want)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "spool", "new")); len(entries) != 0 {
				t.Errorf("new/ holds %d files, want none", len(entries))
			}
		})
	}
}
