package ollama_test

import (
	"testing"

	"github.com/hopper-dev/hopper/ollama"
)

func TestNormalizeModel(t *testing.T) {
	conversions{
		{"llama3.2", "llama3.2:latest"},
		{"llama3.2:latest", "llama3.2:latest"},
		{"Llama3.2:Latest", "llama3.2:latest"},
		{"  llama3.2  ", "llama3.2:latest"},
		{"llama3.2:3b", "llama3.2:3b"},
		{"library/llama3.2", "llama3.2:latest"},
		{"registry.ollama.ai/library/llama3.2:latest", "llama3.2:latest"},
		{"https://registry.ollama.ai/library/llama3.2", "llama3.2:latest"},
		{"registry.ollama.ai/jmorgan/tool:1", "jmorgan/tool:1"},
		{"jmorgan/tool", "jmorgan/tool:latest"},
		{"hf.co/bartowski/Qwen-GGUF:Q4_K_M", "hf.co/bartowski/qwen-gguf:q4_k_m"},
		{"localhost:5000/ns/model", "localhost:5000/ns/model:latest"},
		{"model:", "model:latest"},
		{"", ""},
		{"   ", ""},
	}.check(t, "NormalizeModel", ollama.NormalizeModel)
}

func TestSameModel(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"llama3.2", "llama3.2:latest", true},
		{"llama3.2", "LLAMA3.2", true},
		{"registry.ollama.ai/library/x:latest", "x", true},
		{"x", "library/x:latest", true},
		{"llama3.2", "llama3.2:3b", false},
		{"llama3.2", "llama3.1", false},
		{"someone/x", "x", false},
		{"hf.co/a/x", "x", false},
	}
	for _, tt := range tests {
		if got := ollama.SameModel(tt.a, tt.b); got != tt.want {
			t.Errorf("SameModel(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestMatchModel(t *testing.T) {
	tests := []struct {
		patterns []string
		model    string
		want     bool
	}{
		{nil, "anything:latest", true},
		{[]string{"llama3.2"}, "llama3.2:latest", true},
		{[]string{"Llama3.2"}, "llama3.2:latest", true},
		{[]string{"llama*"}, "llama3.2:3b", true},
		{[]string{"qwen*", "*:3b"}, "llama3.2:3b", true},
		{[]string{"qwen*"}, "llama3.2:latest", false},
		{[]string{"["}, "llama3.2:latest", false},
	}
	for _, tt := range tests {
		if got := ollama.MatchModel(tt.patterns, tt.model); got != tt.want {
			t.Errorf("MatchModel(%q, %q) = %v, want %v", tt.patterns, tt.model, got, tt.want)
		}
	}
}

// conversions is a table of inputs and what a string function should make
// of each.
type conversions []struct{ in, want string }

// check reports every input f does not turn into its want; name is what
// the messages call f.
func (cs conversions) check(t *testing.T, name string, f func(string) string) {
	t.Helper()
	for _, c := range cs {
		if got := f(c.in); got != c.want {
			t.Errorf("%s(%q) = %q, want %q", name, c.in, got, c.want)
		}
	}
}
