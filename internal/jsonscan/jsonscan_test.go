package jsonscan_test

import (
	"testing"

	"github.com/hopper-dev/hopper/internal/jsonscan"
)

func TestSkipValueEndsWhereTheValueEnds(t *testing.T) {
	for _, tt := range []struct{ in, rest string }{
		{`"a\"b" ,`, ` ,`},
		{`{"a":[1,{"b":"}"}]} x`, ` x`},
		{`-1.5e3,`, `,`},
		{`true]`, `]`},
		{`"unterminated`, ``},
	} {
		if got := tt.in[jsonscan.SkipValue([]byte(tt.in), 0):]; got != tt.rest {
			t.Errorf("SkipValue(%s) leaves %q, want %q", tt.in, got, tt.rest)
		}
	}
	if got := jsonscan.SkipSpace([]byte(" \t\r\nx"), 0); got != 4 {
		t.Errorf("SkipSpace: got %d, want 4", got)
	}
}

func TestHex4(t *testing.T) {
	for in, want := range map[string]rune{"00e9": 'é', "D83D": 0xD83D, "12": -1, "12g4": -1} {
		if got := jsonscan.Hex4([]byte(in)); got != want {
			t.Errorf("Hex4(%s): got %#x, want %#x", in, got, want)
		}
	}
}
