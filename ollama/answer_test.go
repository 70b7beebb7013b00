package ollama_test

import (
	"testing"

	"github.com/hopper-dev/hopper/ollama"
)

func TestChunkText(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{`{"model":"m","message":{"role":"assistant","content":"hi"},"done":false}`, "hi"},
		{`{"model":"m","response":" there","done":false}`, " there"},
		{`data: {"choices":[{"delta":{"content":"yo"}}]}`, "yo"},
		{`{"choices":[{"text":"abc"}]}`, "abc"},
		{`{"done":true,"eval_count":9}`, ""},
		{`not json`, ""},
		{`data: {"choices":[{"delta":{"content":"yo"}}]}` + "\r", "yo"},
	} {
		if got := ollama.ChunkText([]byte(tt.line)); got != tt.want {
			t.Errorf("ChunkText(%s): got %q, want %q", tt.line, got, tt.want)
		}
	}
}
