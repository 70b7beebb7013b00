package ollama

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// loadOptions are the request options Ollama compares before it reuses a
// loaded model: its api.Runner options (needsReload in server/sched.go).
// A request that differs in one of them makes the server reload the model,
// waiting for the requests running on it to finish first. Sorted.
var loadOptions = []string{"main_gpu", "num_batch", "num_ctx", "num_gpu", "num_thread", "use_mmap"}

// LoadKey returns the key under which requests can share one loaded model:
// the normalized model name, then each load option the request's options
// object sets, sorted, as "llama3.2:latest num_ctx=8192". Two requests
// with the same key run on one load; different keys mean the server would
// load the model again. An option left out and one set to the server's
// default count as different: hopper cannot know the server's defaults.
func LoadKey(model string, options json.RawMessage) string {
	key := NormalizeModel(model)
	if len(options) == 0 {
		return key
	}
	var opts map[string]json.RawMessage
	if json.Unmarshal(options, &opts) != nil {
		return key
	}
	var b strings.Builder
	b.WriteString(key)
	for _, name := range loadOptions {
		raw, ok := opts[name]
		if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			continue
		}
		b.WriteString(" " + name + "=" + canonicalValue(raw))
	}
	return b.String()
}

// KeyModel returns the normalized model name of a load key.
func KeyModel(key string) string {
	model, _, _ := strings.Cut(key, " ")
	return model
}

// IsLoadOption reports whether an option name is one that makes Ollama
// reload a model when it changes.
func IsLoadOption(name string) bool {
	_, ok := slices.BinarySearch(loadOptions, name)
	return ok
}

// canonicalValue writes a JSON value so that equal values compare equal:
// numbers by value (8192, 8192.0 and 8.192e3 alike), anything else as
// compact JSON.
func canonicalValue(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return string(raw)
}
