package spool

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The benchmarks run each operation beside a baseline: the bare system
// calls the operation cannot avoid, in the same directories, so the ratio
// of the two is what hopper adds.

// benchSpool makes a spool for a benchmark under $HOPPER_BENCH_DIR if set
// (to measure on a given filesystem, e.g. tmpfs to see the CPU cost alone),
// else under b.TempDir().
func benchSpool(b *testing.B, fsync bool) *Spool {
	b.Helper()
	base := os.Getenv("HOPPER_BENCH_DIR")
	if base == "" {
		base = b.TempDir()
	} else {
		d, err := os.MkdirTemp(base, "hopper-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		base = d
	}
	o := testOptions()
	o.Fsync = fsync
	s, err := Init(filepath.Join(base, "spool"), o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// quiesce flushes the page cache so writeback left by staging or by the
// previous benchmark does not land in this one's time.
func quiesce(b *testing.B) {
	syscall.Sync()
	b.ResetTimer()
}

func fsyncName(on bool) string {
	if on {
		return "fsync=on"
	}
	return "fsync=off"
}

// BenchmarkSubmit: Submit, against create + write + fsync + rename + fsync
// of new/.
func BenchmarkSubmit(b *testing.B) {
	data := []byte(job)
	for _, fsync := range []bool{true, false} {
		b.Run(fsyncName(fsync)+"/hopper", func(b *testing.B) {
			s := benchSpool(b, fsync)
			quiesce(b)
			for b.Loop() {
				if _, err := s.Submit(data, SubmitOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fsyncName(fsync)+"/baseline", func(b *testing.B) {
			s := benchSpool(b, fsync)
			tmp, dst := filepath.Join(s.Path(), DirTmp), filepath.Join(s.Path(), DirNew)
			dir, err := os.Open(dst)
			if err != nil {
				b.Fatal(err)
			}
			defer dir.Close()
			i := 0
			quiesce(b)
			for b.Loop() {
				i++
				name := fmt.Sprintf("%012d.json", i)
				staged := filepath.Join(tmp, "."+name)
				f, err := os.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.Write(data); err != nil {
					b.Fatal(err)
				}
				if fsync {
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
				if err := os.Rename(staged, filepath.Join(dst, name)); err != nil {
					b.Fatal(err)
				}
				if fsync {
					if err := dir.Sync(); err != nil {
						b.Fatal(err)
					}
				}
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
			put(b, s, DirNew, ids[i]+".json", []byte(job))
		}
		return ids
	}
	for _, fsync := range []bool{true, false} {
		b.Run(fsyncName(fsync)+"/hopper", func(b *testing.B) {
			s := benchSpool(b, fsync)
			ids := stage(b, s)
			quiesce(b)
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
		b.Run(fsyncName(fsync)+"/baseline", func(b *testing.B) {
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
			rewrite := func(name string, data []byte, sync bool) {
				staged := p(DirTmp, "."+name)
				f, err := os.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.Write(data); err != nil {
					b.Fatal(err)
				}
				if sync {
					if err := f.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
				if err := os.Rename(staged, p(DirCur, name)); err != nil {
					b.Fatal(err)
				}
				if sync {
					if err := cur.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			record := []byte(`{"id":"x","state":"done","job":` + job + `,"response":` + string(response) + `}` + "\n")
			quiesce(b)
			for i := 0; i < b.N; i++ {
				name := ids[i] + ".json"
				if err := os.Rename(p(DirNew, name), p(DirCur, name)); err != nil {
					b.Fatal(err)
				}
				if _, err := os.ReadFile(p(DirCur, name)); err != nil {
					b.Fatal(err)
				}
				rewrite(name, record, false)
				rewrite(name, record, fsync)
				if err := os.Rename(p(DirCur, name), p(DirDone, name)); err != nil {
					b.Fatal(err)
				}
				if fsync {
					if err := done.Sync(); err != nil {
						b.Fatal(err)
					}
				}
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
