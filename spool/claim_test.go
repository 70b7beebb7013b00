package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/internal/spooltest"
)

func TestClaim(t *testing.T) {
	t.Run("moves a queued job into cur/ and parses it", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, `{"model":"m","messages":[],"priority":7}`)
		c := claim(t, s, DirNew, id+".json")
		if c.BadInput != nil || c.Job == nil {
			t.Fatalf("got bad input %v, want a parsed job", c.BadInput)
		}
		r := c.Record
		if r.ID != id || r.State != StateQueued || r.Model != "m" || r.Endpoint != "chat" || r.Priority != 7 || r.Source != "" {
			t.Errorf("got %+v", r)
		}
		if r.SubmittedAt.IsZero() {
			t.Error("no submitted_at")
		}
		spooltest.WantNames(t, s, DirNew)
		spooltest.WantNames(t, s, DirCur, id+".json")
	})

	t.Run("a job someone else took is gone", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		other, err := Open(s.Path(), testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		claim(t, other, DirNew, id+".json")
		_, err = s.Claim(Entry{Dir: DirNew, Name: id + ".json"})
		if !errors.Is(err, ErrGone) {
			t.Errorf("got %v, want ErrGone", err)
		}
	})

	t.Run("racing claimers take each job exactly once", func(t *testing.T) {
		s := newSpool(t)
		var ids []string
		for range 50 {
			ids = append(ids, submit(t, s, job))
		}
		var mu sync.Mutex
		won := map[string]int{}
		var wg sync.WaitGroup
		for range 4 {
			sp, err := Open(s.Path(), testOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			wg.Go(func() {
				for _, id := range ids {
					c, err := sp.Claim(Entry{Dir: DirNew, Name: id + ".json"})
					switch {
					case err == nil:
						mu.Lock()
						won[c.Record.ID]++
						mu.Unlock()
					case !errors.Is(err, ErrGone):
						t.Errorf("claim %s: %v", id, err)
					}
				}
			})
		}
		wg.Wait()
		for _, id := range ids {
			if won[id] != 1 {
				t.Errorf("%s claimed %d times, want once", id, won[id])
			}
		}
		if len(won) != len(ids) {
			t.Errorf("got %d claimed IDs, want %d: %v", len(won), len(ids), won)
		}
	})

	t.Run("a path for a name is refused and nothing moves", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, DirDone, "x.json", []byte(job))
		for _, e := range []Entry{{Dir: DirNew, Name: "../done/x.json"}, {Dir: DirDeferred, Name: "../done/x.json"}, {Dir: DirNew, Name: ".."}} {
			if c, err := s.Claim(e); err == nil {
				t.Errorf("Claim(%+v): got %+v, want an error", e, c.Record)
			}
		}
		spooltest.WantNames(t, s, DirDone, "x.json")
		spooltest.WantNames(t, s, DirCur)
	})

	t.Run("only new/ and deferred/ are claimed", func(t *testing.T) {
		s := newSpool(t)
		if _, err := s.Claim(Entry{Dir: DirDone, Name: "x.json"}); err == nil {
			t.Error("claimed from done/")
		}
	})
}

func TestClaimQuarantinesInvalidNames(t *testing.T) {
	for _, name := range []string{"bad name!.json", strings.Repeat("a", 200) + ".json", "-dash.json", "ünïcode.json"} {
		t.Run(fmt.Sprintf("%.20s... gets a generated ID and fails as bad input", name), func(t *testing.T) {
			s := newSpool(t)
			spooltest.Put(t, s, DirNew, name, []byte(job))
			c := claim(t, s, DirNew, name)
			r := c.Record
			if !ValidID(r.ID) || r.Source != name {
				t.Fatalf("got ID %q and source %q, want a valid ID and source %q", r.ID, r.Source, name)
			}
			if c.BadInput == nil || !strings.Contains(c.BadInput.Error(), "not a valid job ID") || c.Job != nil {
				t.Fatalf("got bad input %v and job %v, want the name refused", c.BadInput, c.Job)
			}
			finish(t, s, r, StateFailed, &JobError{Kind: KindBadInput, Message: c.BadInput.Error()})
			got := readRec(t, s, DirFailed, r.ID+".json")
			if got.Source != name || !spooltest.JSONEqual(got.Job, []byte(job)) {
				t.Errorf("got source %q and job %s, want %q and the job", got.Source, got.Job, name)
			}
			spooltest.WantNames(t, s, DirNew)
			spooltest.WantNames(t, s, DirCur)
		})
	}
}

