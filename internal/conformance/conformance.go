package conformance

import (
	"testing"
)

// Target is a server the suite runs against.
type Target struct {
	// Name is how the server shows in failure messages ("fake", "real").
	Name string
	// Start starts a fresh server with the named models — each a different
	// model (different weights), all able to chat, generate and embed —
	// of which at most one is resident at a time
	// (OLLAMA_MAX_LOADED_MODELS=1), and returns its base URL,
	// "http://127.0.0.1:PORT". The server stops when t ends.
	//
	// A generation asked for options.num_predict of 100 or more must last
	// that many tokens (or stop early by itself), as a real model does, so
	// that a stream can be broken off midway.
	Start func(t testing.TB, models ...string) string
}

// Models are the models Run asks Target.Start for.
var Models = []string{"m1", "m2", "m3"}

// Run runs the suite against a fresh server from target. Its subtests run in
// order and share the server: the residency tests depend on what the ones
// before them left loaded, and say so.
func Run(t *testing.T, target Target) {
	base := target.Start(t, Models...)
	c := client{t: t, base: base}
	t.Logf("%s server at %s", target.Name, base)

	t.Run("Info", func(t *testing.T) { testInfo(t, c.with(t)) })
	t.Run("Chat", func(t *testing.T) { testChat(t, c.with(t)) })
	t.Run("Generate", func(t *testing.T) { testGenerate(t, c.with(t)) })
	t.Run("Embeddings", func(t *testing.T) { testEmbeddings(t, c.with(t)) })
	t.Run("OpenAI", func(t *testing.T) { testOpenAI(t, c.with(t)) })
	t.Run("KeepAlive", func(t *testing.T) { testKeepAlive(t, c.with(t)) })
	t.Run("Swaps", func(t *testing.T) { testSwaps(t, c.with(t)) })
	t.Run("OptionsAndFormat", func(t *testing.T) { testOptions(t, c.with(t)) })
	t.Run("Errors", func(t *testing.T) { testErrors(t, c.with(t)) })
	t.Run("ClientDisconnect", func(t *testing.T) { testDisconnect(t, c.with(t)) })
}

// with returns the client reporting to t.
func (c client) with(t testing.TB) client { c.t = t; return c }
