package spool

// Review tests for the Catalog: each one demonstrates a problem found in
// review and fails until it is fixed.

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A job the start-up scan read just before it went away (pruned, or
// claimed under a unique name) comes back as a ghost: the event's refresh
// finds nothing to forget, then the scan's batch adds the stale summary.
// Only the next reconcile (Rescan, 1m by default) removes it; until then it
// is counted, listed and placed in the queue ahead of real jobs.
func TestCatalogScanNeverBringsBackAJobRemovedMeanwhile(t *testing.T) {
	s := newSpool(t)
	ghost := submit(t, s, `{"model":"a","prompt":"about to go"}`)
	real := submit(t, s, `{"model":"a","prompt":"stays"}`)
	c := openCatalog(t, s)

	// The interleaving of scan() with the event loop, step by step, as
	// if the start-up scan were still running:
	c.mu.Lock()
	c.touched = map[string]bool{}
	c.mu.Unlock()
	r, err := s.recordAt(DirNew, ghost+".json") // 1. scan reads new/ghost.json
	if err != nil {
		t.Fatal(err)
	}
	stale := summarize(r, ghost, DirNew)
	if err := os.Remove(filepath.Join(s.Path(), DirNew, ghost+".json")); err != nil { // 2. it goes
		t.Fatal(err)
	}
	// 3. its Remove event is handled: there is nothing to forget yet in
	// the real race; here the job is forgotten (the same end state).
	eventually(t, func() bool { _, ok := c.Get(ghost); return !ok }, func() string { return "the removal's event handled" })
	c.putAll([]*Summary{stale}) // 4. the scan flushes its batch
	c.mu.Lock()
	c.touched = nil // the scan ends
	c.mu.Unlock()
	time.Sleep(300 * time.Millisecond) // nothing else corrects it before Rescan

	if _, ok := c.Get(ghost); ok {
		pos, _ := c.Position(real)
		t.Errorf("job %s was removed during the scan but the catalog still lists it (queued count %d, the real job is at position %d, want 0)",
			ghost, c.Counts().States[StateQueued], pos)
	}
}

// The same, with a real scan racing real removals.
func TestCatalogScanRacingRemovalsLeavesNoGhosts(t *testing.T) {
	s := newSpool(t)
	const n = 3000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = submit(t, s, `{"model":"a","prompt":"x"}`)
	}
	listed, err := s.names(DirNew)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OpenCatalog(CatalogOptions{Rescan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, name := range listed { // the scan's order, right behind it
			os.Remove(filepath.Join(s.Path(), DirNew, name))
			if i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	wg.Wait()
	<-c.Ready()
	// Let every event be handled.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && c.Counts().States[StateQueued] != 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if q := c.Counts().States[StateQueued]; q != 0 {
		t.Errorf("every job was removed, but the catalog still lists %d of them as queued after the events settled", q)
	}
}

// A record whose "id" is not its file name (mv done/a.json done/b.json by
// hand) is stored under its id while put looks it up by the file name:
// every refresh of b (each event, and every reconcile, since b is never
// found in the catalog) inserts another live copy into order. Page then
// lists the job over and over, Total and Counts grow, memory grows.
func TestCatalogNamesARecordByItsFile(t *testing.T) {
	s := newSpool(t)
	id := submit(t, s, `{"model":"a","prompt":"x"}`)
	cl := claim(t, s, DirNew, id+".json")
	finish(t, s, cl.Record, StateDone, nil)
	if err := os.Rename(filepath.Join(s.Path(), DirDone, id+".json"), filepath.Join(s.Path(), DirDone, "renamed.json")); err != nil {
		t.Fatal(err)
	}
	c := openCatalog(t, s)
	c.Refresh("renamed")
	c.Refresh("renamed")
	c.Refresh("renamed")
	p, err := c.Page(CatalogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range p.Jobs {
		got = append(got, j.ID)
	}
	if p.Total != 1 || len(p.Jobs) != 1 || c.Counts().States[StateDone] != 1 {
		t.Errorf("one record in done/, after 3 refreshes: page total %d, jobs %v, done count %d; want 1 job",
			p.Total, got, c.Counts().States[StateDone])
	}
}

// A job whose SubmittedAt changes between two pages (hold/release and
// retry rename it, which sets the ctime new/ and hold/ files are dated by;
// a claimed job is dated by cur/'s ctime until its first Update) must not
// move the cursor: it holds the place (time~id), not the job.
func TestCatalogCursorHoldsWhenItsJobMoves(t *testing.T) {
	s := newSpool(t)
	for range 4 {
		submit(t, s, `{"model":"a","prompt":"x"}`)
		time.Sleep(2 * time.Millisecond)
	}
	c := openCatalog(t, s)
	p1, err := c.Page(CatalogQuery{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, j := range p1.Jobs {
		seen[j.ID] = true
	}
	time.Sleep(2 * time.Millisecond)
	last := p1.Jobs[len(p1.Jobs)-1].ID
	if err := s.Hold(last); err != nil { // someone holds the cursor's job
		t.Fatal(err)
	}
	c.Refresh(last)
	p2, err := c.Page(CatalogQuery{Limit: 2, After: p1.Next})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range p2.Jobs {
		if seen[j.ID] {
			t.Errorf("page 2 repeats %s from page 1 (page 1 %v, cursor %s)", j.ID, p1.Jobs, p1.Next)
		}
	}
}

// After an overflow, reconcile re-reads only jobs whose directory differs
// from the catalog's. A change inside one directory whose event was lost
// (cur/ID.json rewritten loading→working, attempts, target; a new/ file
// written in place by cat >) is never corrected until the job moves.
func TestCatalogOverflowRereadsChangesWithinADirectory(t *testing.T) {
	s := newSpool(t)
	id := submit(t, s, `{"model":"a","prompt":"x","priority":1}`)
	c := openCatalog(t, s)
	// Stand-in for a lost Write event: the catalog holds an older reading.
	j, _ := c.Get(id)
	old := j
	old.Priority = 7
	c.put(id, &old)
	c.reconcile(true) // what an overflow triggers
	time.Sleep(300 * time.Millisecond)
	if j, _ := c.Get(id); j.Priority != 1 {
		t.Errorf("after a reconcile the catalog still says priority %d, the file says 1", j.Priority)
	}
}