func TestClaimNeverOverwrites(t *testing.T) {
	t.Run("the same name dropped twice makes two records", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, DirNew, "daily.json", []byte(`{"model":"m","prompt":"monday"}`))
		c1 := claim(t, s, DirNew, "daily.json")
		if c1.Record.ID != "daily" || c1.Record.Source != "" {
			t.Fatalf("got ID %q, source %q, want daily and no source", c1.Record.ID, c1.Record.Source)
		}
		finish(t, s, c1.Record, StateDone, nil)
		first := spooltest.Read(t, s, DirDone, "daily.json")

		spooltest.Put(t, s, DirNew, "daily.json", []byte(`{"model":"m","prompt":"tuesday"}`))
		c2 := claim(t, s, DirNew, "daily.json")
		r := c2.Record
		if !strings.HasPrefix(r.ID, "daily.") || !ValidID(r.ID) || r.Source != "daily.json" || c2.BadInput != nil {
			t.Fatalf("got ID %q, source %q, bad input %v, want daily.<suffix> from daily.json", r.ID, r.Source, c2.BadInput)
		}
		finish(t, s, r, StateDone, nil)
		spooltest.WantNames(t, s, DirDone, r.ID+".json", "daily.json")
		if !bytes.Equal(spooltest.Read(t, s, DirDone, "daily.json"), first) {
			t.Error("the first record was overwritten")
		}
		if got := readRec(t, s, DirDone, r.ID+".json"); !strings.Contains(string(got.Job), "tuesday") {
			t.Errorf("got job %s, want tuesday's", got.Job)
		}
	})

	t.Run("a name in use by a running job gets a suffix", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, DirNew, "x.json", []byte(job))
		claim(t, s, DirNew, "x.json")
		spooltest.Put(t, s, DirNew, "x.json", []byte(job))
		c := claim(t, s, DirNew, "x.json")
		if c.Record.ID == "x" {
			t.Fatal("second job claimed as x over the running one")
		}
		spooltest.WantNames(t, s, DirCur, c.Record.ID+".json", "x.json")
	})

	t.Run("a suffixed long name is still a valid ID", func(t *testing.T) {
		s := newSpool(t)
		long := strings.Repeat("a", 120) + ".b"
		spooltest.Put(t, s, DirNew, long+".json", []byte(job))
		finish(t, s, claim(t, s, DirNew, long+".json").Record, StateDone, nil)
		spooltest.Put(t, s, DirNew, long+".json", []byte(job))
		c := claim(t, s, DirNew, long+".json")
		if !ValidID(c.Record.ID) || c.Record.ID == long {
			t.Errorf("got ID %q, want a new valid ID", c.Record.ID)
		}
	})
}

func TestClaimKeepsBadInput(t *testing.T) {
	binary := []byte("\xff\xfe\x00\x01{\"model\"\x80\x81")
	big := []byte(`{"model":"m","prompt":"` + strings.Repeat("x", 300) + `"}`)
	tests := []struct {
		name    string
		data    []byte
		maxSize int64
		inline  bool // kept as job_raw; otherwise in failed/ID.raw
		asJob   bool // valid JSON that is not a job: kept as job
		want    string
	}{
		{"malformed JSON is kept inline", []byte("{\"model\": \"m\",\n \"prompt\": "), 0, true, false, "line 2"},
		{"an empty file is kept inline", []byte{}, 0, true, false, "empty"},
		{"a byte order mark is kept inline", []byte("\xEF\xBB\xBF{oops"), 0, true, false, "not valid JSON"},
		{"a JSON array is kept as the job", []byte(`[1, 2.50]`), 0, false, true, "got array"},
		{"a job without a model is kept as the job", []byte(`{"prompt":"p"}`), 0, false, true, `"model" is required`},
		{"binary is kept in failed/ID.raw", binary, 0, false, false, "not UTF-8"},
		{"an oversized file is kept in failed/ID.raw", big, 100, false, false, "over the limit of 100 bytes"},
		{"non-JSON text too large to inline is kept in failed/ID.raw", bytes.Repeat([]byte("text "), maxRawInRecord/4), 0, false, false, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSpool(t, func(o *Options) {
				if tt.maxSize > 0 {
					o.MaxJobSize = tt.maxSize
				}
			})
			spooltest.Put(t, s, DirNew, "x.json", tt.data)
			c := claim(t, s, DirNew, "x.json")
			if c.BadInput == nil || c.Job != nil {
				t.Fatalf("got bad input %v and job %+v, want bad input", c.BadInput, c.Job)
			}
			if !strings.Contains(c.BadInput.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", c.BadInput, tt.want)
			}
			finish(t, s, c.Record, StateFailed, &JobError{Kind: KindBadInput, Message: c.BadInput.Error()})
			r := readRec(t, s, DirFailed, "x.json")
			switch {
			case tt.inline:
				if r.JobRaw == nil || *r.JobRaw != string(tt.data) || r.JobFile != "" {
					t.Errorf("got job_raw %q, job_file %q, want job_raw %q", spooltest.Deref(r.JobRaw), r.JobFile, tt.data)
				}
				spooltest.WantNames(t, s, DirFailed, "x.json")
			case tt.asJob:
				if !spooltest.JSONEqual(r.Job, tt.data) {
					t.Errorf("got job %s, want %s", r.Job, tt.data)
				}
			default:
				if r.JobFile != "x.raw" || r.JobRaw != nil || r.Job != nil {
					t.Errorf("got job_file %q, want x.raw and nothing inline", r.JobFile)
				}
				if got := spooltest.Read(t, s, DirFailed, "x.raw"); !bytes.Equal(got, tt.data) {
					t.Errorf("failed/x.raw holds %d bytes, want the %d original bytes", len(got), len(tt.data))
				}
			}
			if r.Error == nil || r.Error.Kind != KindBadInput {
				t.Errorf("got error %+v, want bad_input", r.Error)
			}
			spooltest.WantNames(t, s, DirNew)
			spooltest.WantNames(t, s, DirCur)
			spooltest.WantNames(t, s, DirTmp)
		})
	}
}

