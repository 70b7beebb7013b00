package conformance_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/conformance"
	"github.com/hopper-dev/hopper/internal/realollama"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
)

// TestFake runs the suite against ollamatest.
func TestFake(t *testing.T) {
	conformance.Run(t, conformance.Target{Name: "fake", Start: startFake})
}

// TestReal runs the suite against a real Ollama (skipped without the binary
// unless HOPPER_REAL_OLLAMA=1; see internal/realollama).
func TestReal(t *testing.T) {
	conformance.Run(t, conformance.Target{Name: "real", Start: startReal})
}

func startReal(t testing.TB, models ...string) string {
	s := realollama.Start(t, realollama.WithMaxLoadedModels(1))
	for i, m := range models {
		s.CreateModel(t, m, int64(i+1)) // distinct seeds: distinct models
	}
	return s.URL
}

// startFake configures the fake as the real server runs: one model resident
// at a time, loads that take a while, and long answers when a request asks
// for many tokens (a real model talks until num_predict unless it happens to
// end).
func startFake(t testing.TB, models ...string) string {
	s := ollamatest.NewServer(t,
		ollamatest.WithModels(models...),
		ollamatest.WithMaxLoaded(1),
		ollamatest.WithLoadDelay(30*time.Millisecond),
		ollamatest.WithTokenDelay(500*time.Microsecond),
		ollamatest.WithReply(reply),
	)
	return s.URL
}

func reply(r ollamatest.Request) string {
	var req struct {
		Options struct {
			NumPredict int `json:"num_predict"`
		} `json:"options"`
		MaxTokens int `json:"max_tokens"`
	}
	_ = json.Unmarshal(r.Body, &req)
	if n := max(req.Options.NumPredict, req.MaxTokens); n >= 100 {
		return strings.Repeat("word ", n)
	}
	return "the fake's answer"
}
