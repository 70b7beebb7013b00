package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/hopper-dev/hopper/internal/openai"
	"github.com/hopper-dev/hopper/internal/spooltest"
	"github.com/hopper-dev/hopper/spool"
)

// chatLine is an OpenAI Batch API line asking /v1/chat/completions.
func chatLine(custom, content string) string {
	return fmt.Sprintf(`{"custom_id": %q, "method": "POST", "url": "/v1/chat/completions", "body": {"model": "llama3.2", "messages": [{"role": "user", "content": %q}]}}`, custom, content)
}

// jsonl joins lines into a batch file, each ending in a newline.
func jsonl(l ...string) string { return strings.Join(l, "\n") + "\n" }

// chatBatch is an n-line batch of chat lines with custom_ids req-1, req-2, ….
func chatBatch(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(chatLine(fmt.Sprintf("req-%d", i), fmt.Sprintf("question %d", i)))
		b.WriteByte('\n')
	}
	return b.String()
}

// claimBatch drops body as new/NAME.jsonl, as cp would, and claims it.
func claimBatch(t testing.TB, s *tspool, name, body string) *Record {
	t.Helper()
	spooltest.Put(t, s, spool.DirNew, name+".jsonl", []byte(body))
	b, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: name + ".jsonl", Arrived: time.Now()})
	if err != nil {
		t.Fatalf("Claim %s: %v", name, err)
	}
	return b
}

// expand calls Expand once and returns the entries it put and the
// lines it failed.
func expand(t testing.TB, s *tspool, b *Record, max int, check bool) (int, []spool.Entry, []int) {
	t.Helper()
	var put []spool.Entry
	var bad []int
	n, err := s.b.Expand(b, max, check, func(e spool.Entry) { put = append(put, e) }, func(i int) { bad = append(bad, i) })
	if err != nil {
		t.Fatalf("Expand: %v", err)
	}
	return n, put, bad
}

// expandAll queues every line of b, a chunk of max lines at a time.
func expandAll(t testing.TB, s *tspool, b *Record, max int, check bool) ([]spool.Entry, []int) {
	t.Helper()
	var puts []spool.Entry
	var bads []int
	for b.Expanded < b.Total {
		n, p, bad := expand(t, s, b, max, check)
		if n == 0 {
			t.Fatalf("Expand made no progress at line %d of %d", b.Expanded, b.Total)
		}
		puts, bads = append(puts, p...), append(bads, bad...)
	}
	return puts, bads
}

// endLine runs line id as the runner would: claimed from new/, then done
// with response, or failed with e.
func endLine(t testing.TB, s *tspool, id, response string, e *spool.JobError) {
	t.Helper()
	c := claim(t, s, spool.DirNew, id+".json")
	if c.BadInput != nil {
		t.Fatalf("line %s: bad input %v", id, c.BadInput)
	}
	c.Record.Attempts = 1
	if e != nil {
		finish(t, s, c.Record, spool.StateFailed, e)
		return
	}
	c.Record.Response = json.RawMessage(response)
	finish(t, s, c.Record, spool.StateDone, nil)
}

// readOutput reads a batch output file. Every line must hold exactly the
// keys of OpenAI's batch output shape.
func readOutput(t testing.TB, s *tspool, path string) []openai.BatchOutputLine {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.Path(), path))
	if err != nil {
		t.Fatal(err)
	}
	var out []openai.BatchOutputLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &keys); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Bytes(), err)
		}
		var got []string
		for k := range keys {
			got = append(got, k)
		}
		slices.Sort(got)
		if want := []string{"custom_id", "error", "id", "response"}; !slices.Equal(got, want) {
			t.Errorf("%s: line has keys %q, want %q", path, got, want)
		}
		var l openai.BatchOutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// wantBadInput fails unless err is a *spool.BadInputError saying each of substr.
func wantBadInput(t testing.TB, err error, substr ...string) {
	t.Helper()
	var bad *spool.BadInputError
	if !errors.As(err, &bad) {
		t.Fatalf("got %v (%T), want a *BadInputError", err, err)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("got %q, want it to say %q", err, s)
		}
	}
}

func TestCheckBatch(t *testing.T) {
	check := func(t *testing.T, body string, max int64) (Checked, []Problem, error) {
		t.Helper()
		return Check(strings.NewReader(body), max)
	}
	count := func(t *testing.T, body string, max int64, want int) {
		t.Helper()
		c, errs, err := check(t, body, max)
		if err != nil || errs != nil {
			t.Fatalf("got %v %v, want no error", errs, err)
		}
		if c.Lines != want {
			t.Errorf("got %d lines, want %d", c.Lines, want)
		}
	}

	t.Run("counts the lines, blank ones aside", func(t *testing.T) {
		count(t, "\n"+chatLine("a", "x")+"\n\n   \n\t\n"+chatLine("b", "y")+"\n\n", 1<<20, 2)
	})
	t.Run("counts lines that end in CRLF", func(t *testing.T) {
		count(t, chatLine("a", "x")+"\r\n\r\n"+chatLine("b", "y")+"\r\n", 1<<20, 2)
	})
	t.Run("counts a last line without a newline", func(t *testing.T) {
		count(t, chatLine("a", "x")+"\n"+chatLine("b", "y"), 1<<20, 2)
		count(t, chatLine("a", "x"), 1<<20, 1)
	})
	t.Run("counts malformed lines without refusing them: each fails on its own", func(t *testing.T) {
		count(t, jsonl(`{"custom_id": "a", "url": `, `null`, `[1, 2]`, `not json`), 1<<20, 4)
	})

	t.Run("keeps no custom_id in memory: a big batch's index is a fixed size a line", func(t *testing.T) {
		if testing.Short() {
			t.Skip("reads 40 MB")
		}
		// 40,000 lines whose custom_ids are 1 KiB each: 40 MiB of them,
		// against about 30 bytes a line for their fingerprints.
		const lines, idLen = 40_000, 1 << 10
		pad := strings.Repeat("x", idLen-8)
		var live uint64
		r := &endProbe{next: func(i int) []byte {
			if i == lines {
				return nil
			}
			return []byte(chatLine(fmt.Sprintf("%s%08d", pad, i), "q") + "\n")
		}, atEnd: func() { live = heapLive() }}
		before := heapLive()
		c, _, err := Check(r, 1<<20)
		if err != nil || c.Lines != lines {
			t.Fatalf("got %d lines, %v", c.Lines, err)
		}
		if grew := int64(live) - int64(before); grew > 8<<20 {
			t.Errorf("the heap grew %d MiB while checking %d MiB of custom_ids, want under 8", grew>>20, lines*idLen>>20)
		}
	})
	t.Run("refuses two lines with one custom_id, naming both lines", func(t *testing.T) {
		body := jsonl(chatLine("a", "x"), "", chatLine("b", "y"), chatLine("a", "z"))
		c, errs, err := check(t, body, 1<<20)
		wantBadInput(t, err, "line 4", "line 1", `"a"`)
		if len(errs) != 1 || errs[0].Code != "duplicate_custom_id" || errs[0].Line != 4 || errs[0].Message != err.Error() {
			t.Errorf("got errors %+v, want one duplicate_custom_id at line 4 (file lines, blank ones counted)", errs)
		}
		if c.Lines != 3 {
			t.Errorf("got %d lines, want 3", c.Lines)
		}
	})
	t.Run("a repeated custom_id is found across CRLF lines", func(t *testing.T) {
		_, _, err := check(t, chatLine("a", "x")+"\r\n"+chatLine("a", "y")+"\r\n", 1<<20)
		wantBadInput(t, err, "line 2", "line 1")
	})
	t.Run("lists every repeat and says how many more there are", func(t *testing.T) {
		body := jsonl(chatLine("a", "1"), chatLine("b", "2"), chatLine("a", "3"), chatLine("b", "4"), chatLine("a", "5"))
		_, errs, err := check(t, body, 1<<20)
		wantBadInput(t, err, "line 3", "line 1", "(and 2 more)")
		var got []int
		for _, e := range errs {
			got = append(got, e.Line)
		}
		if !slices.Equal(got, []int{3, 4, 5}) {
			t.Errorf("got errors at lines %v, want 3, 4, 5", got)
		}
		if !strings.Contains(errs[1].Message, "line 4") || !strings.Contains(errs[1].Message, "line 2") {
			t.Errorf("second error %q does not name lines 4 and 2", errs[1].Message)
		}
	})
	t.Run("custom_ids are compared as strings, exactly", func(t *testing.T) {
		count(t, jsonl(chatLine("a", "x"), chatLine("A", "y"), chatLine("a ", "z")), 1<<20, 3)
	})

	for name, body := range map[string]string{"empty": "", "blank": "\n  \n\t\r\n\n"} {
		t.Run("refuses a file with no lines: "+name, func(t *testing.T) {
			c, errs, err := check(t, body, 1<<20)
			wantBadInput(t, err, "no lines")
			if len(errs) != 1 || errs[0].Code != "empty_file" || c.Lines != 0 {
				t.Errorf("got %+v, %+v, want one empty_file error", c, errs)
			}
		})
	}

	t.Run("counts a line over the size limit and does not refuse it", func(t *testing.T) {
		long := `{"custom_id": "long", "model": "m", "prompt": "` + strings.Repeat("x", 500) + `"}`
		// It fails on its own when it runs.
		count(t, jsonl(chatLine("a", "x"), long, chatLine("b", "y")), 100, 3)
	})
	t.Run("refuses a line over the size limit whose head repeats a custom_id", func(t *testing.T) {
		// Its failed answer carries the custom_id: two answers would
		// share it.
		long := `{"custom_id": "a", "model": "m", "prompt": "` + strings.Repeat("x", 500) + `"}`
		_, errs, err := check(t, jsonl(chatLine("a", "x"), long), 100)
		wantBadInput(t, err, "line 2", `"a"`, "line 1")
		if len(errs) != 1 || errs[0].Code != "duplicate_custom_id" || errs[0].Line != 2 {
			t.Errorf("got %+v, want one duplicate_custom_id on line 2", errs)
		}
	})
	t.Run("a custom_id past the head of a line over the size limit is not looked for", func(t *testing.T) {
		long := `{"model": "m", "prompt": "` + strings.Repeat("x", 500) + `", "custom_id": "a"}`
		count(t, jsonl(chatLine("a", "x"), long), 100, 2)
	})
	t.Run("a line longer than the read buffer is one line", func(t *testing.T) {
		long := `{"model": "m", "prompt": "` + strings.Repeat("x", 600<<10) + `"}`
		body := jsonl(chatLine("a", "x"), long, chatLine("b", "y"))
		count(t, body, 1<<20, 3)   // within the limit
		count(t, body, 100<<10, 3) // over it
	})
	t.Run("finds a repeated custom_id on a first line after a byte order mark", func(t *testing.T) {
		_, _, err := check(t, "\xEF\xBB\xBF"+jsonl(chatLine("a", "x"), chatLine("a", "y")), 1<<20)
		if err == nil {
			t.Error("regression: customID() parses the first line with its UTF-8 BOM, finds no custom_id, and the repeat goes unnoticed " +
				"(lineJob trims the BOM, so both lines run with custom_id \"a\"); see TestFinishBatch for the output side")
		}
		wantBadInput(t, err, "line 2", "line 1")
	})
	t.Run("a read error is returned as it is, not as bad input", func(t *testing.T) {
		boom := errors.New("disk on fire")
		_, _, err := Check(io.MultiReader(strings.NewReader(chatLine("a", "x")+"\n"), iotest.ErrReader(boom)), 1<<20)
		if !errors.Is(err, boom) {
			t.Errorf("got %v, want the read error", err)
		}
	})
}