func TestClaimNeverFollowsLinks(t *testing.T) {
	secret := `{"model":"secret-model","prompt":"secret"}`
	tests := []struct {
		name string
		make func(t *testing.T, s *Spool, outside string)
	}{
		{"a symlink to a record inside the spool", func(t *testing.T, s *Spool, _ string) {
			spooltest.Put(t, s, DirDone, "secret.json", []byte(secret))
			mustSymlink(t, "../done/secret.json", filepath.Join(s.Path(), DirNew, "x.json"))
		}},
		{"a symlink to a file outside the spool", func(t *testing.T, s *Spool, outside string) {
			writeFile(t, filepath.Join(outside, "job.json"), secret)
			mustSymlink(t, filepath.Join(outside, "job.json"), filepath.Join(s.Path(), DirNew, "x.json"))
		}},
		{"a symlink to a FIFO outside the spool", func(t *testing.T, s *Spool, outside string) {
			mustMkfifo(t, filepath.Join(outside, "fifo"))
			mustSymlink(t, filepath.Join(outside, "fifo"), filepath.Join(s.Path(), DirNew, "x.json"))
		}},
		{"a symlink to a directory", func(t *testing.T, s *Spool, outside string) {
			mustSymlink(t, outside, filepath.Join(s.Path(), DirNew, "x.json"))
		}},
		{"a FIFO", func(t *testing.T, s *Spool, _ string) {
			mustMkfifo(t, filepath.Join(s.Path(), DirNew, "x.json"))
		}},
		{"a directory", func(t *testing.T, s *Spool, _ string) {
			if err := os.Mkdir(filepath.Join(s.Path(), DirNew, "x.json"), 0o750); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is set aside unread", func(t *testing.T) {
			s := newSpool(t)
			outside := t.TempDir()
			tt.make(t, s, outside)
			c := claimWithin(t, s, Entry{Dir: DirNew, Name: "x.json"}, 5*time.Second)
			if c.BadInput == nil || !strings.Contains(c.BadInput.Error(), "not a regular file") {
				t.Fatalf("got bad input %v, want not a regular file", c.BadInput)
			}
			if c.Job != nil || c.Record.Model != "" || c.Record.Job != nil || c.Record.JobRaw != nil {
				t.Errorf("got %+v, want nothing read", c.Record)
			}
			finish(t, s, c.Record, StateFailed, &JobError{Kind: KindBadInput, Message: c.BadInput.Error()})
			if data := spooltest.Read(t, s, DirFailed, "x.json"); bytes.Contains(data, []byte("secret")) {
				t.Errorf("the record holds what the link points at: %s", data)
			}
			if _, err := os.Lstat(filepath.Join(s.Path(), DirFailed, "x.raw")); err != nil {
				t.Errorf("the odd file was not kept as failed/x.raw: %v", err)
			}
			spooltest.WantNames(t, s, DirNew)
			spooltest.WantNames(t, s, DirCur)
		})
	}
}

