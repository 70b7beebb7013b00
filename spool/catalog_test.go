package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/spooltest"
)

func openCatalog(t testing.TB, s *Spool) *Catalog {
	t.Helper()
	c, err := s.OpenCatalog(CatalogOptions{})
	if err != nil {
		t.Fatalf("OpenCatalog: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case <-c.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("catalog never became ready")
	}
	return c
}

// eventually waits until cond holds, failing with what() after a while.
func eventually(t testing.TB, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func catalogState(c *Catalog, id string) State {
	j, ok := c.Get(id)
	if !ok {
		return ""
	}
	return j.State
}

func TestCatalogFollowsAJobThroughItsStates(t *testing.T) {
	s := newSpool(t)
	before := submit(t, s, `{"model":"a","prompt":"there before the catalog"}`)
	c := openCatalog(t, s)
	if got := catalogState(c, before); got != StateQueued {
		t.Fatalf("start-up scan: %s is %q, want queued", before, got)
	}
	id := submit(t, s, `{"model":"b","prompt":"x","priority":3}`)
	eventually(t, func() bool { return catalogState(c, id) == StateQueued }, func() string { return "new job listed as queued" })
	cl := claim(t, s, DirNew, id+".json")
	eventually(t, func() bool { return catalogState(c, id) == StateWorking || catalogState(c, id) == StateLoading },
		func() string { return fmt.Sprintf("claimed job listed as running, is %q", catalogState(c, id)) })
	finish(t, s, cl.Record, StateFailed, &JobError{Kind: KindTarget, Message: "boom"})
	eventually(t, func() bool { return catalogState(c, id) == StateFailed }, func() string { return "failed job listed as failed" })
	j, _ := c.Get(id)
	if j.Error == nil || j.Error.Message != "boom" || j.Model != "b" || j.Priority != 3 || j.FinishedAt == nil {
		t.Errorf("summary of the failed job = %+v (error %+v)", j, j.Error)
	}
	if err := os.Remove(filepath.Join(s.Path(), DirFailed, id+".json")); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { _, ok := c.Get(id); return !ok }, func() string { return "removed job forgotten" })
	counts := c.Counts()
	if counts.States[StateQueued] != 1 || counts.Queued["a"][0] != 1 || len(counts.Queued) != 1 ||
		counts.States[StateFailed] != 0 || counts.States[StateWorking] != 0 || counts.States[StateLoading] != 0 {
		t.Errorf("counts kept as jobs moved = %+v, want one queued job for a", counts)
	}
}

func TestCatalogPagesNewestFirstWithACursor(t *testing.T) {
	s := newSpool(t)
	var ids []string
	for i := range 25 {
		ids = append(ids, submit(t, s, fmt.Sprintf(`{"model":"m%d","prompt":"%d"}`, i%2, i)))
	}
	c := openCatalog(t, s)
	eventually(t, func() bool { return c.Counts().States[StateQueued] == 25 }, func() string { return "25 queued" })
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := c.Page(CatalogQuery{Limit: 10, After: after})
		if err != nil {
			t.Fatal(err)
		}
		if p.Total != 25 {
			t.Fatalf("total = %d, want 25", p.Total)
		}
		for _, j := range p.Jobs {
			got = append(got, j.ID)
		}
		if p.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging never ends")
		}
		after = p.Next
	}
	if len(got) != 25 {
		t.Fatalf("paged %d jobs, want 25: %v", len(got), got)
	}
	for i, id := range got {
		if want := ids[len(ids)-1-i]; id != want {
			t.Fatalf("job %d is %s, want %s (newest first)", i, id, want)
		}
	}
	p, _ := c.Page(CatalogQuery{Model: "m1", Limit: 100})
	if p.Total != 12 || len(p.Jobs) != 12 {
		t.Errorf("model filter: total %d, %d jobs; want 12", p.Total, len(p.Jobs))
	}
	if _, err := c.Page(CatalogQuery{After: "no-such-job"}); !errors.Is(err, ErrCursor) {
		t.Errorf("unknown cursor: err = %v, want ErrCursor", err)
	}
}

func TestCatalogPositionFollowsPriorityThenArrival(t *testing.T) {
	s := newSpool(t)
	low := submit(t, s, `{"model":"m","prompt":"low"}`)
	time.Sleep(2 * time.Millisecond)
	low2 := submit(t, s, `{"model":"m","prompt":"low, later"}`)
	time.Sleep(2 * time.Millisecond)
	high := submit(t, s, `{"model":"m","prompt":"high","priority":5}`)
	c := openCatalog(t, s)
	for id, want := range map[string]int{high: 0, low: 1, low2: 2} {
		if got, ok := c.Position(id); !ok || got != want {
			t.Errorf("Position(%s) = %d, %v; want %d", id, got, ok, want)
		}
	}
	if head := c.Head(2); len(head) != 2 || head[0].ID != high || head[1].ID != low {
		t.Errorf("Head(2) = %v, want %s then %s", head, high, low)
	}
	cl := claim(t, s, DirNew, high+".json")
	c.Refresh(high)
	if _, ok := c.Position(high); ok {
		t.Error("a running job has a queue position")
	}
	if got, _ := c.Position(low); got != 0 {
		t.Errorf("after the high job started, low is at %d, want 0", got)
	}
	finish(t, s, cl.Record, StateDone, nil)
	c.Refresh(high)
	if _, ok := c.EstimatedStart(1, time.Now()); !ok {
		t.Error("no estimate although a job just finished")
	}
}

// The catalog costs a listing and a read per job at start, then nothing
// per question: BenchmarkCatalogPage pages 100,000 queued jobs against
// the baseline of listing new/ once.
func BenchmarkCatalogPage(b *testing.B) {
	s := newSpool(b)
	const n = 100_000
	for i := range n {
		spooltest.Put(b, s, DirNew, fmt.Sprintf("job%06d.json", i), []byte(`{"model":"m","prompt":"p"}`))
	}
	c := openCatalog(b, s)
	b.Run("baseline=ReadDir-new", func(b *testing.B) {
		for b.Loop() {
			if _, err := os.ReadDir(filepath.Join(s.Path(), DirNew)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Page-100", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Page(CatalogQuery{States: []State{StateQueued}, Limit: 100}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Position", func(b *testing.B) {
		for b.Loop() {
			c.Position("job050000")
		}
	})
}