func TestHeadCustomID(t *testing.T) {
	const cut = `, "body": {"model": "m", "messages": [{"role": "user", "content": "xxxx` // the head ends in a value
	for _, tt := range []struct {
		name, head, want, err string
	}{
		{"first, the head cut in the body", `{"custom_id": "a", "method": "POST"` + cut, "a", ""},
		{"after a byte order mark and white space", "\xEF\xBB\xBF \r\n\t{ \"custom_id\" :\n\"b\"" + cut, "b", ""},
		{"after values of every kind", `{"n": -1.5e3, "t": true, "z": null, "s": "a \" } ] {", "o": {"custom_id": "inner", "a": [1, [2, {"x": "}"}]]}, "custom_id": "c"` + cut, "c", ""},
		{"with an escaped key and value", `{"custom\u005fid": "d\u00e9\n\""` + cut, "d\u00e9\n\"", ""},
		{"matched regardless of case, as encoding/json matches it", `{"Custom_ID": "e"` + cut, "e", ""},
		{"the line's end is no matter", `{"custom_id": "f"}` + strings.Repeat(" ", 100), "f", ""},

		{"not the custom_id of a nested object", `{"body": {"custom_id": "inner", "content": "xxx`, "", "the bytes read end first"},
		{"cut inside the custom_id", `{"url": "/v1/embeddings", "custom_id": "abc`, "", "the bytes read end first"},
		{"cut before the custom_id's value", `{"custom_id":   `, "", "the bytes read end first"},
		{"cut in a number", `{"n": 12`, "", "the bytes read end first"},
		{"cut in an escape", `{"s": "\`, "", "the bytes read end first"},
		{"a number", `{"custom_id": 7, "body": {}` + cut, "", "its custom_id is not a string"},
		{"null", `{"custom_id": null` + cut, "", "its custom_id is not a string"},
		{"an object without one", `{"model": "m", "prompt": "p"}` + strings.Repeat("\t", 100), "", "it has no custom_id"},
		{"an empty object", `{}` + strings.Repeat(" ", 100), "", "it has no custom_id"},
		{"an array", `[{"custom_id": "a"}` + cut, "", "it is not a JSON object"},
		{"text", `custom_id: "a"`, "", "it is not a JSON object"},
		{"nothing but space", strings.Repeat(" ", 100), "", "it is not a JSON object"},
		{"a member without a colon", `{"custom_id" "a"` + cut, "", "it is not valid JSON"},
		{"members without a comma", `{"a": 1 "custom_id": "a"` + cut, "", "it is not valid JSON"},
		{"a key that is not a string", `{custom_id: "a"` + cut, "", "it is not valid JSON"},
		{"a bad escape in the key", `{"custom\qid": "a"` + cut, "", "it is not valid JSON"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := headCustomID([]byte(tt.head))
			switch {
			case tt.err == "" && (err != nil || got != tt.want):
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			case tt.err != "" && (err == nil || err.Error() != tt.err):
				t.Errorf("got %q, %v; want the error %q", got, err, tt.err)
			}
		})
	}
}

// FuzzHeadCustomID checks that headCustomID never panics and, given a whole
// line with one custom_id, finds what customID finds.
func FuzzHeadCustomID(f *testing.F) {
	for _, seed := range []string{
		chatLine("a", "x"), `{"model": "m", "prompt": "p", "custom_id": "late"}`, `{"a": [1, {"b": "}"}], "custom_id": "c"}`,
		`{"custom_id": 7}`, `{"custom_id": "a"`, `[]`, `{`, `{"a":}`, `{"a": 1 "custom_id": "b"}`, "\xEF\xBB\xBF" + chatLine("bom", "x"),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := headCustomID(line)
		want, ok := customID(line)
		// One custom_id and no escapes: the key cannot hide.
		single := bytes.Count(bytes.ToLower(line), []byte("custom")) == 1 && !bytes.ContainsAny(line, "\\\u212a\u017f")
		if ok && single && (err != nil || got != want) {
			t.Errorf("%q: got %q, %v; customID finds %q", line, got, err, want)
		}
	})
}

func TestLineOf(t *testing.T) {
	for _, tc := range []struct {
		id    string
		batch string
		line  int
		ok    bool
	}{
		{"tickets~000042", "tickets", 42, true},
		{"tickets~000001", "tickets", 1, true},
		{"a.b.c~000007", "a.b.c", 7, true},
		{"big~1234567", "big", 1234567, true},
		{"daily.20261127T231005.123456Z-7f3a9c~000003", "daily.20261127T231005.123456Z-7f3a9c", 3, true},
		{"tickets.000042", "", 0, false},            // a dot is a person's name
		{"tickets~00042", "", 0, false},             // five digits
		{"tickets~000000", "", 0, false},            // lines count from 1
		{"tickets~+00042", "", 0, false},            // a sign is not a digit
		{"tickets~-00042", "", 0, false},            // nor is a minus
		{"tickets~00004a", "", 0, false},            // not all digits
		{"tickets~0x0042", "", 0, false},            // not decimal
		{"tickets~ 00042", "", 0, false},            // no spaces
		{"~000042", "", 0, false},                   // no batch name
		{"tickets~", "", 0, false},                  // no number
		{"tickets", "", 0, false},                   // no separator
		{"000042", "", 0, false},                    // only a number
		{"", "", 0, false},                          // nothing
		{"t~99999999999999999999999", "", 0, false}, // overflows
		{"20261127T231005.123456Z-7f3a9c", "", 0, false},
	} {
		batch, line, ok := spool.LineOf(tc.id)
		if batch != tc.batch || line != tc.line || ok != tc.ok {
			t.Errorf("LineOf(%q) = %q, %d, %v, want %q, %d, %v", tc.id, batch, line, ok, tc.batch, tc.line, tc.ok)
		}
	}
}

func TestBatchLineIDs(t *testing.T) {
	for _, tc := range []struct {
		total int
		line  int
		want  string
	}{
		{1, 1, "b~000001"},
		{999_999, 42, "b~000042"},
		{1_000_000, 42, "b~0000042"},
		{12_345_678, 12_345_678, "b~12345678"},
	} {
		b := &Record{ID: "b", Total: tc.total}
		got := b.LineID(tc.line)
		if got != tc.want {
			t.Errorf("total %d: LineID(%d) = %q, want %q", tc.total, tc.line, got, tc.want)
		}
		if name, i, ok := spool.LineOf(got); name != "b" || i != tc.line || !ok {
			t.Errorf("LineOf(%q) = %q, %d, %v, want b, %d", got, name, i, ok, tc.line)
		}
		if !spool.ValidID(got) || spool.PlainID(got) {
			t.Errorf("%q: ValidID %v, PlainID %v, want a valid ID no person may give", got, spool.ValidID(got), spool.PlainID(got))
		}
	}
}

func TestSubmitBatch(t *testing.T) {
	body := jsonl(chatLine("a", "x"), chatLine("b", "y"))
	for _, fsync := range []bool{false, true} {
		t.Run(fmt.Sprintf("writes batches/NAME.json validating, then new/NAME.jsonl (fsync %v)", fsync), func(t *testing.T) {
			s := newSpool(t, func(o *spool.Options) { o.Fsync = fsync })
			meta := json.RawMessage(`{"project":"tickets"}`)
			b, err := s.b.Submit(strings.NewReader(body), Options{Name: "tickets", Priority: 5, Origin: spool.OriginHTTP,
				Endpoint: "/v1/chat/completions", CompletionWindow: "24h", Metadata: meta})
			if err != nil {
				t.Fatal(err)
			}
			if b.ID != "tickets" || b.State != Validating || b.Priority != 5 || b.CreatedAt.IsZero() {
				t.Errorf("got %+v", b)
			}
			if got := string(spooltest.Read(t, s, spool.DirNew, "tickets.jsonl")); got != body {
				t.Errorf("new/tickets.jsonl holds %q, want the batch as submitted", got)
			}
			var rec Record
			if err := json.Unmarshal(spooltest.Read(t, s, spool.DirBatches, "tickets.json"), &rec); err != nil {
				t.Fatal(err)
			}
			if rec.ID != "tickets" || rec.State != Validating || rec.Priority != 5 || rec.Origin != spool.OriginHTTP ||
				rec.Endpoint != "/v1/chat/completions" || rec.CompletionWindow != "24h" || !spooltest.JSONEqual(rec.Metadata, meta) || rec.Total != 0 {
				t.Errorf("batches/tickets.json: got %+v", rec)
			}
			spooltest.WantNames(t, s, spool.DirBatches, "tickets.json")
			spooltest.WantNames(t, s, spool.DirTmp)
		})
	}

	t.Run("gives a name in use a unique suffix", func(t *testing.T) {
		s := newSpool(t)
		first, err := s.b.Submit(strings.NewReader(body), Options{Name: "tickets"})
		if err != nil {
			t.Fatal(err)
		}
		second, err := s.b.Submit(strings.NewReader(body), Options{Name: "tickets"})
		if err != nil {
			t.Fatal(err)
		}
		if first.ID != "tickets" || !strings.HasPrefix(second.ID, "tickets.") || !ValidName(second.ID) {
			t.Errorf("got %q and %q, want tickets and tickets.<unique>", first.ID, second.ID)
		}
		spooltest.WantNames(t, s, spool.DirNew, second.ID+".jsonl", "tickets.jsonl")
	})

	t.Run("a name is in use while an earlier batch's output or first line holds it", func(t *testing.T) {
		for _, where := range []string{spool.DirDone + "/tickets.jsonl", spool.DirFailed + "/tickets~000001.json", spool.DirBatches + "/tickets.jsonl"} {
			s := newSpool(t)
			dir, name := filepath.Split(where)
			spooltest.Put(t, s, filepath.Clean(dir), name, []byte("{}\n"))
			b, err := s.b.Submit(strings.NewReader(body), Options{Name: "tickets"})
			if err != nil {
				t.Fatal(err)
			}
			if b.ID == "tickets" || !strings.HasPrefix(b.ID, "tickets.") {
				t.Errorf("with %s: got %q, want tickets.<unique>", where, b.ID)
			}
		}
	})

	t.Run("generates a name for an empty or invalid one", func(t *testing.T) {
		s := newSpool(t)
		for _, name := range []string{"", "two words", "../escape", ".hidden", strings.Repeat("n", 101)} {
			b, err := s.b.Submit(strings.NewReader(body), Options{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			if b.ID == name || !ValidName(b.ID) {
				t.Errorf("name %q: got %q, want a generated name", name, b.ID)
			}
			if _, err := os.Stat(filepath.Join(s.Path(), spool.DirNew, b.ID+".jsonl")); err != nil {
				t.Error(err)
			}
		}
		if got := len(spooltest.Names(t, s, spool.DirNew)); got != 5 {
			t.Errorf("%d batches in new/, want 5", got)
		}
	})

	refused := map[string]io.Reader{
		"an empty file":              strings.NewReader(""),
		"a file of blank lines":      strings.NewReader("\n\n"),
		"a repeated custom_id":       strings.NewReader(jsonl(chatLine("a", "x"), chatLine("a", "y"))),
		"a reader that fails midway": io.MultiReader(strings.NewReader(body), iotest.ErrReader(errors.New("connection reset"))),
	}
	for what, r := range refused {
		t.Run("refuses "+what+" and writes nothing", func(t *testing.T) {
			s := newSpool(t, func(o *spool.Options) { o.Fsync = true })
			b, err := s.b.Submit(r, Options{Name: "tickets"})
			if err == nil {
				t.Fatalf("got %+v, want an error", b)
			}
			if what != "a reader that fails midway" {
				wantBadInput(t, err)
			}
			spooltest.WantNames(t, s, spool.DirTmp)
			spooltest.WantNames(t, s, spool.DirNew)
			spooltest.WantNames(t, s, spool.DirBatches)
		})
	}
}

// A name in use gets a unique suffix (uniqueName: NAME.<generated ID>, up
// to 128 bytes), but a batch name must leave room for its line numbers.
// A submitter killed between the record and the input leaves a validating
// record with nothing to validate: after AbandonedAfter it fails, saying so.
func TestFailAbandonedBatches(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s := newSpool(t, func(o *spool.Options) { o.Now = func() time.Time { return now } })
	old := now.Add(-2 * AbandonedAfter)
	write := func(b *Record) {
		t.Helper()
		if err := s.b.Write(b, false); err != nil {
			t.Fatal(err)
		}
	}
	write(&Record{ID: "orphan", State: Validating, CreatedAt: old})
	write(&Record{ID: "fresh", State: Validating, CreatedAt: now.Add(-time.Second)})
	write(&Record{ID: "waiting", State: Validating, CreatedAt: old})
	spooltest.Put(t, s, spool.DirNew, "waiting.jsonl", []byte(jsonl(chatLine("a", "x"))))
	write(&Record{ID: "claimed", State: Validating, CreatedAt: old})
	spooltest.Put(t, s, spool.DirBatches, "claimed.jsonl", []byte(jsonl(chatLine("a", "x"))))
	write(&Record{ID: "ended", State: Completed, Total: 1, Done: 1, CreatedAt: old})

	got, err := s.b.FailAbandoned(now.Add(-AbandonedAfter))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "orphan" {
		t.Fatalf("failed %v, want only orphan", got)
	}
	b, err := s.b.Get("orphan")
	if err != nil {
		t.Fatal(err)
	}
	if b.State != Failed || b.FailedAt == nil || len(b.Errors) != 1 || b.Errors[0].Code != "input_missing" ||
		!strings.Contains(b.Errors[0].Message, "submit the file again") {
		t.Errorf("orphan: got %+v", b)
	}
	for _, name := range []string{"fresh", "waiting", "claimed"} {
		if b, err := s.b.Get(name); err != nil || b.State != Validating {
			t.Errorf("%s: got %+v, %v; want it left validating", name, b, err)
		}
	}
	if again, err := s.b.FailAbandoned(now.Add(-AbandonedAfter)); err != nil || len(again) != 0 {
		t.Errorf("second look: failed %v, %v; want none", again, err)
	}
}

// A cancel request for a batch that is gone (its file taken out of new/ by
// hand) or has ended is removed, so the next batch of that name runs.
func TestStaleBatchCancelRequestsAreRemoved(t *testing.T) {
	s := newSpool(t)
	spooltest.Put(t, s, spool.DirNew, "nightly.jsonl", []byte(jsonl(chatLine("a", "x"))))
	spooltest.Put(t, s, spool.DirNew, "waiting.jsonl", []byte(jsonl(chatLine("a", "x"))))
	for _, name := range []string{"nightly", "waiting"} {
		if _, err := s.b.Cancel(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(s.Path(), spool.DirNew, "nightly.jsonl")); err != nil {
		t.Fatal(err)
	}
	ended := claimBatch(t, s, "ended", chatBatch(1))
	expandAll(t, s, ended, 1000, false)
	endLine(t, s, "ended~000001", `{}`, nil)
	if err := s.b.Finish(ended, nil); err != nil {
		t.Fatal(err)
	}
	spooltest.Put(t, s, spool.DirBatches, "ended.cancel", []byte("late\n")) // written as it ended
	if _, err := s.b.FailAbandoned(time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	spooltest.WantNames(t, s, spool.DirBatches, "ended.cancel", "ended.json", "ended.jsonl", "nightly.cancel", "waiting.cancel") // not old enough yet
	if _, err := s.b.FailAbandoned(time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	spooltest.WantNames(t, s, spool.DirBatches, "ended.json", "ended.jsonl", "waiting.cancel")
}

func TestBatchNameInUseNearTheLengthLimit(t *testing.T) {
	body := jsonl(chatLine("a", "x"), chatLine("b", "y"))
	long := strings.Repeat("n", maxName) // the longest valid batch name

	t.Run("a submitted batch keeps its name and record when claimed", func(t *testing.T) {
		s := newSpool(t)
		var sub *Record
		for range 2 {
			var err error
			sub, err = s.b.Submit(strings.NewReader(body), Options{Name: long, Priority: 4})
			if err != nil {
				t.Fatal(err)
			}
		}
		b, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: sub.ID + ".jsonl"})
		if err != nil {
			t.Fatal(err)
		}
		if b.ID != sub.ID || b.Priority != 4 {
			orphan, _ := s.b.Get(sub.ID)
			t.Errorf("regression: Submit named the second batch %q (%d bytes, over maxName %d: create does not keep uniqueName's result "+
				"within it), so Claim, finding the name invalid, renamed the batch to %q (source %q) with a fresh record: "+
				"priority %d instead of 4, and batches/%s.json, the ID the submitter was given, stays %q for ever",
				sub.ID, len(sub.ID), maxName, b.ID, b.Source, b.Priority, sub.ID, orphan.State)
		}
	})

	t.Run("a batch file dropped again gets line IDs that are valid job IDs", func(t *testing.T) {
		s := newSpool(t)
		name := strings.Repeat("n", 95)
		claimBatch(t, s, name, body)
		b := claimBatch(t, s, name, body)
		_, put, _ := expand(t, s, b, 10, false)
		c := claim(t, s, put[0].Dir, put[0].Name)
		if line := b.LineID(1); !spool.ValidID(line) || c.Record.ID != line || c.BadInput != nil {
			t.Errorf("regression: Claim gave the second %d-byte batch the name %q (%d bytes: uniqueName's result is not kept within maxBatchName), "+
				"so its line %s (%d bytes) is not a valid job ID: Claim quarantined it as %q (bad input: %v), "+
				"and the runner, waiting for %s in done/ or failed/, never sees the line end",
				len(name), b.ID, len(b.ID), line, len(line), c.Record.ID, c.BadInput, line)
		}
	})
}

func TestClaimBatch(t *testing.T) {
	body := jsonl(chatLine("a", "x"), "", chatLine("b", "y"), chatLine("c", "z"))

	t.Run("adopts the submitter's record, priority kept", func(t *testing.T) {
		s := newSpool(t)
		sub, err := s.b.Submit(strings.NewReader(body), Options{Name: "tickets", Priority: 7, Origin: spool.OriginHTTP, CompletionWindow: "24h"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: "tickets.jsonl", Arrived: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if b.ID != "tickets" || b.State != InProgress || b.Total != 3 || b.Priority != 7 || b.Origin != spool.OriginHTTP ||
			b.CompletionWindow != "24h" || b.Source != "" || b.InProgressAt == nil || !b.CreatedAt.Equal(sub.CreatedAt) {
			t.Errorf("got %+v", b)
		}
		if b.Input != "batches/tickets.jsonl" || b.Expanded != 0 || b.Offset != 0 {
			t.Errorf("got input %q, expanded %d, offset %d", b.Input, b.Expanded, b.Offset)
		}
		spooltest.WantNames(t, s, spool.DirNew)
		spooltest.WantNames(t, s, spool.DirBatches, "tickets.json", "tickets.jsonl")
		onDisk, err := s.b.Get("tickets")
		if err != nil || onDisk.State != InProgress || onDisk.Priority != 7 || onDisk.Total != 3 {
			t.Errorf("batches/tickets.json: got %+v, %v", onDisk, err)
		}
	})

	t.Run("gives a dropped file a fresh record", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, spool.DirNew, "daily.jsonl", []byte(body))
		arrived := time.Date(2026, 11, 27, 23, 0, 0, 0, time.UTC)
		b, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: "daily.jsonl", Arrived: arrived})
		if err != nil {
			t.Fatal(err)
		}
		if b.ID != "daily" || b.State != InProgress || b.Total != 3 || b.Priority != 0 || b.Source != "" || !b.CreatedAt.Equal(arrived) {
			t.Errorf("got %+v", b)
		}
		spooltest.WantNames(t, s, spool.DirBatches, "daily.json", "daily.jsonl")
	})

	t.Run("gives a dropped file whose name is not an ID a generated name, keeping the name as source", func(t *testing.T) {
		for _, name := range []string{"my tickets.jsonl", "-dash.jsonl", strings.Repeat("n", maxName+1) + ".jsonl"} {
			s := newSpool(t)
			spooltest.Put(t, s, spool.DirNew, name, []byte(body))
			b, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: name})
			if err != nil {
				t.Fatal(err)
			}
			if !ValidName(b.ID) || b.Source != name || b.State != InProgress || b.Total != 3 {
				t.Errorf("%q: got %+v", name, b)
			}
			spooltest.WantNames(t, s, spool.DirBatches, b.ID+".json", b.ID+".jsonl")
			spooltest.WantNames(t, s, spool.DirNew)
		}
	})

	t.Run("gives a name dropped again a unique suffix", func(t *testing.T) {
		s := newSpool(t)
		first := claimBatch(t, s, "daily", body)
		second := claimBatch(t, s, "daily", body)
		if first.ID != "daily" || !strings.HasPrefix(second.ID, "daily.") || second.Source != "daily.jsonl" {
			t.Errorf("got %q and %q (source %q), want daily and daily.<unique> from daily.jsonl", first.ID, second.ID, second.Source)
		}
		if _, err := s.b.Get("daily"); err != nil {
			t.Error(err)
		}
		spooltest.WantNames(t, s, spool.DirBatches, second.ID+".json", second.ID+".jsonl", "daily.json", "daily.jsonl")
	})

	t.Run("refuses a batch with a repeated custom_id as a whole", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "dups", jsonl(chatLine("a", "x"), chatLine("a", "y")))
		if b.State != Failed || b.FailedAt == nil || len(b.Errors) != 1 || b.Errors[0].Code != "duplicate_custom_id" || b.Errors[0].Line != 2 {
			t.Errorf("got %+v", b)
		}
		onDisk, err := s.b.Get("dups")
		if err != nil || onDisk.State != Failed || len(onDisk.Errors) != 1 {
			t.Errorf("batches/dups.json: got %+v, %v", onDisk, err)
		}
		spooltest.WantNames(t, s, spool.DirNew)
	})

	t.Run("a batch file someone else took is gone", func(t *testing.T) {
		s := newSpool(t)
		_, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: "nobody.jsonl"})
		if !errors.Is(err, spool.ErrGone) {
			t.Errorf("got %v, want ErrGone", err)
		}
		spooltest.WantNames(t, s, spool.DirBatches)
	})
}

func TestExpandBatch(t *testing.T) {
	t.Run("turns OpenAI lines into jobs for their endpoints", func(t *testing.T) {
		s := newSpool(t)
		sub, err := s.b.Submit(strings.NewReader(jsonl(
			chatLine("chat-1", "hi"),
			`{"custom_id": "emb-1", "method": "POST", "url": "/v1/embeddings", "body": {"model": "nomic-embed-text", "input": "hello"}}`,
			`{"custom_id": "cmp-1", "url": "/v1/completions", "body": {"model": "llama3.2", "prompt": "Once", "max_tokens": 7, "stream": true}}`,
		)), Options{Name: "mixed", Priority: 3})
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: sub.ID + ".jsonl"})
		if err != nil {
			t.Fatal(err)
		}
		n, put, bad := expand(t, s, b, 100, false)
		if n != 3 || len(bad) != 0 || b.Expanded != 3 {
			t.Fatalf("handled %d, bad %v, expanded %d", n, bad, b.Expanded)
		}
		for i, want := range []struct {
			endpoint             spool.Endpoint
			custom, model, field string
		}{
			{"openai.chat", "chat-1", "llama3.2", "messages"},
			{"openai.embeddings", "emb-1", "nomic-embed-text", "input"},
			{"openai.completions", "cmp-1", "llama3.2", "prompt"},
		} {
			id := b.LineID(i + 1)
			j, err := spool.ParseJob(spooltest.Read(t, s, spool.DirNew, id+".json"), 0)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			if j.Endpoint != want.endpoint || lineCustom(t, s, id) != want.custom || j.Batch != "mixed" || j.Priority != 3 || j.Model != want.model {
				t.Errorf("%s: got endpoint %q custom_id %q batch %q priority %d model %q", id, j.Endpoint, lineCustom(t, s, id), j.Batch, j.Priority, j.Model)
			}
			if j.Body[want.field] == nil {
				t.Errorf("%s: the body lost %q: %s", id, want.field, spooltest.Read(t, s, spool.DirNew, id+".json"))
			}
			for _, k := range []string{"url", "method", "body"} {
				if j.Body[k] != nil {
					t.Errorf("%s: the line's %q reached the request", id, k)
				}
			}
			e := put[i]
			if e.Dir != spool.DirNew || e.Name != id+".json" || e.Model != want.model || e.Priority != 3 || e.Bad || e.Arrived.IsZero() {
				t.Errorf("entry %d: got %+v", i, e)
			}
		}
		if got := string(spooltest.Read(t, s, spool.DirNew, b.LineID(3)+".json")); !strings.Contains(got, `"max_tokens":7`) {
			t.Errorf("completions job lost its max_tokens: %s", got)
		}
	})

	t.Run("keeps a hopper line's fields, with the batch's name and priority", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, spool.DirBatches, "h.json", []byte(`{"id": "h", "state": "validating", "priority": 9, "created_at": "2026-11-27T23:00:00Z"}`))
		b := claimBatch(t, s, "h", jsonl(
			`{"custom_id": "one", "model": "llama3.2", "prompt": "why?", "options": {"temperature": 0.1}, "meta": {"ticket": 42}, "webhook": "https://example.com/hook", "max_attempts": 2, "timeout": "1m", "priority": 1, "batch": "other"}`,
			`{"function": "summarize", "vars": {"text": "<b>&</b>"}}`,
		))
		if b.Priority != 9 {
			t.Fatalf("got priority %d, want the record's 9", b.Priority)
		}
		_, put, bad := expand(t, s, b, 100, false)
		if len(put) != 2 || len(bad) != 0 {
			t.Fatalf("put %d, bad %v", len(put), bad)
		}
		j, err := spool.ParseJob(spooltest.Read(t, s, spool.DirNew, "h~000001.json"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if j.Endpoint != "generate" || lineCustom(t, s, "h~000001") != "one" || j.Batch != "h" || j.Priority != 9 || j.Webhook != "https://example.com/hook" ||
			j.MaxAttempts != 2 || j.Timeout != time.Minute || !spooltest.JSONEqual(j.Meta, []byte(`{"ticket":42}`)) || !spooltest.JSONEqual(j.Body["options"], []byte(`{"temperature":0.1}`)) {
			t.Errorf("got %+v", j)
		}
		fn := spooltest.Read(t, s, spool.DirNew, "h~000002.json")
		j, err = spool.ParseJob(fn, 0)
		if err != nil || j.Function != "summarize" || j.Batch != "h" || lineCustom(t, s, "h~000002") != "" {
			t.Errorf("function line: got %+v, %v", j, err)
		}
		if !bytes.Contains(fn, []byte(`"<b>&</b>"`)) {
			t.Errorf("function line's vars were re-escaped: %s", fn)
		}
	})

	t.Run("fails a line that cannot run, keeping its bytes", func(t *testing.T) {
		cases := []struct {
			what, line string
			want       []string
			raw        bool // kept as job_raw, not job
		}{
			{"malformed JSON", `{"custom_id": "m", "model": `, []string{"not valid JSON"}, true},
			{"not an object", `[1, 2]`, []string{"JSON object"}, false},
			{"null", `null`, []string{"JSON object", "null"}, false},
			{"a custom_id that is not a string", `{"custom_id": 7, "model": "m", "prompt": "x"}`, []string{`"custom_id" must be a string`}, false},
			{"a url not served", `{"custom_id": "u", "method": "POST", "url": "/v1/images/generations", "body": {"model": "m", "prompt": "x"}}`,
				[]string{`"/v1/images/generations" is not served`, "/v1/chat/completions", "/v1/embeddings", "/v1/completions"}, false},
			{"a method other than POST", `{"custom_id": "g", "method": "GET", "url": "/v1/chat/completions", "body": {"model": "m", "messages": []}}`,
				[]string{`"method" must be "POST"`}, false},
			{"no custom_id", `{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": []}}`,
				[]string{`needs a "custom_id"`}, false},
			{"no body", `{"custom_id": "nb", "method": "POST", "url": "/v1/chat/completions"}`, []string{`"body" must be a JSON object`}, false},
			{"a body that sets priority", `{"custom_id": "p", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [], "priority": 100}}`,
				[]string{`may not set "priority"`, "hopper"}, false},
			{"a body that sets a webhook", `{"custom_id": "w", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [], "webhook": "http://10.0.0.1/"}}`,
				[]string{`may not set "webhook"`}, false},
			{"a hopper line with no model", `{"prompt": "x"}`, []string{`"model" is required`}, false},
			{"an unknown endpoint", `{"endpoint": "images", "model": "m", "prompt": "x"}`, []string{`unknown endpoint "images"`}, false},
		}
		var body []string
		for _, c := range cases {
			body = append(body, chatLine("ok-"+c.what, "fine"), c.line)
		}
		s := newSpool(t)
		b := claimBatch(t, s, "bad", jsonl(body...))
		put, bad := expandAll(t, s, b, 1000, false)
		if len(put) != len(cases) {
			t.Errorf("queued %d lines, want %d", len(put), len(cases))
		}
		var wantBad []int
		for i := range cases {
			wantBad = append(wantBad, 2*i+2)
		}
		if !slices.Equal(bad, wantBad) {
			t.Errorf("failed lines %v, want %v", bad, wantBad)
		}
		for i, c := range cases {
			line := 2*i + 2
			id := b.LineID(line)
			if _, err := os.Stat(filepath.Join(s.Path(), spool.DirNew, id+".json")); err == nil {
				t.Errorf("%s: queued as a job", c.what)
			}
			r := readRec(t, s, spool.DirFailed, id+".json")
			if r.ID != id || r.State != spool.StateFailed || r.Error == nil || r.Error.Kind != spool.KindBadInput || r.FinishedAt == nil {
				t.Errorf("%s: got %+v", c.what, r)
				continue
			}
			for _, w := range append(c.want, fmt.Sprintf("request %d of batch bad", line)) {
				if !strings.Contains(r.Error.Message, w) {
					t.Errorf("%s: message %q does not say %q", c.what, r.Error.Message, w)
				}
			}
			switch {
			case c.raw && (r.JobRaw == nil || *r.JobRaw != c.line || r.Job != nil):
				t.Errorf("%s: job_raw %q, job %s, want the line verbatim in job_raw", c.what, spooltest.Deref(r.JobRaw), r.Job)
			case !c.raw && (!spooltest.JSONEqual(r.Job, []byte(c.line)) || r.JobRaw != nil):
				t.Errorf("%s: job %s, want the line", c.what, r.Job)
			}
		}
	})

	t.Run("fails a line over the size limit without holding it", func(t *testing.T) {
		s := newSpool(t, func(o *spool.Options) { o.MaxJobSize = 1024 })
		long := `{"custom_id": "long", "model": "m", "prompt": "` + strings.Repeat("x", 4096) + `"}`
		b := claimBatch(t, s, "big", jsonl(chatLine("a", "x"), long, chatLine("b", "y")))
		if b.Total != 3 {
			t.Fatalf("got %d lines, want 3", b.Total)
		}
		put, bad := expandAll(t, s, b, 1000, false)
		if len(put) != 2 || !slices.Equal(bad, []int{2}) {
			t.Fatalf("put %d, bad %v", len(put), bad)
		}
		r := readRec(t, s, spool.DirFailed, "big~000002.json")
		if r.Error == nil || r.Error.Kind != spool.KindBadInput || !strings.Contains(r.Error.Message, "over the limit of 1024 bytes") ||
			!strings.Contains(r.Error.Message, "request 2 of batch big") {
			t.Errorf("got error %+v", r.Error)
		}
		t.Run("and says where its bytes are", func(t *testing.T) {
			if r.JobRaw != nil && *r.JobRaw == "" && r.Job == nil && r.JobFile == "" {
				t.Error(`regression: failLine is given a nil line for a line over max_job_size and writes "job_raw": "" — the record says the job was empty. ` +
					"The bytes are still in batches/NAME.jsonl, but the record should say so (e.g. name the input and line, or omit job_raw) rather than claim an empty job")
			}
		})
	})

	t.Run("a job a line becomes that is over the size limit fails", func(t *testing.T) {
		// The line fits; the job with "batch" and "priority" added
		// does not.
		s := newSpool(t, func(o *spool.Options) { o.MaxJobSize = 200 })
		line := `{"model": "m", "prompt": "` + strings.Repeat("x", 200-len(`{"model": "m", "prompt": ""}`)) + `"}`
		b := claimBatch(t, s, "edge", jsonl(line))
		_, bad := expandAll(t, s, b, 1000, false)
		if !slices.Equal(bad, []int{1}) {
			t.Fatalf("bad %v, want line 1", bad)
		}
		r := readRec(t, s, spool.DirFailed, "edge~000001.json")
		if !strings.Contains(r.Error.Message, "over the limit of 200 bytes") || !spooltest.JSONEqual(r.Job, []byte(line)) {
			t.Errorf("got %+v, job %s", r.Error, r.Job)
		}
	})

	t.Run("queues a chunk at a time, resuming from the offset", func(t *testing.T) {
		s := newSpool(t)
		var body strings.Builder
		for i := 1; i <= 10; i++ {
			body.WriteString(chatLine(fmt.Sprintf("r%d", i), "q") + "\r\n")
			if i%4 == 0 {
				body.WriteString("\r\n") // blank lines in between
			}
		}
		b := claimBatch(t, s, "chunks", body.String())
		if b.Total != 10 {
			t.Fatalf("got %d lines", b.Total)
		}
		var ids []string
		var offsets []int64
		for _, want := range []int{3, 3, 3, 1} {
			n, put, _ := expand(t, s, b, 3, false)
			if n != want || len(put) != want {
				t.Fatalf("handled %d, put %d, want %d", n, len(put), want)
			}
			for _, e := range put {
				ids = append(ids, strings.TrimSuffix(e.Name, ".json"))
			}
			offsets = append(offsets, b.Offset)
			// The record on disk says how far it got, so a restart
			// resumes there.
			onDisk, err := s.b.Get("chunks")
			if err != nil || onDisk.Expanded != b.Expanded || onDisk.Offset != b.Offset {
				t.Fatalf("record: got %+v, %v, want expanded %d offset %d", onDisk, err, b.Expanded, b.Offset)
			}
			b = onDisk
		}
		var want []string
		for i := 1; i <= 10; i++ {
			want = append(want, fmt.Sprintf("chunks~%06d", i))
		}
		if !slices.Equal(ids, want) {
			t.Errorf("got %v, want %v", ids, want)
		}
		for i, id := range want {
			_, err := spool.ParseJob(spooltest.Read(t, s, spool.DirNew, id+".json"), 0)
			if err != nil || lineCustom(t, s, id) != fmt.Sprintf("r%d", i+1) {
				t.Errorf("%s: got custom_id %q, %v, want r%d", id, lineCustom(t, s, id), err, i+1)
			}
		}
		input := spooltest.Read(t, s, spool.DirBatches, "chunks.jsonl")
		// After line 3, 6 and 9 (the blank line after line 4 and 8
		// belongs to the next chunk), then past the last line.
		lineEnd := func(n int) int64 {
			off := 0
			for range n {
				off += bytes.Index(input[off:], []byte(`"r`)) // the line's start
				off += bytes.Index(input[off:], []byte("\r\n")) + 2
			}
			return int64(off)
		}
		if wantOff := []int64{lineEnd(3), lineEnd(6), lineEnd(9), lineEnd(10)}; !slices.Equal(offsets, wantOff) {
			t.Errorf("got offsets %v, want %v", offsets, wantOff)
		}
		if n, put, _ := expand(t, s, b, 3, false); n != 0 || len(put) != 0 {
			t.Errorf("a fully queued batch queued %d more", n)
		}
	})

	t.Run("with check, skips lines whose jobs exist already", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "crash", jsonl(chatLine("1", "a"), `{broken`, chatLine("3", "c"), chatLine("4", "d"), chatLine("5", "e"), chatLine("6", "f")))
		_, _, bad := expand(t, s, b, 4, false)
		if !slices.Equal(bad, []int{2}) {
			t.Fatalf("bad %v", bad)
		}
		// Line 1 ran and ended, line 3 is running, line 4 is still
		// queued; then hopper crashed before the record said how far
		// the chunk got.
		endLine(t, s, "crash~000001", `{"choices": []}`, nil)
		claim(t, s, spool.DirNew, "crash~000003.json")
		before := spooltest.Read(t, s, spool.DirDone, "crash~000001.json")
		b.Expanded, b.Offset = 0, 0
		put, bad := expandAll(t, s, b, 1000, true)
		var got []string
		for _, e := range put {
			got = append(got, e.Name)
		}
		if !slices.Equal(got, []string{"crash~000005.json", "crash~000006.json"}) || len(bad) != 0 {
			t.Errorf("queued %v, failed %v, want lines 5 and 6 only", got, bad)
		}
		spooltest.WantNames(t, s, spool.DirNew, "crash~000004.json", "crash~000005.json", "crash~000006.json")
		spooltest.WantNames(t, s, spool.DirCur, "crash~000003.json")
		spooltest.WantNames(t, s, spool.DirDone, "crash~000001.json")
		spooltest.WantNames(t, s, spool.DirFailed, "crash~000002.json")
		if !bytes.Equal(spooltest.Read(t, s, spool.DirDone, "crash~000001.json"), before) {
			t.Error("the done record was rewritten")
		}
		if b.Expanded != 6 {
			t.Errorf("expanded %d, want 6", b.Expanded)
		}
	})

	t.Run("line IDs keep their width when a batch of a million lines loses one", func(t *testing.T) {
		// A batch counted at 1,000,000 lines has 7-digit line IDs. If
		// its input lost lines since (Expand then lowers Total),
		// the IDs must not change under the lines already queued.
		s := newSpool(t)
		spooltest.Put(t, s, spool.DirBatches, "m.jsonl", []byte(chatLine("last", "x")+"\n"))
		// Digits as Validate fixed them when it counted the lines.
		b := &Record{ID: "m", State: InProgress, Total: 1_000_000, Digits: 7, Expanded: 999_998, Input: spool.DirBatches + "/m.jsonl"}
		_, put, _ := expand(t, s, b, 10, false)
		if len(put) != 1 {
			t.Fatalf("put %d", len(put))
		}
		written := strings.TrimSuffix(put[0].Name, ".json")
		if b.Total != 999_999 {
			t.Fatalf("total %d", b.Total)
		}
		if now := b.LineID(999_999); now != written {
			t.Errorf("regression: line 999999 was queued as %s, but with Total lowered to 999999 LineID(999999) is now %s: Width() follows Total, "+
				"so the runner (LineEnded, Ended) and Finish look for the lines under other names and report them missing. "+
				"Contrived (a batch of 1,000,000 lines truncated after it was counted) but the IDs should be fixed at validation", written, now)
		}
	})

	t.Run("without check, a line whose job is queued already is left to it, not duplicated", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "twice", jsonl(chatLine("1", "a")))
		expandAll(t, s, b, 1000, false)
		b.Expanded, b.Offset = 0, 0
		var put []spool.Entry
		if _, err := s.b.Expand(b, 1000, false, func(e spool.Entry) { put = append(put, e) }, func(int) {}); err != nil || len(put) != 0 || b.Expanded != 1 {
			t.Errorf("err %v, put %v, expanded %d; want the queued job to stand for the line", err, put, b.Expanded)
		}
		spooltest.WantNames(t, s, spool.DirNew, "twice~000001.json")
	})

	t.Run("a batch that lost lines since it was counted ends at the last one", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "cut", chatBatch(5))
		input := filepath.Join(s.Path(), spool.DirBatches, "cut.jsonl")
		data := spooltest.Read(t, s, spool.DirBatches, "cut.jsonl")
		// Three whole lines and half of the fourth, as a truncation
		// would leave them.
		cut := bytes.Index(data, []byte(chatLine("req-4", "question 4"))) + 40
		if err := os.Truncate(input, int64(cut)); err != nil {
			t.Fatal(err)
		}
		put, bad := expandAll(t, s, b, 1000, false)
		if b.Total != 4 || b.Expanded != 4 || len(put) != 3 || !slices.Equal(bad, []int{4}) {
			t.Errorf("total %d, expanded %d, put %d, bad %v; want 4 lines, the cut one failed", b.Total, b.Expanded, len(put), bad)
		}
		if err := os.Truncate(input, int64(bytes.Index(data, []byte(chatLine("req-3", "question 3"))))); err != nil {
			t.Fatal(err)
		}
		b2 := &Record{ID: "cut2", State: InProgress, Total: 5, Input: b.Input}
		if put, _ := expandAll(t, s, b2, 1000, false); b2.Total != 2 || len(put) != 2 {
			t.Errorf("total %d, put %d, want 2 and 2", b2.Total, len(put))
		}
	})
}

func TestFinishBatch(t *testing.T) {
	answer := func(s string) string {
		return `{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "` + s + `"}, "finish_reason": "stop"}]}`
	}

	t.Run("writes every line's answer in input order, and the failed ones apart", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "out", jsonl(
			chatLine("a", "1"),
			`{"custom_id": "b", "model": `,
			"",
			chatLine("c", "3"),
			chatLine("d", "4"),
			`{"model": "m", "prompt": "no custom_id"}`,
			chatLine("f", "6 <&>"),
		))
		expandAll(t, s, b, 2, false)
		// Lines end out of order; the output is in input order.
		endLine(t, s, "out~000006", `{"model": "m", "response": "ok", "done": true}`, nil)
		endLine(t, s, "out~000004", "", &spool.JobError{Kind: spool.KindTarget, Status: 404, Message: `model "llama3.2" not found`})
		endLine(t, s, "out~000001", answer("one"), nil)
		endLine(t, s, "out~000003", "", &spool.JobError{Kind: spool.KindTimeout, Message: "over 30m"})
		endLine(t, s, "out~000005", answer("<&>"), nil)
		calls := 0
		if err := s.b.Finish(b, func() {
			calls++
			if _, err := os.Stat(filepath.Join(s.Path(), spool.DirDone, "out.jsonl")); err != nil {
				t.Errorf("recorded called before the output was in place: %v", err)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if calls != 1 {
			t.Errorf("recorded called %d times, want once", calls)
		}
		if b.State != Completed || b.CompletedAt == nil || b.FinalizingAt == nil || b.Done != 3 || b.Failed != 3 ||
			b.Output != "done/out.jsonl" || b.ErrorsFile != "failed/out.errors.jsonl" {
			t.Errorf("got %+v", b)
		}
		onDisk, err := s.b.Get("out")
		if err != nil || onDisk.State != Completed || onDisk.Done != 3 || onDisk.Failed != 3 || onDisk.Output != b.Output {
			t.Errorf("batches/out.json: got %+v, %v", onDisk, err)
		}
		out := readOutput(t, s, b.Output)
		if len(out) != 6 {
			t.Fatalf("got %d output lines, want 6", len(out))
		}
		type want struct {
			custom string // "-" for null
			status int    // 0: no response
			code   string // error code in the body or the error
		}
		for i, w := range []want{
			{"a", 200, ""},
			{"-", 400, "bad_input"},
			{"c", 504, "timeout"},
			{"d", 404, "target"},
			{"-", 200, ""},
			{"f", 200, ""},
		} {
			l := out[i]
			id := b.LineID(i + 1)
			custom := "-"
			if l.CustomID != nil {
				custom = *l.CustomID
			}
			if l.ID != id || custom != w.custom || l.Response == nil || l.Response.StatusCode != w.status || l.Response.RequestID != id || l.Error != nil {
				t.Errorf("line %d: got %+v %+v", i+1, l, l.Response)
				continue
			}
			if w.code != "" {
				var body struct {
					Error struct{ Message, Type, Code string }
				}
				if err := json.Unmarshal(l.Response.Body, &body); err != nil || body.Error.Code != w.code || body.Error.Message == "" {
					t.Errorf("line %d: body %s, want error code %q", i+1, l.Response.Body, w.code)
				}
			}
		}
		if !spooltest.JSONEqual(out[0].Response.Body, []byte(answer("one"))) {
			t.Errorf("line 1: body %s, want the target's answer", out[0].Response.Body)
		}
		if raw := spooltest.Read(t, s, spool.DirDone, "out.jsonl"); !bytes.Contains(raw, []byte(`"content":"<&>"`)) {
			t.Errorf("the answers were re-escaped: %s", raw)
		}
		errs := readOutput(t, s, b.ErrorsFile)
		var got []string
		for _, l := range errs {
			got = append(got, l.ID)
		}
		if !slices.Equal(got, []string{"out~000002", "out~000003", "out~000004"}) {
			t.Errorf("errors file holds %v", got)
		}
		spooltest.WantNames(t, s, spool.DirTmp)
	})

	t.Run("writes no errors file when nothing failed", func(t *testing.T) {
		s := newSpool(t, func(o *spool.Options) { o.Fsync = true })
		b := claimBatch(t, s, "clean", chatBatch(3))
		expandAll(t, s, b, 1000, false)
		for i := 1; i <= 3; i++ {
			endLine(t, s, b.LineID(i), answer("x"), nil)
		}
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		if b.State != Completed || b.Done != 3 || b.Failed != 0 || b.ErrorsFile != "" {
			t.Errorf("got %+v", b)
		}
		if _, err := os.Stat(filepath.Join(s.Path(), spool.DirFailed, "clean.errors.jsonl")); err == nil {
			t.Error("failed/clean.errors.jsonl written")
		}
		out := readOutput(t, s, b.Output)
		for i, l := range out {
			if want := fmt.Sprintf("req-%d", i+1); l.CustomID == nil || *l.CustomID != want || l.Failed() {
				t.Errorf("line %d: got %+v", i+1, l)
			}
		}
		spooltest.WantNames(t, s, spool.DirTmp)
	})

	t.Run("a function line answers as POST /functions/NAME does: output beside response", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "fn", jsonl(
			`{"custom_id": "ada", "function": "extract", "vars": {"text": "Ada, ada@example.com"}}`,
			`{"custom_id": "free", "function": "summarize", "vars": {"text": "x"}}`,
		))
		expandAll(t, s, b, 1000, false)
		for i, output := range []string{`{"name": "Ada", "email": "ada@example.com"}`, ""} {
			c := claim(t, s, spool.DirNew, b.LineID(i+1)+".json")
			c.Record.Function, c.Record.Output = "extract", json.RawMessage(output)
			c.Record.Response = json.RawMessage(`{"model": "m", "message": {"role": "assistant", "content": "…"}, "done": true}`)
			finish(t, s, c.Record, spool.StateDone, nil)
		}
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		out := readOutput(t, s, b.Output)
		var withSchema, without struct {
			ID       string          `json:"id"`
			Output   json.RawMessage `json:"output"`
			Response struct {
				Done bool `json:"done"`
			} `json:"response"`
		}
		if err := json.Unmarshal(out[0].Response.Body, &withSchema); err != nil || withSchema.ID != "fn~000001" ||
			!spooltest.JSONEqual(withSchema.Output, json.RawMessage(`{"name": "Ada", "email": "ada@example.com"}`)) || !withSchema.Response.Done {
			t.Errorf("line 1 body %s: %+v, %v", out[0].Response.Body, withSchema, err)
		}
		if err := json.Unmarshal(out[1].Response.Body, &without); err != nil || without.ID != "fn~000002" || without.Output != nil || !without.Response.Done {
			t.Errorf("line 2 body %s: %+v, %v", out[1].Response.Body, without, err)
		}
	})

	t.Run("a canceled batch says which lines never ran", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "stop", chatBatch(6))
		expand(t, s, b, 3, false)
		endLine(t, s, "stop~000001", answer("x"), nil)
		endLine(t, s, "stop~000002", "", &spool.JobError{Kind: spool.KindCanceled, Message: "the batch was canceled"})
		if got, err := s.CancelQueued([]string{"stop~000003", "stop~000004"}, "the batch was canceled"); err != nil || len(got) != 1 || got[0] != "stop~000003" {
			t.Fatalf("CancelQueuedLines: %v, %v; want stop~000003 (stop~000004 was never queued)", got, err)
		}
		if r := readRec(t, s, spool.DirFailed, "stop~000003.json"); r.Error == nil || r.Error.Kind != spool.KindCanceled || len(r.Job) == 0 {
			t.Errorf("canceled line record: %+v", r)
		}
		if got, _ := s.CancelQueued([]string{"stop~000003"}, "again"); len(got) != 0 {
			t.Errorf("canceled stop~000003 twice")
		}
		if _, err := s.b.Cancel("stop"); err != nil {
			t.Fatal(err)
		}
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		if b.State != Cancelled || b.CancelledAt == nil || b.CancellingAt == nil || b.Done != 1 || b.Failed != 5 {
			t.Errorf("got %+v", b)
		}
		out := readOutput(t, s, b.Output)
		if len(out) != 6 {
			t.Fatalf("got %d output lines, want 6", len(out))
		}
		if out[0].Response == nil || out[0].Response.StatusCode != 200 {
			t.Errorf("line 1: got %+v", out[0])
		}
		for i := 1; i < 6; i++ {
			l := out[i]
			if l.ID != b.LineID(i+1) || l.Response != nil || l.Error == nil || l.Error.Code != "batch_cancelled" || l.Error.Message == "" ||
				l.CustomID == nil || *l.CustomID != fmt.Sprintf("req-%d", i+1) {
				t.Errorf("line %d: got %+v %+v", i+1, l, l.Error)
			}
		}
		if s.b.CancelRequested("stop") {
			t.Error("batches/stop.cancel left behind")
		}
		if got, err := s.b.Get("stop"); err != nil || got.State != Cancelled {
			t.Errorf("Get: %+v, %v", got, err)
		}
	})

	t.Run("a line with no final record says where it is", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "gap", chatBatch(2))
		expandAll(t, s, b, 1000, false)
		endLine(t, s, "gap~000002", answer("x"), nil)
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		out := readOutput(t, s, b.Output)
		if out[0].Error == nil || out[0].Error.Code != "missing" || !strings.Contains(out[0].Error.Message, "new/") {
			t.Errorf("line 1: got %+v", out[0].Error)
		}
		if b.Done != 1 || b.Failed != 1 {
			t.Errorf("got done %d failed %d", b.Done, b.Failed)
		}
	})

	t.Run("keeps the custom_id of a line over the size limit, found in its head", func(t *testing.T) {
		// Issue #16: the error output of a line too long to read had
		// "custom_id": null, so a client could not tell which request
		// failed. The limit is smaller than the read buffer here, and the
		// lines are longer than it, so a head spans several reads.
		const limit = 300 << 10
		s := newSpool(t, func(o *spool.Options) { o.MaxJobSize = limit })
		huge := strings.Repeat("x", 1<<20)
		first := chatLine("long-1", huge)
		// The custom_id comes after a body larger than the limit: it is
		// not in what was read.
		late := `{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": [{"role": "user", "content": "` + huge + `"}]}, "custom_id": "late"}`
		b := claimBatch(t, s, "huge", jsonl(chatLine("a", "x"), first, late))
		_, bad := expandAll(t, s, b, 1000, false)
		if !slices.Equal(bad, []int{2, 3}) {
			t.Fatalf("failed lines %v, want 2 and 3", bad)
		}
		endLine(t, s, "huge~000001", answer("one"), nil)
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		errs := readOutput(t, s, b.ErrorsFile)
		if len(errs) != 2 {
			t.Fatalf("got %d error lines, want 2", len(errs))
		}
		message := func(l openai.BatchOutputLine) string {
			var body struct {
				Error struct{ Message, Code string }
			}
			if l.Response == nil || l.Response.StatusCode != 400 || json.Unmarshal(l.Response.Body, &body) != nil || body.Error.Code != "bad_input" {
				t.Errorf("%s: got %+v, want a 400 bad_input answer", l.ID, l.Response)
			}
			return body.Error.Message
		}
		if l := errs[0]; l.ID != "huge~000002" || l.CustomID == nil || *l.CustomID != "long-1" {
			t.Errorf("regression: the error line of request 2, over max_job_size, has id %s and custom_id %s, want long-1 from the line's head", l.ID, spooltest.Deref(l.CustomID))
		} else if m := message(l); !strings.Contains(m, fmt.Sprintf("over the limit of %d bytes (max_job_size)", limit)) || !strings.Contains(m, `custom_id "long-1"`) {
			t.Errorf("request 2: message %q, want it to say the line (custom_id \"long-1\") is over the limit", m)
		}
		if l := errs[1]; l.ID != "huge~000003" || l.CustomID != nil {
			t.Errorf("request 3: got id %s custom_id %s, want no custom_id: it is past the limit", l.ID, spooltest.Deref(l.CustomID))
		} else if m := message(l); !strings.Contains(m, fmt.Sprintf("its custom_id is not within its first %d bytes", limit)) {
			t.Errorf("request 3: message %q, want it to say the custom_id is not within the bytes read", m)
		}
		if r := readRec(t, s, spool.DirFailed, "huge~000002.json"); !strings.Contains(r.Error.Message, `custom_id "long-1"`) {
			t.Errorf("failed/huge~000002.json: message %q does not name the custom_id", r.Error.Message)
		}
	})

	t.Run("keeps the custom_id of a first line after a byte order mark", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "bom", "\xEF\xBB\xBF"+chatBatch(2))
		_, bad := expandAll(t, s, b, 1000, false)
		if len(bad) != 0 {
			t.Fatalf("lines %v failed", bad)
		}
		if j, err := spool.ParseJob(spooltest.Read(t, s, spool.DirNew, "bom~000001.json"), 0); err != nil || lineCustom(t, s, "bom~000001") != "req-1" {
			t.Fatalf("line 1's job: %+v, %v", j, err)
		}
		endLine(t, s, "bom~000001", answer("x"), nil)
		endLine(t, s, "bom~000002", answer("y"), nil)
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		out := readOutput(t, s, b.Output)
		if out[0].CustomID == nil || *out[0].CustomID != "req-1" {
			t.Errorf("regression: the output of line 1 has custom_id %v: batchJob trims a UTF-8 BOM from the line (so the job runs, with custom_id req-1), "+
				"but customID(), used by Finish (and Check's repeat check), parses the line with the BOM and finds none; "+
				"a client cannot match its first answer", spooltest.Deref(out[0].CustomID))
		}
	})
}

