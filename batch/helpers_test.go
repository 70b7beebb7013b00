package batch

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/spooltest"
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

// readRec parses dir/name as a record.
func readRec(t testing.TB, s *tspool, dir, name string) *spool.Record {
	t.Helper()
	return spooltest.ReadAs(t, s, dir, name, spool.ParseRecord)
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

// lineCustom is the custom_id the job of queued line id carries, or "".
func lineCustom(t testing.TB, s *tspool, id string) string {
	t.Helper()
	c, _ := jobCustomID(spooltest.Read(t, s, spool.DirNew, id+".json"))
	return c
}
