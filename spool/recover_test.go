package spool

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/spooltest"
)

// record encodes a record for job1 as the runner would have written it.
func record(t *testing.T, st State, attempts int) []byte {
	t.Helper()
	started := time.Now().Add(-time.Minute)
	r := &Record{ID: "job1", State: st, Endpoint: "generate", Model: "llama3.2", Job: json.RawMessage(job),
		Attempts: attempts, SubmittedAt: started.Add(-time.Minute), StartedAt: &started}
	switch st {
	case StateDone:
		r.Response = json.RawMessage(`{"response":"blue"}`)
	case StateFailed:
		r.Error = &JobError{Kind: KindTarget, Message: "HTTP 500", Status: 500}
	case StateDeferred:
		nb := time.Now().Add(time.Minute)
		r.NotBefore = &nb
	}
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRecover(t *testing.T) {
	type want struct {
		rerun    bool
		attempts int
		canceled bool
		badInput bool
		finished int
		dirs     map[string][]string
	}
	tests := []struct {
		name  string
		crash func(t *testing.T, s *Spool) // leaves the spool as a crash would
		want  want
	}{
		{
			name:  "a job just claimed, not yet a record, runs again",
			crash: func(t *testing.T, s *Spool) { spooltest.Put(t, s, DirCur, "job1.json", []byte(job)) },
			want:  want{rerun: true, dirs: map[string][]string{DirCur: {"job1.json"}}},
		},
		{
			name: "a working job runs again keeping its attempts",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirCur, "job1.json", record(t, StateWorking, 2))
				spooltest.Put(t, s, DirCur, "job1.out", []byte(`{"response":"bl"}`+"\n"))
			},
			want: want{rerun: true, attempts: 2, dirs: map[string][]string{DirCur: {"job1.json", "job1.out"}}},
		},
		{
			name:  "a loading job runs again",
			crash: func(t *testing.T, s *Spool) { spooltest.Put(t, s, DirCur, "job1.json", record(t, StateLoading, 1)) },
			want:  want{rerun: true, attempts: 1, dirs: map[string][]string{DirCur: {"job1.json"}}},
		},
		{
			name: "a record rewritten as done but not renamed moves to done/ without running again",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirCur, "job1.json", record(t, StateDone, 1))
				spooltest.Put(t, s, DirCur, "job1.out", []byte("{}\n"))
			},
			want: want{finished: 1, dirs: map[string][]string{DirCur: nil, DirDone: {"job1.json"}}},
		},
		{
			name:  "a record rewritten as failed moves to failed/",
			crash: func(t *testing.T, s *Spool) { spooltest.Put(t, s, DirCur, "job1.json", record(t, StateFailed, 3)) },
			want:  want{finished: 1, dirs: map[string][]string{DirCur: nil, DirFailed: {"job1.json"}}},
		},
		{
			name: "a record rewritten as deferred moves to deferred/",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirCur, "job1.json", record(t, StateDeferred, 1))
				spooltest.Put(t, s, DirCur, "job1.cancel", []byte("stop\n"))
			},
			want: want{finished: 1, dirs: map[string][]string{DirCur: nil, DirDeferred: {"job1.json"}}},
		},
		{
			name: "stray output and cancel files of finished jobs are removed",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirCur, "gone.out", []byte("{}\n"))
				spooltest.Put(t, s, DirCur, "gone.cancel", nil)
				spooltest.Put(t, s, DirDone, "gone.json", record(t, StateDone, 1))
			},
			want: want{dirs: map[string][]string{DirCur: nil}},
		},
		{
			name: "a cancel request waiting for a job is passed on",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirCur, "job1.json", record(t, StateWorking, 1))
				spooltest.Put(t, s, DirCur, "job1.cancel", []byte("stop\n"))
			},
			want: want{rerun: true, attempts: 1, canceled: true, dirs: map[string][]string{DirCur: {"job1.cancel", "job1.json"}}},
		},
		{
			name: "old tmp/ files are removed and recent ones kept",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirTmp, ".job1.json.1", []byte(job))
				spooltest.Age(t, s, DirTmp, ".job1.json.1", TmpMaxAge+time.Hour)
				spooltest.Put(t, s, DirTmp, "stale", nil)
				spooltest.Age(t, s, DirTmp, "stale", 10*TmpMaxAge)
				spooltest.Put(t, s, DirTmp, ".job2.json.2", []byte(job))
				spooltest.Age(t, s, DirTmp, ".job2.json.2", TmpMaxAge-time.Hour)
			},
			want: want{dirs: map[string][]string{DirTmp: {".job2.json.2"}}},
		},
		{
			name: "bad input set aside but not yet failed still fails, keeping its bytes",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirNew, "job1.json", []byte("\xff\xfebinary"))
				claim(t, s, DirNew, "job1.json")
			},
			want: want{rerun: true, badInput: true, dirs: map[string][]string{DirCur: {"job1.json"}, DirFailed: {"job1.raw"}}},
		},
		{
			name: "a job quarantined for its name is not run after a crash",
			crash: func(t *testing.T, s *Spool) {
				spooltest.Put(t, s, DirNew, "bad name.json", []byte(job))
				claim(t, s, DirNew, "bad name.json")
			},
			want: want{rerun: true, badInput: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSpool(t)
			tt.crash(t, s)
			// Start again, as the next runner would.
			s2, err := Open(s.Path(), testOptions())
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			got, err := s2.Recover()
			if err != nil {
				t.Fatalf("Recover: %v", err)
			}
			for dir, want := range tt.want.dirs {
				spooltest.WantNames(t, s2, dir, want...)
			}
			spooltest.WantNames(t, s2, DirNew)
			if len(got.Finished) != tt.want.finished {
				t.Errorf("got %d finished, want %d", len(got.Finished), tt.want.finished)
			}
			if !tt.want.rerun {
				if len(got.Rerun) != 0 {
					t.Errorf("got %d jobs to rerun, want none", len(got.Rerun))
				}
			} else {
				if len(got.Rerun) != 1 {
					t.Fatalf("got %d jobs to rerun, want 1", len(got.Rerun))
				}
				c := got.Rerun[0]
				if !c.Recovered || c.Canceled != tt.want.canceled || c.Record.Attempts != tt.want.attempts {
					t.Errorf("got recovered %v, canceled %v, attempts %d; want true, %v, %d",
						c.Recovered, c.Canceled, c.Record.Attempts, tt.want.canceled, tt.want.attempts)
				}
				if (c.BadInput != nil) != tt.want.badInput || (c.Job == nil) != tt.want.badInput {
					t.Errorf("got bad input %v, job %v; want bad input %v", c.BadInput, c.Job, tt.want.badInput)
				}
				if !ValidID(c.Record.ID) {
					t.Errorf("got ID %q", c.Record.ID)
				}
				if c.BadInput == nil && c.Record.Model != "llama3.2" {
					t.Errorf("got model %q, want llama3.2", c.Record.Model)
				}
				if c.BadInput != nil {
					// The runner fails it; its bytes and source survive.
					finish(t, s2, c.Record, StateFailed, &JobError{Kind: KindBadInput, Message: c.BadInput.Error()})
					r := readRec(t, s2, DirFailed, c.Record.ID+".json")
					if r.JobFile == "" && r.Job == nil && r.JobRaw == nil {
						t.Errorf("the failed record lost the job: %+v", r)
					}
					if strings.HasPrefix(tt.name, "a job quarantined") && r.Source != "bad name.json" {
						t.Errorf("got source %q, want bad name.json", r.Source)
					}
				}
			}
		})
	}
}