// Lines the spool ends itself are told to OnEnded, for their job.failed
// events: a line refused at expansion (from no state, without its bytes,
// whose webhook is not trusted) and a queued line canceled with its batch.
func TestBatchLinesEndedOutsideTheRunnerAreTold(t *testing.T) {
	s := newSpool(t)
	type ended struct {
		id       string
		previous spool.State
		kind     spool.ErrorKind
		job      bool
	}
	var got []ended
	s.OnEnded(func(r *spool.Record, previous spool.State) {
		if r.State != spool.StateFailed || r.Error == nil || r.FinishedAt == nil {
			t.Errorf("OnEnded got %+v", r)
			return
		}
		got = append(got, ended{r.ID, previous, r.Error.Kind, len(r.Job) > 0 || r.JobRaw != nil})
	})
	b := claimBatch(t, s, "told", jsonl(chatLine("a", "1"), `{"custom_id": "b", "webhook": "http://10.0.0.1/", "model": 7}`, chatLine("c", "3")))
	expandAll(t, s, b, 1000, false)
	if _, err := s.CancelQueued([]string{"told~000003"}, "the batch was canceled"); err != nil {
		t.Fatal(err)
	}
	want := []ended{{"told~000002", "", spool.KindBadInput, false}, {"told~000003", spool.StateQueued, spool.KindCanceled, true}}
	if !slices.Equal(got, want) {
		t.Errorf("OnEnded calls: got %+v, want %+v", got, want)
	}
	if r := readRec(t, s, spool.DirFailed, "told~000002.json"); len(r.Job) == 0 {
		t.Errorf("the refused line's record lost its bytes: %+v", r)
	}
}

