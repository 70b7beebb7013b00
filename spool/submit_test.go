package spool

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hopper-dev/hopper/internal/spooltest"
)

func TestSubmit(t *testing.T) {
	for _, fsync := range []bool{false, true} {
		name := "writes new/ID.json and leaves nothing in tmp/"
		if fsync {
			name += " with fsync"
		}
		t.Run(name, func(t *testing.T) {
			s := newSpool(t, func(o *Options) { o.Fsync = fsync })
			id := submit(t, s, job)
			if !ValidID(id) {
				t.Errorf("got ID %q, not a valid ID", id)
			}
			if got := string(spooltest.Read(t, s, DirNew, id+".json")); got != job {
				t.Errorf("got %s, want the job exactly as submitted", got)
			}
			spooltest.WantNames(t, s, DirNew, id+".json")
			spooltest.WantNames(t, s, DirTmp)
		})
	}

	t.Run("keeps a given ID", func(t *testing.T) {
		s := newSpool(t)
		id, err := s.Submit([]byte(job), SubmitOptions{ID: "nightly-report", Volatile: true})
		if err != nil || id != "nightly-report" {
			t.Fatalf("got %q, %v, want nightly-report", id, err)
		}
		spooltest.WantNames(t, s, DirNew, "nightly-report.json")
	})

	t.Run("refuses an ID that is already queued", func(t *testing.T) {
		s := newSpool(t)
		if _, err := s.Submit([]byte(job), SubmitOptions{ID: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Submit([]byte(`{"model":"other","prompt":"p"}`), SubmitOptions{ID: "x"}); err == nil {
			t.Fatal("a second job with the same ID was accepted")
		}
		if got := string(spooltest.Read(t, s, DirNew, "x.json")); got != job {
			t.Errorf("the queued job was overwritten with %s", got)
		}
		spooltest.WantNames(t, s, DirTmp)
	})

	t.Run("refuses an ID a finished job already has", func(t *testing.T) {
		// Otherwise Claim would run it under another name and the caller
		// would find the old record under the ID it was given.
		s := newSpool(t)
		if _, err := s.Submit([]byte(job), SubmitOptions{ID: "x"}); err != nil {
			t.Fatal(err)
		}
		c := claim(t, s, DirNew, "x.json")
		finish(t, s, c.Record, StateDone, nil)
		if _, err := s.Submit([]byte(job), SubmitOptions{ID: "x"}); err == nil || !strings.Contains(err.Error(), "already") {
			t.Errorf("got %v, want an error saying the ID is taken", err)
		}
		spooltest.WantNames(t, s, DirNew)
	})
}

func TestSubmitRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		job  string
		id   string
		want string
	}{
		{"malformed JSON, with line and column", "{\"model\":\"m\",\n\"prompt\" \"p\"}", "", "line 2, column 10"},
		{"an empty job", "", "", "empty"},
		{"an array", `[1]`, "", "got array"},
		{"a string", `"prompt"`, "", "got string"},
		{"null", `null`, "", "got null"},
		{"an unknown endpoint", `{"model":"m","prompt":"p","endpoint":"complete"}`, "", `unknown endpoint "complete"`},
		{"a missing model", `{"prompt":"p"}`, "", `"model" is required`},
		{"a string priority", `{"model":"m","prompt":"p","priority":"10"}`, "", `"priority" must be an integer`},
		{"an object webhook", `{"model":"m","prompt":"p","webhook":{}}`, "", `"webhook" must be a string`},
		{"an oversized job", `{"model":"m","prompt":"` + strings.Repeat("x", 200) + `"}`, "", "over the limit of 100 bytes"},
		{"an invalid ID", job, "../escape", "invalid job ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSpool(t, func(o *Options) { o.MaxJobSize = 100 })
			id, err := s.Submit([]byte(tt.job), SubmitOptions{ID: tt.id})
			var bad *BadInputError
			if !errors.As(err, &bad) {
				t.Fatalf("got %q, %v, want a *BadInputError", id, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want it to contain %q", err, tt.want)
			}
			spooltest.WantNames(t, s, DirNew)
			spooltest.WantNames(t, s, DirTmp)
		})
	}
}

// TestSubmitConcurrently runs without fsync, as the whole package's tests
// do: with fsync on, 10,000 submits take ten seconds or more on real disks.
func TestSubmitConcurrently(t *testing.T) {
	const workers, each = 8, 1250
	s := newSpool(t)
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				id, err := s.Submit([]byte(job), SubmitOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				ids[w] = append(ids[w], id)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	all := map[string]bool{}
	for w, list := range ids {
		if !slices.IsSorted(list) {
			t.Errorf("worker %d: IDs do not sort in submit order", w)
		}
		for _, id := range list {
			all[id] = true
		}
	}
	if len(all) != workers*each {
		t.Errorf("got %d distinct IDs, want %d", len(all), workers*each)
	}
	files := spooltest.Names(t, s, DirNew)
	if len(files) != workers*each {
		t.Errorf("got %d files in new/, want %d", len(files), workers*each)
	}
	for _, f := range files {
		if !all[strings.TrimSuffix(f, ".json")] {
			t.Errorf("new/%s was not submitted", f)
		}
	}
	spooltest.WantNames(t, s, DirTmp)
}

func TestSubmitWithOriginMarksTheJobAndKeepsOtherValues(t *testing.T) {
	s := newSpool(t)
	id, err := s.Submit([]byte(`{"model":"m","prompt":"<a&b>","origin":"file","options":{"temperature":0.10}}`), SubmitOptions{Origin: OriginHTTP})
	if err != nil {
		t.Fatal(err)
	}
	j, err := ParseJob(spooltest.Read(t, s, DirNew, id+".json"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if j.Origin != OriginHTTP || string(j.Body["prompt"]) != `"<a&b>"` || string(j.Body["options"]) != `{"temperature":0.10}` {
		t.Errorf("got origin %q, prompt %s, options %s", j.Origin, j.Body["prompt"], j.Body["options"])
	}
	if _, ok := j.Body["origin"]; ok {
		t.Error("origin passed through to the target")
	}
}