// claimWithin claims e in a goroutine, failing the test if it blocks (on a
// FIFO, say) for longer than d.
func claimWithin(t *testing.T, s *Spool, e Entry, d time.Duration) *Claimed {
	t.Helper()
	type result struct {
		c   *Claimed
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := s.Claim(e)
		ch <- result{c, err}
	}()
	r := runtest.Receive(t, ch, d, "the claim, which blocked")
	if r.err != nil {
		t.Fatalf("Claim: %v", r.err)
	}
	return r.c
}

func TestUpdateAndFinish(t *testing.T) {
	t.Run("update rewrites the record in cur/", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		c := claim(t, s, DirNew, id+".json")
		c.Record.State, c.Record.Attempts = StateWorking, 1
		if err := s.Update(c.Record); err != nil {
			t.Fatal(err)
		}
		if r := readRec(t, s, DirCur, id+".json"); r.State != StateWorking || r.Attempts != 1 || !spooltest.JSONEqual(r.Job, []byte(job)) {
			t.Errorf("got %+v, want working, attempt 1, with the job", r)
		}
		spooltest.WantNames(t, s, DirTmp)
	})

	for _, st := range []State{StateDone, StateFailed, StateDeferred} {
		for _, fsync := range []bool{false, true} {
			t.Run(fmt.Sprintf("finish as %s (fsync %v) moves the record and removes ID.out and ID.cancel", st, fsync), func(t *testing.T) {
				s := newSpool(t, func(o *Options) { o.Fsync = fsync })
				id := submit(t, s, job)
				c := claim(t, s, DirNew, id+".json")
				c.Record.State = StateWorking
				if err := s.Update(c.Record); err != nil {
					t.Fatal(err)
				}
				out, err := s.CreateOutput(id)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintln(out, `{"response":"blue"}`)
				out.Close()
				if _, err := s.Cancel(id, "stop"); err != nil {
					t.Fatal(err)
				}
				if !s.CancelRequested(id) {
					t.Fatal("cancel not requested")
				}
				c.Record.Response = json.RawMessage(`{"response":"blue","done":true}`)
				if st == StateDeferred {
					nb := time.Now().Add(time.Minute)
					c.Record.NotBefore = &nb
				}
				finish(t, s, c.Record, st, nil)
				r := readRec(t, s, dirOf(st), id+".json")
				if r.State != st || !spooltest.JSONEqual(r.Response, []byte(`{"response":"blue","done":true}`)) {
					t.Errorf("got %+v, want state %s with the response", r, st)
				}
				spooltest.WantNames(t, s, DirCur)
				spooltest.WantNames(t, s, DirTmp)
				if s.CancelRequested(id) {
					t.Error("cancel request left behind")
				}
			})
		}
	}

	t.Run("finish refuses a state that is not final", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		c := claim(t, s, DirNew, id+".json")
		for _, st := range []State{StateWorking, StateLoading, StateQueued, StateHeld} {
			c.Record.State = st
			if err := s.Finish(c.Record); err == nil {
				t.Errorf("Finish accepted state %s", st)
			}
		}
		spooltest.WantNames(t, s, DirCur, id+".json")
	})
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustMkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o640); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

// A record-shaped body that came over HTTP (or as a batch line) is a job:
// its inner job never runs as one hopper ran before, without its origin.
func TestARecordShapedHTTPJobIsNotResumedAsARecord(t *testing.T) {
	s := newSpool(t)
	body := `{"model":"m","prompt":"p","id":"x","state":"failed","job":{"model":"m","prompt":"p","webhook":"http://127.0.0.1:9/ssrf"}}`
	id, err := s.Submit([]byte(body), SubmitOptions{Origin: OriginHTTP})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(Entry{Dir: DirNew, Name: id + ".json"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Record.ID != id {
		t.Errorf("claimed as %q, want its own ID %q", c.Record.ID, id)
	}
	if c.Job == nil || c.Job.Origin != OriginHTTP || c.Job.Webhook != "" {
		t.Fatalf("got job %+v (bad input %v), want the body itself as an HTTP job, inner webhook not taken", c.Job, c.BadInput)
	}
	if len(c.Record.History) != 0 || c.Record.Error != nil {
		t.Errorf("the record carried the body's fields: %+v", c.Record)
	}
}