func TestCancelBatch(t *testing.T) {
	t.Run("writes batches/NAME.cancel; Get then shows cancelling", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "c", chatBatch(2))
		got, err := s.b.Cancel("c")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != Cancelling || got.CancellingAt == nil || !s.b.CancelRequested("c") {
			t.Errorf("got %+v", got)
		}
		spooltest.WantNames(t, s, spool.DirBatches, "c.cancel", "c.json", "c.jsonl")
		// The record itself is the runner's: it still says in_progress.
		var rec Record
		if err := json.Unmarshal(spooltest.Read(t, s, spool.DirBatches, "c.json"), &rec); err != nil || rec.State != b.State {
			t.Errorf("batches/c.json: %+v, %v", rec, err)
		}
		again, err := s.b.Cancel("c")
		if err != nil || again.State != Cancelling {
			t.Errorf("a second cancel: %+v, %v", again, err)
		}
	})

	t.Run("an ended batch cannot be canceled", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "e", chatBatch(1))
		expandAll(t, s, b, 1000, false)
		endLine(t, s, "e~000001", `{}`, nil)
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		got, err := s.b.Cancel("e")
		if err == nil || !strings.Contains(err.Error(), "already ended") || !strings.Contains(err.Error(), "completed") {
			t.Errorf("got %v, want an error saying it already ended", err)
		}
		if got == nil || got.State != Completed {
			t.Errorf("got %+v, want the completed batch", got)
		}
		if s.b.CancelRequested("e") {
			t.Error("batches/e.cancel written")
		}
		refused := claimBatch(t, s, "r", "\n")
		if refused.State != Failed {
			t.Fatalf("got %+v", refused)
		}
		if _, err := s.b.Cancel("r"); err == nil {
			t.Error("canceled a refused batch")
		}
	})

	t.Run("a batch not yet claimed can be canceled", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, spool.DirNew, "w.jsonl", []byte(chatBatch(1)))
		got, err := s.b.Cancel("w")
		if err != nil || got.State != Cancelling {
			t.Errorf("got %+v, %v", got, err)
		}
	})

	t.Run("an unknown batch is not found", func(t *testing.T) {
		s := newSpool(t)
		for _, name := range []string{"nope", "../x", ""} {
			if _, err := s.b.Cancel(name); !errors.Is(err, spool.ErrNotFound) {
				t.Errorf("%q: got %v, want ErrNotFound", name, err)
			}
		}
		spooltest.WantNames(t, s, spool.DirBatches)
	})
}

