package torture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/openai"
	"github.com/hopper-dev/hopper/spool"
)

// batchCase is one kind of bad (or odd) batch file dropped into new/.
type batchCase struct {
	name  string // the file is new/NAME.jsonl unless drop says otherwise
	drop  string
	data  []byte
	place placement
	link  func(c *corpus) string
	// ignored: the file must be left where it is. Otherwise the batch
	// ends in state, refused with code, or with done and failed lines
	// (failed -1: every line).
	ignored      bool
	state        batch.State
	code         string
	done, failed int
	// source: an invalid name; the batch gets a generated one.
	source bool
	// errLines are the lines of the errors file (failed/NAME.errors.jsonl),
	// in order, when the case says what they are.
	errLines []errLine
}

// errLine is a line of a batch's errors file: its custom_id ("" for null)
// and a substring of its error message.
type errLine struct {
	custom, msg string
}

func (bc batchCase) dropName() string {
	if bc.drop != "" {
		return bc.drop
	}
	return bc.name + ".jsonl"
}

const goodLine = `{"custom_id": "ok", "model": "m1", "prompt": "fine"}`

func batchCases(t *testing.T) []batchCase {
	binary, err := os.ReadFile(filepath.Join("testdata", "badinput", "binary.bin"))
	if err != nil {
		t.Fatal(err)
	}
	lines := func(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }
	return []batchCase{
		{name: "two-good-lines", data: lines(goodLine, `{"model": "m2", "prompt": "two"}`), state: batch.Completed, done: 2},
		{name: "empty", data: nil, state: batch.Failed, code: "empty_file"},
		{name: "blank-lines-only", data: []byte("\n\n   \n\t\n"), state: batch.Failed, code: "empty_file"},
		{name: "binary", data: binary, state: batch.Completed, failed: -1},
		{name: "bom-and-crlf", data: []byte("\xEF\xBB\xBF" + goodLine + "\r\n" + `{"model": "m1", "prompt": "b"}` + "\r\n"), state: batch.Completed, done: 2},
		{name: "no-final-newline", data: []byte(goodLine), state: batch.Completed, done: 1},
		{name: "every-kind-of-bad-line", data: lines(
			`null`, `[1, 2]`, `"a string"`, `{}`, `{"model": "m1"}`, `{"model": "m1", "prompt": "x", "max_attempts": -1}`,
			`{"custom_id": "u", "url": "/v1/nope", "body": {"model": "m1"}}`,
			`{"custom_id": "p", "url": "/v1/chat/completions", "body": {"model": "m1", "messages": [], "priority": 5}}`,
			`{"custom_id": "g", "method": "GET", "url": "/v1/embeddings", "body": {"model": "m1", "input": "x"}}`,
			`{"url": "/v1/embeddings", "body": {"model": "m1", "input": "no custom_id"}}`,
			`{"custom_id": 7, "model": "m1", "prompt": "x"}`,
			`{"custom_id": "s", "url": "/v1/embeddings", "body": "not an object"}`,
			`{"model": "m1", "prompt": "cut off`,
			goodLine), state: batch.Completed, done: 1, failed: 13},
		{name: "duplicate-custom-ids", data: lines(goodLine, `{"custom_id": "x", "model": "m1", "prompt": "a"}`, goodLine), state: batch.Failed, code: "duplicate_custom_id"},
		{name: "line-over-max-job-size", data: lines(goodLine, `{"model": "m1", "prompt": "`+strings.Repeat("x", corpusMaxJobSize)+`"}`, `{"model": "m1", "prompt": "after"}`), state: batch.Completed, done: 2, failed: 1,
			errLines: []errLine{{"", fmt.Sprintf("over the limit of %d bytes (max_job_size), and its custom_id is not within its first %d bytes", corpusMaxJobSize, corpusMaxJobSize)}}},
		// Its answer keeps the custom_id its head holds (issue #16); one
		// past the bytes read is not looked for.
		{name: "openai-line-over-max-job-size", data: lines(
			`{"custom_id": "too-long", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m1", "messages": [{"role": "user", "content": "`+strings.Repeat("x", corpusMaxJobSize)+`"}]}}`,
			`{"custom_id": "fits", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m1", "messages": [{"role": "user", "content": "fits"}]}}`,
			`{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m1", "messages": [{"role": "user", "content": "`+strings.Repeat("x", corpusMaxJobSize)+`"}]}, "custom_id": "late"}`),
			state: batch.Completed, done: 1, failed: 2,
			errLines: []errLine{
				{"too-long", fmt.Sprintf(`the line (custom_id "too-long") is over the limit of %d bytes (max_job_size)`, corpusMaxJobSize)},
				{"", fmt.Sprintf("its custom_id is not within its first %d bytes", corpusMaxJobSize)},
			}},
		{name: "over-long-line-repeats-a-custom-id", data: lines(goodLine, `{"custom_id": "ok", "model": "m1", "prompt": "`+strings.Repeat("x", corpusMaxJobSize)+`"}`),
			state: batch.Failed, code: "duplicate_custom_id"},
		{name: "invalid-name", drop: "my batch!.jsonl", data: lines(goodLine), state: batch.Completed, done: 1, source: true},
		{name: "appended-in-place", data: lines(goodLine, `{"model": "m1", "prompt": "second half"}`), place: halfThenRest, state: batch.Completed, done: 2},
		{name: "batch-symlink-outside", place: symlink, link: func(c *corpus) string { return c.secret }, ignored: true},
		{name: "batch-fifo", place: fifo, ignored: true},
		{name: "batch-directory", place: directory, ignored: true},
		{name: "dot-batch", drop: ".hidden.jsonl", data: lines(goodLine), ignored: true},
	}
}

