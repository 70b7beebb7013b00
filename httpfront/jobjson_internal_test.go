package httpfront

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRewriteObjectInPlace(t *testing.T) {
	tests := []struct {
		name, in, set string
		drop          []string
		want          string
	}{
		{"SetGoesFirst", `{"model":"m","prompt":"p"}`, `"origin":"http"`, nil,
			`{"origin":"http","model":"m","prompt":"p"}`},
		{"DroppedMembersGo", ` { "origin" : "file", "model":"m" , "origin":"" } `, `"origin":"http"`, []string{"origin"},
			`{"origin":"http","model":"m"}`},
		{"EscapedKeysAreKeys", `{"\u006frigin":"x","m":[1,{"a":"}"}]}`, `"origin":"http"`, []string{"origin"},
			`{"origin":"http","m":[1,{"a":"}"}]}`},
		{"ValuesStayAsSent", "{\"a\": [1, 2,\n 3], \"b\":\"<&>\\\"}\" , \"c\": {\"d\": null}}", ``, nil,
			"{\"a\": [1, 2,\n 3],\"b\":\"<&>\\\"}\",\"c\": {\"d\": null}}"},
		{"AnEmptyObject", `{}`, `"endpoint":"chat"`, nil, `{"endpoint":"chat"}`},
		{"NothingLeft", `{"origin":1}`, ``, []string{"origin"}, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, front := range []int{len(tt.set) + 1, 0} { // in place, and in a new buffer
				buf := append(make([]byte, front), tt.in...)
				got := rewriteObject(buf, front, tt.set, func(m member) bool {
					for _, d := range tt.drop {
						if m.is(d) {
							return true
						}
					}
					return false
				})
				if string(got) != tt.want {
					t.Errorf("front %d: got %s, want %s", front, got, tt.want)
				}
				if !json.Valid(got) {
					t.Errorf("front %d: %s is not JSON", front, got)
				}
			}
		})
	}
}

// FuzzRewriteObject checks that a rewritten object holds the same members
// as the original, with the set ones replacing those dropped.
func FuzzRewriteObject(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"origin":"x","b":[{"c":"\"}"}]}`, " {\"\\u00e9\" : \"\\ud83d\\ude00\" } ", `{"a":{"b":{"c":[[],{}]}}, "origin":null}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var want map[string]json.RawMessage
		if !json.Valid([]byte(in)) || json.Unmarshal([]byte(in), &want) != nil || want == nil {
			return
		}
		const set = `"origin":"http"`
		buf := append(make([]byte, len(set)+1), in...)
		got := rewriteObject(buf, len(set)+1, set, func(m member) bool { return m.is("origin") })
		var have map[string]json.RawMessage
		if err := json.Unmarshal(got, &have); err != nil {
			t.Fatalf("%s became %s: %v", in, got, err)
		}
		want["origin"] = json.RawMessage(`"http"`)
		if !maps.EqualFunc(have, want, func(a, b json.RawMessage) bool { return string(compact(a)) == string(compact(b)) }) {
			t.Errorf("%s became %s", in, got)
		}
	})
}

// FuzzBodyHash checks the canonical hash walked over the body against
// the one made by decoding and encoding it again, which earlier fronts
// stored for each idempotency key.
func FuzzBodyHash(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","prompt":"p"}`,
		`{ "b" : [1, 2.50, -0.0e1, true, null], "a": {"y": "<&>", "x": "\u2028\u2029\t\b\f\u0001\u007f"} }`,
		`{"a":1,"a":2,"A":3}`,
		`{"s":"\ud83d\ude00 \ud800 \udc00x \u00e9 é \/"}`,
		"{\"bad\":\"\xff\xfe\"}",
		`[{"z":1,"y":[{"b":1,"a":2}]}]`,
		`"just a string"`,
		` 12 `,
		`{}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			return
		}
		old := decodedCanonical([]byte(in))
		if got, want := bodyHash([]byte(in)), sha(old); got != want {
			t.Errorf("%q: hash %s, want %s (canonical %s)", in, got, want, old)
		}
	})
}

func TestBodyHashIsTheHashOfTheDecodedForm(t *testing.T) {
	for _, in := range []string{
		`{"model":"m","prompt":"p"}`,
		"{\"b\" : [1, 2.50], \"a\": {\"y\": \"<&>\", \"x\": \"\\u2028\\t\\u0001\"},\n\"a\":{\"z\":1}}",
		`{"s":"\ud83d\ude00 \ud800 x"}`,
		"{\"bad\":\"\xff\"}",
		strings.Repeat(`[`, 50) + strings.Repeat(`]`, 50),
	} {
		if got, want := bodyHash([]byte(in)), sha(decodedCanonical([]byte(in))); got != want {
			t.Errorf("%q: got %s, want %s", in, got, want)
		}
	}
}

// The drop-in's job, made in place, holds what decoding the request and
// encoding it again with hopper's members gave.
func TestDropInJobMatchesTheDecodedForm(t *testing.T) {
	s := &Server{cfg: Config{DropInPriority: 100}}
	tests := []struct{ body, header string }{
		{`{"model":"m","messages":[{"role":"user","content":"<hi>"}]}`, ""},
		{`{"model":"m","priority":3,"endpoint":"embed","origin":"","messages":[]}`, ""},
		{`{"model":"m","priority":3,"priority":4,"messages":[]}`, "7"},
		{`{"model":"m","messages":[]} {"trailing":true}`, ""},
		{" \n{\"model\":\"m\",\"stream\":false,\"messages\":[]}\n", "-2"},
	}
	for _, tt := range tests {
		req, e := parseDropIn("chat", []byte(tt.body))
		if e != nil {
			t.Fatalf("%s: %v", tt.body, e)
		}
		r := httptest.NewRequest("POST", "/api/chat", nil)
		if tt.header != "" {
			r.Header.Set("X-Hopper-Priority", tt.header)
		}
		b := &reqBody{buf: append(make([]byte, dropInRoom), tt.body...), front: dropInRoom}
		b.data = b.buf[dropInRoom:]
		job, e := s.dropInJob(r, req, b)
		if e != nil {
			t.Fatal(e)
		}
		// What the front wrote before: the first value decoded, hopper's
		// members set, encoded again (and "origin" set by the spool).
		var want map[string]json.RawMessage
		if err := json.NewDecoder(strings.NewReader(tt.body)).Decode(&want); err != nil {
			t.Fatal(err)
		}
		want["endpoint"], want["origin"] = json.RawMessage(`"chat"`), json.RawMessage(`"http"`)
		if tt.header != "" {
			want["priority"] = json.RawMessage(tt.header)
		} else if _, ok := want["priority"]; !ok {
			want["priority"] = json.RawMessage("100")
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(job, &got); err != nil {
			t.Fatalf("%s: job %s: %v", tt.body, job, err)
		}
		if !maps.EqualFunc(got, want, func(a, b json.RawMessage) bool { return string(compact(a)) == string(compact(b)) }) {
			t.Errorf("%s: got job %s, want the members %v", tt.body, job, want)
		}
	}
}
