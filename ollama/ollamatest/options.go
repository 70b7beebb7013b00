package ollamatest

import "time"

// Option configures a [Server].
type Option func(*config)

type config struct {
	models     []Model
	loadDelay  time.Duration
	maxLoaded  int
	parallel   int
	tokenDelay time.Duration
	tokens     int
	reply      func(Request) string
	now        func() time.Time
}

// Model is a model the fake has "pulled".
type Model struct {
	// Name as a user would write it: "tiny", "tiny:latest", "hf.co/u/m:Q4".
	Name string
	// Embedding marks an embedding-only model: /api/chat and /api/generate
	// answer 400 "does not support chat" / "does not support generate".
	Embedding bool
	// Thinking marks a thinking model: unless the request says "think": false
	// it streams message.thinking (generate: thinking) before its answer. A
	// request with "think": true on any other model answers 400, as Ollama.
	Thinking bool
	// Dims is the embedding length; 0 means 16.
	Dims int
	// Size in bytes, reported by /api/tags and /api/ps; 0 means 1 GiB.
	Size int64
}

// WithModels adds completion models by name. Without any WithModels or
// WithModel option the server has one model, "tiny".
func WithModels(names ...string) Option {
	return func(c *config) {
		for _, n := range names {
			c.models = append(c.models, Model{Name: n})
		}
	}
}

// WithModel adds one model described in full.
func WithModel(m Model) Option {
	return func(c *config) { c.models = append(c.models, m) }
}

// WithLoadDelay makes every model load take d (default 0). It is reported
// in load_duration.
func WithLoadDelay(d time.Duration) Option {
	return func(c *config) { c.loadDelay = d }
}

// WithMaxLoaded sets how many models may be resident at once (default 3,
// Ollama's OLLAMA_MAX_LOADED_MODELS default on one GPU or on CPU). Loading
// one more evicts an idle model as Ollama's scheduler does: the one with the
// shortest keep_alive, ties broken by name; if all are busy, the first in
// that order is unloaded as soon as its requests end, and the load waits.
func WithMaxLoaded(n int) Option {
	return func(c *config) { c.maxLoaded = max(n, 1) }
}

// WithParallel sets how many inference requests each loaded model serves
// at once, as OLLAMA_NUM_PARALLEL does (default 1, Ollama 0.17.4's
// default). Further requests for the model wait, first come first served,
// until one of its n slots frees. Embedding models ([Model].Embedding) serve
// one request at a time whatever n is, as Ollama loads them.
func WithParallel(n int) Option {
	return func(c *config) { c.parallel = max(n, 1) }
}

// WithTokenDelay makes the model wait d before each token (default 0).
func WithTokenDelay(d time.Duration) Option {
	return func(c *config) { c.tokenDelay = d }
}

// WithTokens makes every reply exactly n tokens long, repeating the reply's
// words as needed (default: the reply's own length).
func WithTokens(n int) Option {
	return func(c *config) { c.tokens = n }
}

// WithReply scripts the reply text. The function receives the recorded
// request (decode its Body for the prompt) and may be called concurrently.
// The default reply is "reply from MODEL to: PROMPT", where MODEL is the
// model as the request named it and PROMPT the last user message (generate:
// the prompt).
func WithReply(f func(Request) string) Option {
	return func(c *config) { c.reply = f }
}

// WithClock sets the clock used for created_at, expires_at, request times
// and keep_alive expiry, so that tests can move time forward to expire a
// model. Load and token delays still take real time.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.now = now }
}
