package spool

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 23, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func latest(model string) string { return strings.TrimSuffix(model, ":latest") }

// drain picks from q as a FIFO scheduler would until it is empty.
func drain(q *Queue) []string {
	var out []string
	for {
		p, ok := q.TopPriority()
		if !ok {
			return out
		}
		e, ok := q.Oldest(p)
		if !ok {
			return append(out, fmt.Sprintf("no oldest at priority %d", p))
		}
		out = append(out, e.Dir+"/"+e.Name)
		q.Remove(e.Dir, e.Name)
	}
}

func TestQueueOrder(t *testing.T) {
	tests := []struct {
		name    string
		entries []Entry
		want    []string
	}{
		{
			name: "higher priority goes first whatever its age",
			entries: []Entry{
				{Dir: DirNew, Name: "low.json", Priority: 0, Arrived: at(0)},
				{Dir: DirNew, Name: "high.json", Priority: 10, Arrived: at(100)},
				{Dir: DirNew, Name: "neg.json", Priority: -5, Arrived: at(-100)},
				{Dir: DirNew, Name: "mid.json", Priority: 5, Arrived: at(50)},
			},
			want: []string{"new/high.json", "new/mid.json", "new/low.json", "new/neg.json"},
		},
		{
			name: "within a priority the earliest arrival goes first",
			entries: []Entry{
				{Dir: DirNew, Name: "a.json", Arrived: at(3)},
				{Dir: DirNew, Name: "b.json", Arrived: at(1)},
				{Dir: DirDeferred, Name: "c.json", Arrived: at(2)},
			},
			want: []string{"new/b.json", "deferred/c.json", "new/a.json"},
		},
		{
			name: "the name breaks a tie in arrival, then the directory",
			entries: []Entry{
				{Dir: DirNew, Name: "c.json", Arrived: at(1)},
				{Dir: DirNew, Name: "a.json", Arrived: at(1)},
				{Dir: DirNew, Name: "b.json", Arrived: at(1)},
				{Dir: DirDeferred, Name: "b.json", Arrived: at(1)},
				{Dir: DirNew, Name: "0.json", Arrived: at(2)},
			},
			want: []string{"new/a.json", "deferred/b.json", "new/b.json", "new/c.json", "new/0.json"},
		},
		{
			name: "putting an entry again replaces it",
			entries: []Entry{
				{Dir: DirNew, Name: "a.json", Priority: 9, Arrived: at(1)},
				{Dir: DirNew, Name: "b.json", Priority: 1, Arrived: at(2)},
				{Dir: DirNew, Name: "a.json", Priority: 0, Arrived: at(3)},
			},
			want: []string{"new/b.json", "new/a.json"},
		},
		{
			name: "bad and waiting entries are not picked",
			entries: []Entry{
				{Dir: DirNew, Name: "bad.json", Priority: 99, Bad: true},
				{Dir: DirDeferred, Name: "later.json", Priority: 99, NotBefore: at(60)},
				{Dir: DirNew, Name: "ok.json"},
			},
			want: []string{"new/ok.json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(nil)
			for _, e := range tt.entries {
				q.Put(e)
			}
			if got := drain(q); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestQueueOldestFor(t *testing.T) {
	q := NewQueue(latest)
	q.Put(Entry{Dir: DirNew, Name: "m1.json", Model: "m", Arrived: at(2)})
	q.Put(Entry{Dir: DirNew, Name: "m2.json", Model: "m:latest", Arrived: at(1)})
	q.Put(Entry{Dir: DirNew, Name: "o.json", Model: "other", Arrived: at(0)})
	q.Put(Entry{Dir: DirNew, Name: "m-hi.json", Model: "m", Priority: 5, Arrived: at(9)})
	tests := []struct {
		prio   int
		model  string
		want   string
		wantOK bool
	}{
		{0, "m", "m2.json", true},
		{0, "m:latest", "m2.json", true},
		{0, "other:latest", "o.json", true},
		{0, "none", "", false},
		{5, "m:latest", "m-hi.json", true},
		{5, "other", "", false},
		{7, "m", "", false},
	}
	for _, tt := range tests {
		e, ok := q.OldestFor(tt.prio, tt.model)
		if ok != tt.wantOK || e.Name != tt.want {
			t.Errorf("OldestFor(%d, %q): got %q, %v, want %q, %v", tt.prio, tt.model, e.Name, ok, tt.want, tt.wantOK)
		}
	}
	if e, _ := q.Oldest(0); e.Name != "o.json" {
		t.Errorf("Oldest(0): got %q, want o.json", e.Name)
	}
	q.Remove(DirNew, "m2.json")
	if e, _ := q.OldestFor(0, "m"); e.Name != "m1.json" {
		t.Errorf("after removing m2, OldestFor(0, m): got %q, want m1.json", e.Name)
	}
	q.Remove(DirNew, "m1.json")
	if _, ok := q.OldestFor(0, "m"); ok {
		t.Error("OldestFor found a model with no entries left")
	}
	if p, _ := q.TopPriority(); p != 5 {
		t.Errorf("got top priority %d, want 5", p)
	}
}

func TestQueueBad(t *testing.T) {
	q := NewQueue(nil)
	if _, ok := q.Bad(); ok {
		t.Fatal("an empty queue has a bad entry")
	}
	q.Put(Entry{Dir: DirNew, Name: "x.json", Bad: true})
	q.Put(Entry{Dir: DirNew, Name: "y.json", Bad: true})
	if _, ok := q.TopPriority(); ok {
		t.Error("bad entries are claimable")
	}
	if e, ok := q.Bad(); !ok || e.Name != "x.json" || !e.Bad {
		t.Errorf("got %+v, %v, want x.json", e, ok)
	}
	q.Remove(DirNew, "x.json")
	if e, _ := q.Bad(); e.Name != "y.json" {
		t.Errorf("got %q, want y.json", e.Name)
	}
	// A bad file rewritten as a good one replaces its entry.
	q.Put(Entry{Dir: DirNew, Name: "y.json"})
	if _, ok := q.Bad(); ok {
		t.Error("the fixed file is still bad")
	}
	if e, ok := q.Oldest(0); !ok || e.Name != "y.json" {
		t.Errorf("got %+v, %v, want y.json", e, ok)
	}
	if q.Len() != 1 || !q.Has(DirNew, "y.json") {
		t.Errorf("got len %d, want 1", q.Len())
	}
}

func TestQueuePromote(t *testing.T) {
	q := NewQueue(nil)
	q.Put(Entry{Dir: DirDeferred, Name: "b.json", NotBefore: at(20)})
	q.Put(Entry{Dir: DirDeferred, Name: "a.json", NotBefore: at(10)})
	drainSignal(q)
	if _, ok := q.TopPriority(); ok {
		t.Fatal("a waiting entry is claimable")
	}
	if next := q.Promote(at(5)); !next.Equal(at(10)) {
		t.Errorf("got next %v, want %v", next, at(10))
	}
	if _, ok := q.TopPriority(); ok {
		t.Fatal("promoted before its time")
	}
	if next := q.Promote(at(10)); !next.Equal(at(20)) {
		t.Errorf("got next %v, want %v", next, at(20))
	}
	select {
	case <-q.Changed():
	default:
		t.Error("Promote did not signal Changed")
	}
	if e, ok := q.Oldest(0); !ok || e.Name != "a.json" {
		t.Errorf("got %+v, %v, want a.json", e, ok)
	}
	q.Remove(DirDeferred, "b.json") // removing a waiting entry
	if next := q.Promote(at(30)); !next.IsZero() {
		t.Errorf("got next %v, want none", next)
	}
	if q.Len() != 1 {
		t.Errorf("got len %d, want 1", q.Len())
	}
	q.Reset()
	if q.Len() != 0 || q.Has(DirDeferred, "a.json") {
		t.Error("Reset left entries")
	}
	if _, ok := q.TopPriority(); ok {
		t.Error("Reset left a priority")
	}
}

func drainSignal(q *Queue) {
	select {
	case <-q.Changed():
	default:
	}
}

// TestQueueAgainstReference applies thousands of random operations to a
// Queue and to a plain map, and checks after each that every answer the
// scheduler asks for is the one a sort of the map gives.
func TestQueueAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	models := []string{"a", "a:latest", "b", "c:latest"}
	type ref struct {
		e     Entry
		ready bool
		seq   int // insertion order, for Bad
	}
	q := NewQueue(latest)
	refs := map[string]*ref{}
	seq := 0
	now := t0
	keys := func() []string {
		var out []string
		for k := range refs {
			out = append(out, k)
		}
		return out
	}
	for op := range 6000 {
		switch n := rng.IntN(100); {
		case n < 45: // put, often replacing
			e := Entry{
				Dir:      []string{DirNew, DirDeferred}[rng.IntN(2)],
				Name:     fmt.Sprintf("%03d.json", rng.IntN(400)),
				Model:    models[rng.IntN(len(models))],
				Priority: rng.IntN(4) - 1,
				Arrived:  at(rng.IntN(40)),
			}
			switch rng.IntN(10) {
			case 0:
				e.Bad = true
			case 1, 2:
				e.NotBefore = now.Add(time.Duration(rng.IntN(60)-10) * time.Second)
			}
			q.Put(e)
			seq++
			refs[e.Dir+"/"+e.Name] = &ref{e: e, ready: !e.Bad && e.NotBefore.IsZero(), seq: seq}
		case n < 85: // remove, mostly from the middle
			if k := keys(); len(k) > 0 {
				key := k[rng.IntN(len(k))]
				dir, name, _ := strings.Cut(key, "/")
				q.Remove(dir, name)
				delete(refs, key)
			} else {
				q.Remove(DirNew, "absent.json")
			}
		default: // time passes
			now = now.Add(time.Duration(rng.IntN(20)) * time.Second)
			got := q.Promote(now)
			var want time.Time
			for _, r := range refs {
				if !r.e.Bad && !r.ready {
					if !r.e.NotBefore.After(now) {
						r.ready = true
					} else if want.IsZero() || r.e.NotBefore.Before(want) {
						want = r.e.NotBefore
					}
				}
			}
			if !got.Equal(want) {
				t.Fatalf("op %d: Promote: got next %v, want %v", op, got, want)
			}
		}

		// Check every answer against the reference.
		if q.Len() != len(refs) {
			t.Fatalf("op %d: got len %d, want %d", op, q.Len(), len(refs))
		}
		top, hasTop := 0, false
		oldest := map[int]*Entry{}
		oldestFor := map[string]*Entry{}
		var firstBad *ref
		for _, r := range refs {
			if r.e.Bad {
				if firstBad == nil || r.seq < firstBad.seq {
					firstBad = r
				}
				continue
			}
			if !r.ready {
				continue
			}
			e := &r.e
			if !hasTop || e.Priority > top {
				top, hasTop = e.Priority, true
			}
			if o := oldest[e.Priority]; o == nil || e.before(o) {
				oldest[e.Priority] = e
			}
			k := fmt.Sprint(e.Priority, latest(e.Model))
			if o := oldestFor[k]; o == nil || e.before(o) {
				oldestFor[k] = e
			}
		}
		if p, ok := q.TopPriority(); ok != hasTop || p != top {
			t.Fatalf("op %d: TopPriority: got %d, %v, want %d, %v", op, p, ok, top, hasTop)
		}
		for p := -1; p <= 2; p++ {
			got, ok := q.Oldest(p)
			want := oldest[p]
			if ok != (want != nil) || (ok && (got.Dir != want.Dir || got.Name != want.Name)) {
				t.Fatalf("op %d: Oldest(%d): got %s/%s, %v, want %+v", op, p, got.Dir, got.Name, ok, want)
			}
			for _, m := range models {
				got, ok := q.OldestFor(p, m)
				want := oldestFor[fmt.Sprint(p, latest(m))]
				if ok != (want != nil) || (ok && (got.Dir != want.Dir || got.Name != want.Name)) {
					t.Fatalf("op %d: OldestFor(%d, %s): got %s/%s, %v, want %+v", op, p, m, got.Dir, got.Name, ok, want)
				}
			}
		}
		if got, ok := q.Bad(); ok != (firstBad != nil) || (ok && got.Dir+"/"+got.Name != firstBad.e.Dir+"/"+firstBad.e.Name) {
			t.Fatalf("op %d: Bad: got %+v, %v, want %+v", op, got, ok, firstBad)
		}
	}
}
