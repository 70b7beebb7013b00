package ollama

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// escapeAll writes s as a JSON string literal with every character as a
// \u escape (surrogate pairs above U+FFFF): valid JSON that encoding/json
// never writes, so that text.add has to decode it.
func escapeAll(s string) []byte {
	b := []byte{'"'}
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = fmt.Appendf(b, `\u%04x\u%04x`, r1, r2)
			continue
		}
		b = fmt.Appendf(b, `\u%04X`, r)
	}
	return append(b, '"')
}

// foldText folds the literals with text.add, as a stream's chunks are.
func foldText(t *testing.T, lits [][]byte) []byte {
	t.Helper()
	var (
		txt text
		sc  scratch
	)
	for _, lit := range lits {
		if !json.Valid(lit) {
			t.Fatalf("test literal %q is not valid JSON", lit)
		}
		txt.add(lit, &sc)
	}
	out := txt.appendTo(nil)
	if len(out) != txt.size() {
		t.Errorf("size() = %d, wrote %d bytes", txt.size(), len(out))
	}
	return out
}

// wantFolded is what the folded literals must give: encoding/json's
// encoding of the joined texts it decodes from them.
func wantFolded(t *testing.T, lits [][]byte) []byte {
	t.Helper()
	var joined strings.Builder
	for _, lit := range lits {
		var s string
		if err := json.Unmarshal(lit, &s); err != nil {
			t.Fatalf("decode %q: %v", lit, err)
		}
		joined.WriteString(s)
	}
	want, _ := json.Marshal(joined.String())
	return want
}