// TestBadInputBatches drops odd batch files into new/: a bad line fails
// that line, a batch that cannot be told apart is refused as a whole, the
// input's bytes are kept, and nothing outside the spool is touched.
func TestBadInputBatches(t *testing.T) {
	c := newCorpus(t)
	w := c.w
	serve := w.start(nil, "serve")
	cases := batchCases(t)
	var bg sync.WaitGroup
	for _, bc := range cases {
		c.place(t, &bg, badCase{name: bc.name, drop: bc.dropName(), place: bc.place, link: bc.link, gen: func() []byte { return bc.data }}, bc.data)
	}
	bg.Wait()
	batches := func() map[string]*batch.Record {
		out := map[string]*batch.Record{}
		for _, name := range w.names(spool.DirBatches) {
			id, ok := strings.CutSuffix(name, ".json")
			if !ok {
				continue
			}
			data, err := os.ReadFile(filepath.Join(w.spool, spool.DirBatches, name))
			var b batch.Record
			if err == nil && json.Unmarshal(data, &b) == nil {
				out[id] = &b
			}
		}
		return out
	}
	want := 0
	for _, bc := range cases {
		if !bc.ignored {
			want++
		}
	}
	waitFor(t, 2*time.Minute, "every batch to end", func() bool {
		if serve.exited() {
			t.Fatalf("hopper serve exited (%v)", serve.state)
		}
		n := 0
		for _, b := range batches() {
			if b.State.Terminal() {
				n++
			}
		}
		return n >= want
	})
	all := batches()
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			path := filepath.Join(w.spool, spool.DirNew, bc.dropName())
			var b *batch.Record
			for id, x := range all {
				if id == strings.TrimSuffix(bc.dropName(), ".jsonl") || x.Source == bc.dropName() {
					b = x
				}
			}
			if bc.ignored {
				if b != nil {
					t.Errorf("got batch %s (%s), want the file ignored", b.ID, b.State)
				}
				if !exists(path) {
					t.Errorf("new/%s is gone, want it left where it is", bc.dropName())
				}
				return
			}
			if b == nil {
				t.Fatalf("no batch record")
			}
			if bc.source && (b.Source != bc.dropName() || !spool.ValidID(b.ID)) {
				t.Errorf("id %q source %q, want a generated ID and the dropped name", b.ID, b.Source)
			}
			if got, err := os.ReadFile(filepath.Join(w.spool, b.Input)); err != nil || !bytes.Equal(got, bc.data) {
				t.Errorf("the input %s is not the dropped bytes (%v)", b.Input, err)
			}
			if b.State != bc.state {
				t.Fatalf("state %s (errors %+v), want %s", b.State, b.Errors, bc.state)
			}
			if bc.code != "" {
				if len(b.Errors) == 0 || b.Errors[0].Code != bc.code || b.Errors[0].Message == "" {
					t.Errorf("errors %+v, want code %s with a message", b.Errors, bc.code)
				}
				return
			}
			failed := bc.failed
			if failed < 0 {
				failed = b.Total
			}
			if b.Total == 0 || b.Done != bc.done || b.Failed != failed || b.Total != b.Done+b.Failed {
				t.Errorf("total %d, done %d, failed %d; want done %d, failed %d", b.Total, b.Done, b.Failed, bc.done, failed)
			}
			out, err := os.ReadFile(filepath.Join(w.spool, b.Output))
			if err != nil || bytes.Count(out, []byte("\n")) != b.Total {
				t.Errorf("output %s: %d lines for %d (%v)", b.Output, bytes.Count(out, []byte("\n")), b.Total, err)
			}
			if bc.errLines != nil {
				checkErrLines(t, w, b, bc.errLines)
			}
			// Every failed line's record says why, with its bytes.
			for i := 1; i <= b.Total; i++ {
				id := b.LineID(i)
				data, err := os.ReadFile(filepath.Join(w.spool, spool.DirFailed, id+".json"))
				if err != nil {
					continue
				}
				r, err := spool.ParseRecord(data)
				// A line too large to copy is pointed at in the input.
				pointed := r != nil && r.Error != nil && strings.Contains(r.Error.Message, "its bytes are request")
				if err != nil || r.Error == nil || r.Error.Message == "" || (len(r.Job) == 0 && r.JobRaw == nil && !pointed) {
					t.Errorf("%s: a failed line's record lacks its reason or bytes: %s", id, data)
				}
			}
		})
	}
	c.checkCanaries(t)
	if code := serve.term(t); code != 0 {
		t.Errorf("hopper serve exited %d after SIGTERM, want 0", code)
	}
}

