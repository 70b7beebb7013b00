package spooltest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Spool is what the helpers need of a spool: where it is.
type Spool interface{ Path() string }

// Put writes dir/name directly, as a writer that ignores the maildir rule
// (or a crash) would leave it.
func Put(t testing.TB, s Spool, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Path(), dir, name), data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// Read returns the bytes of dir/name.
func Read(t testing.TB, s Spool, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.Path(), dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ReadAs parses dir/name with parse.
func ReadAs[T any](t testing.TB, s Spool, dir, name string, parse func([]byte) (T, error)) T {
	t.Helper()
	v, err := parse(Read(t, s, dir, name))
	if err != nil {
		t.Fatalf("%s/%s: %v", dir, name, err)
	}
	return v
}

// Age sets dir/name's modification time d in the past.
func Age(t testing.TB, s Spool, dir, name string, d time.Duration) {
	t.Helper()
	when := time.Now().Add(-d)
	if err := os.Chtimes(filepath.Join(s.Path(), dir, name), when, when); err != nil {
		t.Fatal(err)
	}
}

// Names lists dir's entries, sorted.
func Names(t testing.TB, s Spool, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.Path(), dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// WantNames checks dir's entries, sorted.
func WantNames(t testing.TB, s Spool, dir string, want ...string) {
	t.Helper()
	if got := Names(t, s, dir); !slices.Equal(got, want) {
		t.Errorf("%s/ holds %q, want %q", dir, got, want)
	}
}

// JSONEqual reports whether a and b are the same JSON, spacing aside.
func JSONEqual(a, b []byte) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return false
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}

// Deref is *p, or "<nil>" for a nil p, for messages.
func Deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}
