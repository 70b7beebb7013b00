package jsonfmt_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
)

func TestLocate(t *testing.T) {
	tests := []struct {
		name, in string
		want     jsonfmt.SyntaxError
	}{
		{"a bad byte on the second line", "{\"model\": \"m\",\n \"prompt\": x}", jsonfmt.SyntaxError{Msg: "invalid character 'x' looking for beginning of value", Offset: 26, Line: 2, Column: 12}},
		{"a bad byte after a multi-byte character, counted as one column", `{"model": "é", x}`, jsonfmt.SyntaxError{Msg: "invalid character 'x' looking for beginning of object key string", Offset: 16, Line: 1, Column: 16}},
		{"text that ends early", `{"model": "m"`, jsonfmt.SyntaxError{Offset: 13, Line: 1, Column: 14}},
		{"a bad byte that is the last one is not an early end", `{"a" x`, jsonfmt.SyntaxError{Msg: "invalid character 'x' after object key", Offset: 5, Line: 1, Column: 6}},
		{"garbage after the value", `{"a":1} x`, jsonfmt.SyntaxError{Msg: "invalid character 'x' after top-level value", Offset: 8, Line: 1, Column: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v any
			got := jsonfmt.Locate([]byte(tt.in), json.Unmarshal([]byte(tt.in), &v))
			if got == nil || *got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("ADecoderCutShortEndsEarly", func(t *testing.T) {
		in := "[1,\n2"
		var v any
		err := json.NewDecoder(strings.NewReader(in)).Decode(&v)
		got := jsonfmt.Locate([]byte(in), err)
		if got == nil || got.Msg != "" || got.Line != 2 || got.Column != 2 || got.Offset != 5 {
			t.Errorf("got %+v from %v, want the end: line 2, column 2, offset 5", got, err)
		}
	})
	t.Run("OtherErrorsHaveNoPosition", func(t *testing.T) {
		var n int
		err := json.Unmarshal([]byte(`"x"`), &n)
		if got := jsonfmt.Locate([]byte(`"x"`), err); got != nil {
			t.Errorf("got %+v for %v, want nil", got, err)
		}
		if got := jsonfmt.Locate(nil, errors.New("boom")); got != nil {
			t.Errorf("got %+v, want nil", got)
		}
	})
}

func TestEncodersLeaveMarkupAlone(t *testing.T) {
	v := map[string]string{"prompt": "<b>a & b</b>"}
	compact, err := jsonfmt.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"prompt":"<b>a & b</b>"}`; string(compact) != want {
		t.Errorf("Marshal: got %s, want %s", compact, want)
	}
	doc, err := jsonfmt.MarshalIndent(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"prompt\": \"<b>a & b</b>\"\n}\n"; string(doc) != want {
		t.Errorf("MarshalIndent: got %q, want %q", doc, want)
	}
	var b strings.Builder
	if err := jsonfmt.NewEncoder(&b).Encode(v); err != nil {
		t.Fatal(err)
	}
	if want := `{"prompt":"<b>a & b</b>"}` + "\n"; b.String() != want {
		t.Errorf("NewEncoder: got %q, want %q", b.String(), want)
	}
}

func ExampleLocate() {
	data := []byte("{\"model\": \"llama3.2\",\n \"prompt\": why}")
	var v any
	fmt.Println(jsonfmt.Locate(data, json.Unmarshal(data, &v)))
	// Output: invalid character 'w' looking for beginning of value at line 2, column 12, byte offset 33
}