func TestTextFoldsAsEncodingJSONWould(t *testing.T) {
	tests := []struct {
		name string
		lits []string
	}{
		{"PlainText", []string{`"Hello"`, `", world"`}},
		{"HTMLAndQuotes", []string{`"<b>\"x\" & y</b>"`}},
		{"EscapesWrittenOtherwise", []string{`"\/\u0041\u00e9\t"`, `"\b\f\n\r"`}},
		{"SeparatorsAndControls", []string{"\"\u2028\u2029\"", `"\u0000\u001f\u007f"`}},
		{"SurrogatePair", []string{`"\ud83d\ude00"`}},
		{"LoneSurrogates", []string{`"\ud83d x"`, `"\ude00"`, `"\ud83d\u0041"`}},
		{"InvalidUTF8", []string{"\"a\xffb\xc3\"", "\"\xa9 split\""}},
		{"Empty", []string{`""`, `""`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lits := make([][]byte, len(tt.lits))
			for i, l := range tt.lits {
				lits[i] = []byte(l)
			}
			if got, want := foldText(t, lits), wantFolded(t, lits); !bytes.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func FuzzTextFoldsAsEncodingJSONWould(f *testing.F) {
	f.Add("Hello, <world> & \"you\"\n", uint8(3))
	f.Add("é\u2028😀\x00\xff", uint8(1))
	f.Add("\ud7ff\ue000\U0010ffff", uint8(0))
	f.Fuzz(func(t *testing.T, s string, cut uint8) {
		// Split s anywhere, even inside a character, as tokens may be.
		parts := []string{s}
		if c := int(cut); c < len(s) {
			parts = []string{s[:c], s[c:]}
		}
		var marshaled, escaped [][]byte
		for _, p := range parts {
			lit, _ := json.Marshal(p)
			marshaled = append(marshaled, lit)
			if utf8.ValidString(p) {
				escaped = append(escaped, escapeAll(p))
			}
		}
		if got, want := foldText(t, marshaled), wantFolded(t, marshaled); !bytes.Equal(got, want) {
			t.Errorf("as encoding/json writes them: got %q, want %q", got, want)
		}
		if got, want := foldText(t, escaped), wantFolded(t, escaped); !bytes.Equal(got, want) {
			t.Errorf("all escaped: got %q, want %q", got, want)
		}
		if got, want := len(appendEscaped(nil, s)), escapedLen(s); got != want {
			t.Errorf("escapedLen = %d, appendEscaped wrote %d", want, got)
		}
	})
}

func TestRopeNeverMovesWhatItHolds(t *testing.T) {
	var r rope
	var want []byte
	for i := range 5000 {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, i%300)
		r.write(p)
		want = append(want, p...)
	}
	if got := r.appendTo(nil); !bytes.Equal(got, want) || r.n != len(want) {
		t.Fatalf("rope holds %d bytes (n=%d), want %d", len(got), r.n, len(want))
	}
	for i, b := range r.blocks {
		if cap(b) > ropeBlock {
			t.Errorf("block %d has cap %d", i, cap(b))
		}
	}
}

func TestEachMemberAndElementSkipNestedValues(t *testing.T) {
	doc := []byte(` { "a" : [1, {"x":"]}"}, "\"[" ] , "b\"":{"c":{}} ,"d":-1.5e3, "e" : null } `)
	var got []string
	if err := eachMember(doc, func(k, v []byte) error {
		got = append(got, string(k)+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{`"a"=[1, {"x":"]}"}, "\"[" ]`, `"b\""={"c":{}}`, `"d"=-1.5e3`, `"e"=null`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("members\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = nil
	if err := eachElement([]byte(`[ 1 ,"a,b", [ ] ,{"k":[2]} ]`), func(e []byte) error {
		got = append(got, string(e))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{`1`, `"a,b"`, `[ ]`, `{"k":[2]}`}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("elements %q, want %q", got, want)
	}
	if !keyIs([]byte(`"con\u0074ent"`), "content") || keyIs([]byte(`"contents"`), "content") {
		t.Error("keyIs compares the key's text")
	}
}

func TestLineReaderReusesItsBuffersAndCapsLines(t *testing.T) {
	long := strings.Repeat("x", readBuffer+100)
	input := "short\n" + long + "\n\nlast"
	lr := newLineReader(strings.NewReader(input), readBuffer+100)
	var got []string
	for {
		line, err := lr.next()
		got = append(got, string(line))
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatal(err)
			}
			break
		}
	}
	if want := []string{"short", long, "", "last"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %d, want %d", len(got), len(want))
	}
	lr = newLineReader(strings.NewReader(long+"x\n"), readBuffer+100)
	if _, err := lr.next(); err != ErrLineTooLong {
		t.Errorf("err = %v, want ErrLineTooLong", err)
	}
	br := lr.br
	allocs := testing.AllocsPerRun(100, func() {
		br.Reset(strings.NewReader("a line\nanother\n"))
		r := lineReader{br: br, max: 1 << 20}
		_, _ = r.next()
		_, _ = r.next()
	})
	if allocs > 1 { // the strings.Reader
		t.Errorf("reading short lines allocated %.0f times", allocs)
	}
}

// FuzzReadStreams feeds anything to both stream readers: they must not
// panic, and what they fold must be valid JSON.
func FuzzReadStreams(f *testing.F) {
	f.Add([]byte(`{"model":"m","message":{"role":"assistant","content":"a\u00e9<","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"logprobs":[{"token":"a"}],"done":false}
{"model":"m","message":{"role":"assistant","content":"","thinking":"t"},"done":true,"done_reason":"stop"}
`))
	f.Add([]byte(`{"response":"x","thinking":"y","done":false}` + "\n" + `{"response":"","done":true,"context":[1,2]}`))
	f.Add([]byte("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"a\",\"tool_calls\":[{\"index\":0,\"id\":\"x\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]},\"finish_reason\":null}]}\n\ndata: {\"choices\":[{\"text\":\"t\",\"index\":1,\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":1}}\n\ndata: [DONE]\n\n"))
	lim := limits{line: 4 << 10, answer: 64 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		if out, err := readNDJSON(bytes.NewReader(data), nil, lim); err == nil && !json.Valid(out) {
			t.Errorf("NDJSON folded into invalid JSON %q", out)
		}
		if out, err := readSSE(bytes.NewReader(data), nil, lim); err == nil && !json.Valid(out) {
			t.Errorf("event stream folded into invalid JSON %q", out)
		}
	})
}