func TestRecoverTwiceFinishesOnce(t *testing.T) {
	s := newSpool(t)
	spooltest.Put(t, s, DirCur, "job1.json", record(t, StateDone, 1))
	first, err := s.Recover()
	if err != nil || len(first.Finished) != 1 {
		t.Fatalf("got %+v, %v, want one finished", first, err)
	}
	done := spooltest.Read(t, s, DirDone, "job1.json")
	second, err := s.Recover()
	if err != nil || len(second.Finished) != 0 || len(second.Rerun) != 0 {
		t.Fatalf("got %+v, %v, want nothing to do", second, err)
	}
	if got := spooltest.Read(t, s, DirDone, "job1.json"); string(got) != string(done) {
		t.Error("the done record changed")
	}
}

// A crash between claiming a job under a new name and writing its first
// record keeps the name it arrived under.
func TestRecoveryKeepsTheSourceOfARenamedClaim(t *testing.T) {
	s := newSpool(t)
	spooltest.Put(t, s, DirNew, "cron.json", []byte(`{"model":"m","prompt":"p"}`))
	spooltest.Put(t, s, DirDone, "cron.json", []byte(`{"id":"cron","state":"done","job":{}}`))
	c, err := s.Claim(Entry{Dir: DirNew, Name: "cron.json"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Record.Source != "cron.json" || c.Record.ID == "cron" {
		t.Fatalf("claimed as %s from %q", c.Record.ID, c.Record.Source)
	}
	// Killed here: cur/ID.json is still the job file.
	rec, err := s.Recover()
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Rerun) != 1 || rec.Rerun[0].Record.Source != "cron.json" {
		t.Fatalf("recovered %+v, want the job with its source cron.json", rec.Rerun)
	}
}
