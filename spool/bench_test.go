package spool

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/benchtest"
	"github.com/hopper-dev/hopper/internal/spooltest"
)

// The benchmarks run each operation beside a baseline: the bare system
// calls the operation cannot avoid, in the same directories, so the ratio
// of the two is what hopper adds.

// benchSpool makes a spool for a benchmark in a benchtest.Dir.
func benchSpool(b *testing.B, fsync bool) *Spool {
	b.Helper()
	o := testOptions()
	o.Fsync = fsync
	s, err := Init(filepath.Join(benchtest.Dir(b), "spool"), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSubmit: Submit, against create + write + fsync + rename + fsync
// of new/.
func BenchmarkSubmit(b *testing.B) {
	data := []byte(job)
	for _, fsync := range []bool{true, false} {
		b.Run(benchtest.FsyncName(fsync)+"/hopper", func(b *testing.B) {
			s := benchSpool(b, fsync)
			benchtest.Quiesce(b)
			for b.Loop() {
				if _, err := s.Submit(data, SubmitOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(benchtest.FsyncName(fsync)+"/baseline", func(b *testing.B) {
			s := benchSpool(b, fsync)
			tmp, dst := filepath.Join(s.Path(), DirTmp), filepath.Join(s.Path(), DirNew)
			dir, err := os.Open(dst)
			if err != nil {
				b.Fatal(err)
			}
			defer dir.Close()
			i := 0
			benchtest.Quiesce(b)
			for b.Loop() {
				i++
				name := fmt.Sprintf("%012d.json", i)
				benchtest.Stage(b, filepath.Join(tmp, "."+name), filepath.Join(dst, name), data, fsync, dir)
			}
		})
	}
}

// BenchmarkClaimFinish: Claim + Update(working) + Finish(done), against the
// same renames and rewrites done bare: rename new→cur, read, rewrite,
// rewrite with fsync (file and cur/), rename cur→done, fsync done/.
func BenchmarkClaimFinish(b *testing.B) {
	response := json.RawMessage(`{"model":"llama3.2","response":"Rayleigh scattering.","done":true}`)
	stage := func(b *testing.B, s *Spool) []string {
		b.Helper()
		ids := make([]string, b.N)
		for i := range ids {
			ids[i] = fmt.Sprintf("job%09d", i)
			spooltest.Put(b, s, DirNew, ids[i]+".json", []byte(job))
		}
		return ids
	}
	for _, fsync := range []bool{true, false} {
		b.Run(benchtest.FsyncName(fsync)+"/hopper", func(b *testing.B) {
			s := benchSpool(b, fsync)
			ids := stage(b, s)
			benchtest.Quiesce(b)
			for i := 0; i < b.N; i++ {
				c, err := s.Claim(Entry{Dir: DirNew, Name: ids[i] + ".json"})
				if err != nil {
					b.Fatal(err)
				}
				now := time.Now()
				c.Record.State, c.Record.Attempts, c.Record.StartedAt = StateWorking, 1, &now
				if err := s.Update(c.Record); err != nil {
					b.Fatal(err)
				}
				c.Record.State, c.Record.Response, c.Record.FinishedAt = StateDone, response, &now
				if err := s.Finish(c.Record); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(benchtest.FsyncName(fsync)+"/baseline", func(b *testing.B) {
			s := benchSpool(b, fsync)
			ids := stage(b, s)
			p := func(dir, name string) string { return filepath.Join(s.Path(), dir, name) }
			cur, err := os.Open(p(DirCur, ""))
			if err != nil {
				b.Fatal(err)
			}
			defer cur.Close()
			done, err := os.Open(p(DirDone, ""))
			if err != nil {
				b.Fatal(err)
			}
			defer done.Close()
			record := []byte(`{"id":"x","state":"done","job":` + job + `,"response":` + string(response) + `}` + "\n")
			benchtest.Quiesce(b)
			for i := 0; i < b.N; i++ {
				name := ids[i] + ".json"
				benchtest.Move(b, p(DirNew, name), p(DirCur, name), false, nil)
				if _, err := os.ReadFile(p(DirCur, name)); err != nil {
					b.Fatal(err)
				}
				benchtest.Stage(b, p(DirTmp, "."+name), p(DirCur, name), record, false, cur)
				benchtest.Stage(b, p(DirTmp, "."+name), p(DirCur, name), record, fsync, cur)
				benchtest.Move(b, p(DirCur, name), p(DirDone, name), fsync, done)
			}
		})
	}
}

// BenchmarkIndexPick: one scheduling decision (TopPriority, Oldest,
// OldestFor) and the index upkeep after a claim and an arrival (Remove, Put),
// with 10 and with 100,000 queued entries. O(log n) shows as a small ratio.
func BenchmarkIndexPick(b *testing.B) {
	models := []string{"llama3.2", "qwen3:8b", "gemma3", "mistral:latest", "phi4"}
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprintf("queued=%d", n), func(b *testing.B) {
			q := NewQueue(latest)
			for i := range n {
				q.Put(Entry{Dir: DirNew, Name: fmt.Sprintf("%09d.json", i), Model: models[i%len(models)],
					Priority: i % 3, Arrived: t0.Add(time.Duration(i) * time.Millisecond)})
			}
			next := n
			for b.Loop() {
				p, ok := q.TopPriority()
				if !ok {
					b.Fatal("empty")
				}
				e, ok := q.Oldest(p)
				if !ok {
					b.Fatal("no oldest")
				}
				if _, ok := q.OldestFor(p, "llama3.2:latest"); !ok && n > 100 {
					b.Fatal("no oldest for llama3.2")
				}
				q.Remove(e.Dir, e.Name)
				e.Arrived = t0.Add(time.Duration(next) * time.Millisecond)
				next++
				q.Put(e)
			}
			if q.Len() != n {
				b.Fatalf("got %d entries, want %d", q.Len(), n)
			}
		})
	}
}

// BenchmarkParseJob is the check every submit and claim makes.
func BenchmarkParseJob(b *testing.B) {
	data := []byte(`{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"options":{"temperature":0.1},"priority":10,"meta":{"ticket":42}}`)
	for b.Loop() {
		if _, err := ParseJob(data, 0); err != nil {
			b.Fatal(err)
		}
	}
}
