package batch

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// tspool is a spool and its batches: spool's verbs on it, the batches' on
// its b.
type tspool struct {
	*spool.Spool
	b *Store
}

// newSpool initializes a spool under t.TempDir(), without fsync unless an
// edit asks for it.
func newSpool(t testing.TB, edit ...func(*spool.Options)) *tspool {
	t.Helper()
	o := spool.DefaultOptions()
	o.Fsync = false
	for _, e := range edit {
		e(&o)
	}
	s, err := spool.Init(filepath.Join(t.TempDir(), "spool"), o)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &tspool{Spool: s, b: New(s)}
}

// put writes dir/name directly, as a writer that ignores the maildir rule
// (or a crash) would leave it.
func put(t testing.TB, s *tspool, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Path(), dir, name), data, 0o640); err != nil {
		t.Fatal(err)
	}
}

// read returns the bytes of dir/name.
func read(t testing.TB, s *tspool, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.Path(), dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readRec parses dir/name as a record.
func readRec(t testing.TB, s *tspool, dir, name string) *spool.Record {
	t.Helper()
	r, err := spool.ParseRecord(read(t, s, dir, name))
	if err != nil {
		t.Fatalf("%s/%s: %v", dir, name, err)
	}
	return r
}

// age sets dir/name's modification time d in the past.
func age(t testing.TB, s *tspool, dir, name string, d time.Duration) {
	t.Helper()
	when := time.Now().Add(-d)
	if err := os.Chtimes(filepath.Join(s.Path(), dir, name), when, when); err != nil {
		t.Fatal(err)
	}
}

// claim claims dir/name as the runner would.
func claim(t testing.TB, s *tspool, dir, name string) *spool.Claimed {
	t.Helper()
	c, err := s.Claim(spool.Entry{Dir: dir, Name: name})
	if err != nil {
		t.Fatalf("Claim %s/%s: %v", dir, name, err)
	}
	return c
}

// finish ends a claimed job in state st.
func finish(t testing.TB, s *tspool, r *spool.Record, st spool.State, e *spool.JobError) {
	t.Helper()
	now := time.Now()
	r.State, r.Error, r.FinishedAt = st, e, &now
	if err := s.Finish(r); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

// names lists dir's entries, sorted.
func names(t testing.TB, s *tspool, dir string) []string {
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

// wantNames checks dir's entries, sorted.
func wantNames(t testing.TB, s *tspool, dir string, want ...string) {
	t.Helper()
	if got := names(t, s, dir); !slices.Equal(got, want) {
		t.Errorf("%s/ holds %q, want %q", dir, got, want)
	}
}

// jsonEqual reports whether a and b are the same JSON, spacing aside.
func jsonEqual(a, b []byte) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return false
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// fsyncName names a benchmark's fsync setting, as spool's benchmarks do.
func fsyncName(on bool) string {
	if on {
		return "fsync=on"
	}
	return "fsync=off"
}

// lineCustom is the custom_id the job of queued line id carries, or "".
func lineCustom(t testing.TB, s *tspool, id string) string {
	t.Helper()
	c, _ := jobCustomID(read(t, s, spool.DirNew, id+".json"))
	return c
}