func TestGetAndListBatches(t *testing.T) {
	// A clock in the past, so the records sort before a file dropped now.
	clock := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSpool(t, func(o *spool.Options) {
		o.Now = func() time.Time { clock = clock.Add(time.Second); return clock }
	})
	if list, err := s.b.List(); err != nil || len(list) != 0 {
		t.Fatalf("empty spool: %v, %v", list, err)
	}
	// A batch submitted and not yet claimed, one dropped and not yet
	// claimed, one running, one refused, one finished.
	sub, err := s.b.Submit(strings.NewReader(chatBatch(2)), Options{Name: "submitted"})
	if err != nil {
		t.Fatal(err)
	}
	claimBatch(t, s, "running", chatBatch(2))
	claimBatch(t, s, "refused", "")
	finished := claimBatch(t, s, "finished", chatBatch(1))
	expandAll(t, s, finished, 1000, false)
	endLine(t, s, "finished~000001", `{}`, nil)
	if err := s.b.Finish(finished, nil); err != nil {
		t.Fatal(err)
	}
	spooltest.Put(t, s, spool.DirNew, "dropped.jsonl", []byte(chatBatch(1)))
	spooltest.Put(t, s, spool.DirNew, "not an id.jsonl", []byte(chatBatch(1)))
	spooltest.Put(t, s, spool.DirNew, ".hidden.jsonl", []byte(chatBatch(1)))
	spooltest.Put(t, s, spool.DirNew, "job.json", []byte(`{"model":"llama3.2","prompt":"Why is the sky blue?"}`))

	for name, want := range map[string]State{
		"submitted": Validating, "dropped": Validating, "running": InProgress,
		"refused": Failed, "finished": Completed,
	} {
		b, err := s.b.Get(name)
		if err != nil || b.ID != name || b.State != want {
			t.Errorf("Get(%q): got %+v, %v, want %s", name, b, err, want)
		}
	}
	for _, name := range []string{"nope", "not an id", ".hidden", "job"} {
		if _, err := s.b.Get(name); !errors.Is(err, spool.ErrNotFound) {
			t.Errorf("Get(%q): got %v, want ErrNotFound", name, err)
		}
	}

	list, err := s.b.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range list {
		got = append(got, b.ID+":"+string(b.State))
	}
	// Oldest first: the records' created_at follows the clock; the
	// dropped file's is its ctime, now, after all of them.
	want := []string{"submitted:validating", "running:in_progress", "refused:failed", "finished:completed", "dropped:validating"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if !list[0].CreatedAt.Equal(sub.CreatedAt) || !list[1].CreatedAt.Before(list[2].CreatedAt) {
		t.Errorf("created_at: %v, %v, %v", list[0].CreatedAt, list[1].CreatedAt, list[2].CreatedAt)
	}

	if _, err := s.b.Cancel("running"); err != nil {
		t.Fatal(err)
	}
	list, err = s.b.List()
	if err != nil || len(list) != len(want) || list[1].ID != "running" || list[1].State != Cancelling {
		t.Errorf("after a cancel request: %v, %v", list, err)
	}
}

func TestFiles(t *testing.T) {
	t.Run("stores, describes, lists and deletes uploads", func(t *testing.T) {
		s := newSpool(t)
		body := chatBatch(2)
		a, err := s.b.PutFile(strings.NewReader(body), "batch.jsonl", "batch", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(a.ID, FilePrefix) || !spool.ValidID(a.ID) || a.Filename != "batch.jsonl" || a.Purpose != "batch" ||
			a.Bytes != int64(len(body)) || a.CreatedAt.IsZero() {
			t.Errorf("got %+v", a)
		}
		if got := string(spooltest.Read(t, s, spool.DirFiles, a.ID+".jsonl")); got != body || FilePath(a.ID) != "files/"+a.ID+".jsonl" {
			t.Errorf("files/%s.jsonl holds %q", a.ID, got)
		}
		got, err := s.b.File(a.ID)
		if err != nil || *got != *a {
			t.Errorf("File: got %+v, %v, want %+v", got, err, a)
		}
		b, err := s.b.PutFile(strings.NewReader(""), "empty.jsonl", "batch", 1<<20)
		if err != nil || b.Bytes != 0 {
			t.Fatalf("an empty upload: %+v, %v", b, err)
		}
		list, err := s.b.ListFiles()
		if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
			t.Errorf("ListFiles: %+v, %v", list, err)
		}
		if err := s.b.DeleteFile(a.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.b.File(a.ID); !errors.Is(err, spool.ErrNotFound) {
			t.Errorf("File after delete: got %v, want ErrNotFound", err)
		}
		if err := s.b.DeleteFile(a.ID); !errors.Is(err, spool.ErrNotFound) {
			t.Errorf("second delete: got %v, want ErrNotFound", err)
		}
		spooltest.WantNames(t, s, spool.DirFiles, b.ID+".json", b.ID+".jsonl")
		spooltest.WantNames(t, s, spool.DirTmp)
	})

	t.Run("an unknown or malformed file ID is not found", func(t *testing.T) {
		s := newSpool(t)
		for _, id := range []string{"file-nope", "nope", "file-../x", ""} {
			if _, err := s.b.File(id); !errors.Is(err, spool.ErrNotFound) {
				t.Errorf("File(%q): got %v, want ErrNotFound", id, err)
			}
		}
	})

	t.Run("refuses an upload over the limit and keeps nothing", func(t *testing.T) {
		s := newSpool(t)
		if m, err := s.b.PutFile(strings.NewReader(strings.Repeat("x", 100)), "x.jsonl", "batch", 100); err != nil || m.Bytes != 100 {
			t.Fatalf("at the limit: %+v, %v", m, err)
		}
		before := spooltest.Names(t, s, spool.DirFiles)
		_, err := s.b.PutFile(strings.NewReader(strings.Repeat("x", 101)), "x.jsonl", "batch", 100)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "100 bytes") {
			t.Errorf("got %v, want ErrTooLarge naming the limit", err)
		}
		spooltest.WantNames(t, s, spool.DirFiles, before...)
		spooltest.WantNames(t, s, spool.DirTmp)
	})

	t.Run("a failing upload keeps nothing", func(t *testing.T) {
		s := newSpool(t)
		boom := errors.New("client went away")
		_, err := s.b.PutFile(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), "x.jsonl", "batch", 100)
		if !errors.Is(err, boom) {
			t.Errorf("got %v", err)
		}
		spooltest.WantNames(t, s, spool.DirFiles)
		spooltest.WantNames(t, s, spool.DirTmp)
	})
}

