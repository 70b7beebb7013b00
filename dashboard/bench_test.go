package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/benchtest"
	"github.com/hopper-dev/hopper/spool"
)

// benchQueued is how many jobs the benchmarks queue: the issue asks the
// page to stay fast with 100,000.
const benchQueued = 100_000

// queue100k writes benchQueued job files straight into new/ (as rsync
// would), for four models at three priorities, and waits for the catalog
// to have read them all.
func queue100k(b *testing.B) (*spool.Spool, *spool.Catalog) {
	b.Helper()
	sp, err := spool.Init(b.TempDir(), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	benchtest.Queue(b, sp.Path(), benchQueued)
	cat, err := sp.OpenCatalog(spool.CatalogOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cat.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := cat.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	if n := cat.Counts().States[spool.StateQueued]; n != benchQueued {
		b.Fatalf("the catalog has %d queued, want %d", n, benchQueued)
	}
	return sp, cat
}

// BenchmarkSnapshot100k builds the page's data and renders the page from
// scratch (no cache) with 100,000 jobs queued, against Catalog.Counts
// (the counts the catalog keeps) as the baseline.
//
//	go test -run '^$' -bench Snapshot100k ./dashboard/
func BenchmarkSnapshot100k(b *testing.B) {
	sp, cat := queue100k(b)
	h := New(Config{Spool: sp, Catalog: cat})
	for _, c := range []struct {
		name string
		do   func()
	}{
		{"baseline=counts", func() { cat.Counts() }},
		{"build", func() { h.build() }},
		{"page", func() {
			var buf bytes.Buffer
			if err := h.page.Execute(&buf, pageData{Snapshot: h.build()}); err != nil {
				b.Fatal(err)
			}
		}},
		{"build-after-a-change", nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.do == nil {
				// A job arrives before each build, as on a live spool.
				var ds []time.Duration
				i := 0
				for b.Loop() {
					b.StopTimer()
					changed := cat.Changed()
					if _, err := sp.Submit([]byte(`{"model":"m1","prompt":"p"}`), spool.SubmitOptions{ID: fmt.Sprintf("late%06d", i)}); err != nil {
						b.Fatal(err)
					}
					i++
					<-changed
					b.StartTimer()
					start := time.Now()
					h.build()
					ds = append(ds, time.Since(start))
				}
				benchtest.Latencies(b, ds, time.Nanosecond)
				return
			}
			var ds []time.Duration
			for b.Loop() {
				start := time.Now()
				c.do()
				ds = append(ds, time.Since(start))
			}
			benchtest.Latencies(b, ds, time.Nanosecond)
		})
	}
}
