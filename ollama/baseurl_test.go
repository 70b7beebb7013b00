package ollama_test

import (
	"testing"

	"github.com/hopper-dev/hopper/ollama"
)

func TestNewReadsAddressesAsOllamaHost(t *testing.T) {
	conversions{
		{"", "http://127.0.0.1:11434"},
		{"127.0.0.1:11434", "http://127.0.0.1:11434"},
		{"127.0.0.1", "http://127.0.0.1:11434"},
		{"localhost", "http://localhost:11434"},
		{"example.com:8080", "http://example.com:8080"},
		{":11435", "http://127.0.0.1:11435"},
		{"0.0.0.0", "http://127.0.0.1:11434"},
		{"[::1]:11434", "http://[::1]:11434"},
		{"::1", "http://[::1]:11434"},
		{"http://127.0.0.1:11434", "http://127.0.0.1:11434"},
		{"http://127.0.0.1:11434/", "http://127.0.0.1:11434"},
		{"http://ollama.internal", "http://ollama.internal:80"},
		{"https://ollama.internal", "https://ollama.internal:443"},
		{"https://proxy.internal:8443/ollama/", "https://proxy.internal:8443/ollama"},
		{"  http://127.0.0.1:1234  ", "http://127.0.0.1:1234"},
	}.check(t, "BaseURL of New", func(in string) string {
		c, err := ollama.New(in, nil)
		if err != nil {
			return "error: " + err.Error()
		}
		return c.BaseURL()
	})
}

func TestNewRefusesBadAddresses(t *testing.T) {
	for _, in := range []string{"ftp://host", "host:99999", "host:abc", "http://a b:1"} {
		if _, err := ollama.New(in, nil); err == nil {
			t.Errorf("New(%q) succeeded, want an error", in)
		}
	}
}