// checkErrLines checks a batch's errors file line by line: each has the
// custom_id wanted (null for "") and an error message that says msg.
func checkErrLines(t *testing.T, w *world, b *batch.Record, want []errLine) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(w.spool, b.ErrorsFile))
	if err != nil || b.ErrorsFile == "" {
		t.Fatalf("errors file %q: %v", b.ErrorsFile, err)
	}
	got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("%s has %d lines, want %d", b.ErrorsFile, len(got), len(want))
	}
	for i, text := range got {
		var l openai.BatchOutputLine
		if err := json.Unmarshal([]byte(text), &l); err != nil {
			t.Fatalf("%s line %d: %v", b.ErrorsFile, i+1, err)
		}
		msg := ""
		if l.Error != nil {
			msg = l.Error.Message
		} else if l.Response != nil {
			var body struct {
				Error struct{ Message string }
			}
			_ = json.Unmarshal(l.Response.Body, &body)
			msg = body.Error.Message
		}
		custom := ""
		if l.CustomID != nil {
			custom = *l.CustomID
		}
		if (l.CustomID == nil) != (want[i].custom == "") || custom != want[i].custom || !strings.Contains(msg, want[i].msg) {
			t.Errorf("%s line %d (%s): custom_id %s, message %q; want custom_id %q and a message saying %q",
				b.ErrorsFile, i+1, l.ID, deref(l.CustomID), msg, want[i].custom, want[i].msg)
		}
	}
}
