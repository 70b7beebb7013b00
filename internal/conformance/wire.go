package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
)

// reply is a whole HTTP answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) contentType() string { return r.header.Get("Content-Type") }

// patience bounds every request and every wait on the server, so a server
// that hangs fails the test instead of stalling it. It is generous: a real
// Ollama on a busy two-core machine can take a minute over what is
// milliseconds when the machine is idle.
const patience = 3 * time.Minute

// client sends requests to the server under test.
type client struct {
	t    testing.TB
	base string
}

// do sends body (nil, a string of raw bytes, or a value to encode as JSON)
// and reads the whole answer.
func (c client) do(method, path string, body any) reply {
	c.t.Helper()
	status, header, data := runtest.Call(c.t, patience, method, c.base+path, body)
	return reply{status: status, header: header, body: data}
}

func (c client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	req, err := runtest.NewRequest(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

func (c client) get(path string) reply { c.t.Helper(); return c.do(http.MethodGet, path, nil) }

func (c client) post(path string, body any) reply {
	c.t.Helper()
	return c.do(http.MethodPost, path, body)
}

// ok fails the test unless the answer is 200, and returns it.
func (r reply) ok(t testing.TB, what string) reply {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s: status %d, want 200: %s", what, r.status, r.body)
	}
	return r
}

// object decodes a JSON object.
func object(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, data)
	}
	return m
}

// lines decodes an NDJSON body, one object per line.
func lines(t testing.TB, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			t.Errorf("empty line in NDJSON body")
			continue
		}
		out = append(out, object(t, sc.Bytes()))
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		t.Errorf("NDJSON body does not end in a newline")
	}
	return out
}

// events splits an SSE body into its data payloads, checking that every
// event is one "data: " line followed by a blank line.
func events(t testing.TB, body []byte) []string {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\n\n") {
		t.Errorf("SSE body does not end with a blank line: %q", tailOf(s))
	}
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Errorf("SSE event is not a single data line: %q", ev)
			continue
		}
		out = append(out, data)
	}
	return out
}

func tailOf(s string) string {
	if len(s) > 80 {
		return "…" + s[len(s)-80:]
	}
	return s
}

// shape renders the structure of a decoded JSON value: objects as
// {key:shape,...} with the keys sorted, arrays as [shape|shape] of their
// distinct element shapes ([] when empty), scalars as string, number, bool or
// null. Values below depth are rendered by kind only (object, array).
func shape(v any, depth int) string {
	switch x := v.(type) {
	case map[string]any:
		if depth <= 0 {
			return "object"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ":" + shape(x[k], depth-1)
		}
		return "{" + strings.Join(parts, ",") + "}"
	case []any:
		if depth <= 0 {
			return "array"
		}
		var elems []string
		for _, e := range x {
			if s := shape(e, depth-1); !slices.Contains(elems, s) {
				elems = append(elems, s)
			}
		}
		sort.Strings(elems)
		return "[" + strings.Join(elems, "|") + "]"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// deep is a depth that renders every level of the answers checked here.
const deep = 16

// wantShape fails the test unless v has the shape want.
func wantShape(t testing.TB, what string, v any, want string) {
	t.Helper()
	if got := shape(v, deep); got != want {
		t.Errorf("%s has the shape\n  %s\nwant\n  %s", what, got, want)
	}
}

// str, num, field and list read a member of a decoded object, failing the
// test if it is missing or of another type.
func str(t testing.TB, m map[string]any, key string) string {
	t.Helper()
	return member[string](t, m, key, "a string")
}

func num(t testing.TB, m map[string]any, key string) float64 {
	t.Helper()
	return member[float64](t, m, key, "a number")
}

func field(t testing.TB, m map[string]any, key string) map[string]any {
	t.Helper()
	return member[map[string]any](t, m, key, "an object")
}

func list(t testing.TB, m map[string]any, key string) []any {
	t.Helper()
	return member[[]any](t, m, key, "an array")
}

// member reads m[key] as a T, failing the test if it is not one; kind
// names T for the message.
func member[T any](t testing.TB, m map[string]any, key, kind string) T {
	t.Helper()
	v, ok := m[key].(T)
	if !ok {
		t.Fatalf("field %q = %#v, want %s", key, m[key], kind)
	}
	return v
}

// timestamp checks that a field is an RFC 3339 time and returns it.
func timestamp(t testing.TB, m map[string]any, key string) time.Time {
	t.Helper()
	s := str(t, m, key)
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("field %q = %q: %v", key, s, err)
	}
	return ts
}

// durations checks that each named field is a positive number of
// nanoseconds.
func durations(t testing.TB, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if d := num(t, m, k); d <= 0 || d != float64(int64(d)) {
			t.Errorf("%s = %v, want a positive whole number of nanoseconds", k, d)
		}
	}
}