func TestSubmitBatchFile(t *testing.T) {
	t.Run("links the upload into new/ and records it", func(t *testing.T) {
		s := newSpool(t, func(o *spool.Options) { o.Fsync = true })
		f, err := s.b.PutFile(strings.NewReader(chatBatch(3)), "in.jsonl", "batch", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.b.SubmitFile(f.ID, Options{Name: "up", Priority: 2})
		if err != nil {
			t.Fatal(err)
		}
		if b.ID != "up" || b.State != Validating || b.InputFileID != f.ID || b.Priority != 2 {
			t.Errorf("got %+v", b)
		}
		upload, err := os.Stat(filepath.Join(s.Path(), spool.DirFiles, f.ID+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		queued, err := os.Stat(filepath.Join(s.Path(), spool.DirNew, "up.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(upload, queued) {
			t.Error("new/up.jsonl is a copy, not a link to the upload")
		}
		// Deleting the upload leaves the batch its own link.
		if err := s.b.DeleteFile(f.ID); err != nil {
			t.Fatal(err)
		}
		claimed, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: "up.jsonl"})
		if err != nil || claimed.State != InProgress || claimed.Total != 3 || claimed.InputFileID != f.ID || claimed.Priority != 2 {
			t.Errorf("claimed: %+v, %v", claimed, err)
		}
		spooltest.WantNames(t, s, spool.DirTmp)
	})

	t.Run("the same upload can be submitted twice", func(t *testing.T) {
		s := newSpool(t)
		f, err := s.b.PutFile(strings.NewReader(chatBatch(1)), "in.jsonl", "batch", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		one, err1 := s.b.SubmitFile(f.ID, Options{})
		two, err2 := s.b.SubmitFile(f.ID, Options{})
		if err1 != nil || err2 != nil || one.ID == two.ID {
			t.Errorf("got %v %v, %v %v", one, err1, two, err2)
		}
	})

	t.Run("refuses an upload that is not a batch and writes nothing", func(t *testing.T) {
		s := newSpool(t)
		for _, body := range []string{"", jsonl(chatLine("a", "x"), chatLine("a", "y"))} {
			f, err := s.b.PutFile(strings.NewReader(body), "in.jsonl", "batch", 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.b.SubmitFile(f.ID, Options{Name: "up"})
			wantBadInput(t, err)
		}
		spooltest.WantNames(t, s, spool.DirNew)
		spooltest.WantNames(t, s, spool.DirBatches)
	})

	t.Run("an unknown upload is not found", func(t *testing.T) {
		s := newSpool(t)
		if _, err := s.b.SubmitFile("file-nope", Options{}); !errors.Is(err, spool.ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
		spooltest.WantNames(t, s, spool.DirBatches)
	})
}

// A file dropped under a batch line's name, before or while the batch
// expands, runs as a job of its own; the line keeps its name and request.
func TestABatchLineCannotBeForged(t *testing.T) {
	s := newSpool(t)
	b, err := s.b.Submit(strings.NewReader(`{"model":"m","prompt":"real 1"}`+"\n"+`{"model":"m","prompt":"real 2"}`+"\n"), Options{Name: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	impostor := `{"model":"m","prompt":"impostor","batch":"nightly"}`
	spooltest.Put(t, s, spool.DirNew, b.LineID(2)+".json", []byte(impostor))
	spooltest.Put(t, s, spool.DirNew, b.LineID(1)+".json", []byte(impostor))
	q := spool.NewQueue(nil)
	claimed, err := s.b.Claim(spool.Entry{Dir: spool.DirNew, Name: "nightly.jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.Expand(claimed, 10, false, q.Put, func(int) {}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		c, err := s.Claim(spool.Entry{Dir: spool.DirNew, Name: b.LineID(i) + ".json"})
		if err != nil {
			t.Fatal(err)
		}
		if c.Record.ID != b.LineID(i) || c.Job == nil || !strings.Contains(string(c.Record.Job), fmt.Sprintf("real %d", i)) {
			t.Errorf("line %d: claimed %s with %s, want the line's own request", i, c.Record.ID, c.Record.Job)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(s.Path(), spool.DirNew))
	var moved int
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(s.Path(), spool.DirNew, e.Name()))
		if strings.Contains(string(data), "impostor") {
			moved++
			c, err := s.Claim(spool.Entry{Dir: spool.DirNew, Name: e.Name()})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, ok := spool.LineOf(c.Record.ID); ok && strings.HasPrefix(c.Record.ID, "nightly.") && len(c.Record.ID) == len(b.LineID(1)) {
				t.Errorf("an impostor was claimed as line %s", c.Record.ID)
			}
		}
	}
	if moved != 2 {
		t.Errorf("%d impostors left to run as jobs of their own, want 2", moved)
	}
}

func TestAJobNamedLikeALineIsAJobOfItsOwn(t *testing.T) {
	t.Run("a file dropped as NAME.000001.json runs under its name while batch NAME runs", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "nightly", chatBatch(2))
		expandAll(t, s, b, 10, false)
		spooltest.Put(t, s, spool.DirNew, "nightly.000001.json", []byte(`{"model":"m","prompt":"mine","batch":"nightly"}`))
		c := claim(t, s, spool.DirNew, "nightly.000001.json")
		if c.Record.ID != "nightly.000001" || c.BadInput != nil {
			t.Errorf("claimed as %s (bad input %v), want nightly.000001, a job like any other", c.Record.ID, c.BadInput)
		}
		if line := claim(t, s, spool.DirNew, b.LineID(1)+".json"); line.BadInput != nil || !strings.Contains(string(line.Record.Job), "question 1") {
			t.Errorf("line 1: %s, bad input %v", line.Record.Job, line.BadInput)
		}
	})
	t.Run("a file dropped under a line's reserved name without its key is quarantined", func(t *testing.T) {
		s := newSpool(t)
		spooltest.Put(t, s, spool.DirNew, "forged~000001.json", []byte(`{"model":"m","prompt":"forged","batch":"forged","batch_key":"00"}`))
		c := claim(t, s, spool.DirNew, "forged~000001.json")
		if c.BadInput == nil || !spool.PlainID(c.Record.ID) || !strings.Contains(c.BadInput.Error(), "reserved") {
			t.Errorf("claimed as %s with bad input %v, want it set aside under a plain ID", c.Record.ID, c.BadInput)
		}
	})
	t.Run("a batch counted before the separator was reserved keeps its lines' names", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "old", chatBatch(2))
		// A record as hopper wrote it before line_sep existed.
		b.LineSep = ""
		if err := s.b.Write(b, false); err != nil {
			t.Fatal(err)
		}
		b, err := s.b.Get("old")
		if err != nil || b.LineSep != "." || b.LineID(1) != "old.000001" {
			t.Fatalf("got %+v, %v, want lines old.000001, …", b, err)
		}
		// An impostor dropped under line 2's name before it is queued.
		spooltest.Put(t, s, spool.DirNew, "old.000002.json", []byte(`{"model":"m","prompt":"impostor"}`))
		expandAll(t, s, b, 10, false)
		endLine(t, s, "old.000001", `{"done": true}`, nil)
		endLine(t, s, "old.000002", `{"done": true}`, nil)
		if r := readRec(t, s, spool.DirDone, "old.000002.json"); !strings.Contains(string(r.Job), "question 2") {
			t.Errorf("old.000002 ran %s, want line 2", r.Job)
		}
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		out := readOutput(t, s, b.Output)
		if len(out) != 2 || out[0].ID != "old.000001" || out[1].Failed() {
			t.Errorf("output %+v", out)
		}
	})
	t.Run("a line queued by the release before runs as that line, its custom_id kept", func(t *testing.T) {
		s := newSpool(t)
		b := claimBatch(t, s, "prev", chatBatch(1))
		b.LineSep, b.Expanded, b.Offset = "", 1, int64(len(chatBatch(1)))
		if err := s.b.Write(b, false); err != nil {
			t.Fatal(err)
		}
		// The job as the release before wrote it: batch, custom_id and
		// batch_key at the top level.
		spooltest.Put(t, s, spool.DirNew, "prev.000001.json", []byte(fmt.Sprintf(
			`{"model":"llama3.2","prompt":"q","batch":"prev","custom_id":"req-1","batch_key":%q,"priority":0}`, s.LineKey("prev.000001"))))
		// A person's job named like a line of that batch runs under
		// another name, as it did then.
		spooltest.Put(t, s, spool.DirNew, "prev.000005.json", []byte(`{"model":"m","prompt":"mine"}`))
		if c := claim(t, s, spool.DirNew, "prev.000005.json"); c.Record.ID == "prev.000005" || c.BadInput != nil {
			t.Errorf("claimed as %s (bad input %v), want a name of its own", c.Record.ID, c.BadInput)
		}
		if !s.OwnLine("prev.000001") {
			t.Fatal("the line's own job is not taken for the line")
		}
		c := claim(t, s, spool.DirNew, "prev.000001.json")
		if c.Record.ID != "prev.000001" || c.Job == nil || c.Job.Batch != "prev" {
			t.Fatalf("claimed %s, job %+v", c.Record.ID, c.Job)
		}
		c.Record.Attempts, c.Record.Response = 1, json.RawMessage(`{"done": true}`)
		finish(t, s, c.Record, spool.StateDone, nil)
		// Its input gone, the custom_id comes from the line's record.
		if err := os.Remove(filepath.Join(s.Path(), b.Input)); err != nil {
			t.Fatal(err)
		}
		b, err := s.b.Get("prev")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.b.Finish(b, nil); err != nil {
			t.Fatal(err)
		}
		out := readOutput(t, s, b.Output)
		if len(out) != 1 || out[0].ID != "prev.000001" || spooltest.Deref(out[0].CustomID) != "req-1" || out[0].Failed() {
			t.Errorf("output %+v", out)
		}
	})
}

// endProbe is a reader of the lines next gives (until nil) that calls
// atEnd once, when its reader has read them all.
type endProbe struct {
	next  func(i int) []byte
	atEnd func()
	i     int
	buf   []byte
}

func (p *endProbe) Read(b []byte) (int, error) {
	for len(p.buf) == 0 {
		if p.next == nil {
			return 0, io.EOF
		}
		if p.buf = p.next(p.i); p.buf == nil {
			p.next = nil
			p.atEnd()
			return 0, io.EOF
		}
		p.i++
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

// A batch's line records stay while the batch runs (its output is written
// from them); an ended batch goes with done/'s retention, all its files.
func TestPruneBatches(t *testing.T) {
	s := newSpool(t)
	old := 10 * 24 * time.Hour
	cutoff := time.Now().Add(-7 * 24 * time.Hour)
	// running: one line ended long ago, the batch still in progress.
	running := claimBatch(t, s, "running", chatBatch(2))
	expandAll(t, s, running, 1000, false)
	endLine(t, s, "running~000001", `{"done": true}`, nil)
	spooltest.Age(t, s, spool.DirDone, "running~000001.json", old)
	// ended: completed long ago, its lines too.
	ended := claimBatch(t, s, "ended", chatBatch(2))
	expandAll(t, s, ended, 1000, false)
	endLine(t, s, "ended~000001", `{"done": true}`, nil)
	endLine(t, s, "ended~000002", "", &spool.JobError{Kind: spool.KindTarget, Status: 404, Message: "no model"})
	if err := s.b.Finish(ended, nil); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-old)
	ended.CompletedAt = &long
	if err := s.b.Write(ended, false); err != nil {
		t.Fatal(err)
	}
	spooltest.Age(t, s, spool.DirDone, "ended~000001.json", old)
	spooltest.Age(t, s, spool.DirFailed, "ended~000002.json", old)
	// recent: completed a moment ago, with old line records.
	recent := claimBatch(t, s, "recent", chatBatch(1))
	expandAll(t, s, recent, 1000, false)
	endLine(t, s, "recent~000001", `{"done": true}`, nil)
	if err := s.b.Finish(recent, nil); err != nil {
		t.Fatal(err)
	}
	spooltest.Age(t, s, spool.DirDone, "recent~000001.json", old)

	n, err := s.b.Prune(cutoff, spool.StateFailed)
	if err != nil || n.Records != 1 || n.Batches != 0 {
		t.Fatalf("prune failed: got %+v, %v; want the ended batch's failed line only", n, err)
	}
	n, err = s.b.Prune(cutoff)
	if err != nil || n.Records != 2 || n.Batches != 1 {
		t.Fatalf("prune: got %+v, %v; want 2 line records (ended, recent) and 1 batch", n, err)
	}
	spooltest.WantNames(t, s, spool.DirDone, "recent.jsonl", "running~000001.json")
	spooltest.WantNames(t, s, spool.DirFailed)
	spooltest.WantNames(t, s, spool.DirBatches, "recent.json", "recent.jsonl", "running.json", "running.jsonl")
	if _, err := s.b.Get("ended"); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("Get(ended) after prune: %v, want ErrNotFound", err)
	}
}
