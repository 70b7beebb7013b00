// Package conformance is one test suite for the Ollama HTTP API as hopper
// uses and proxies it, run against any server: the fake in ollama/ollamatest
// and a real Ollama from internal/realollama (see the package's tests). Where
// both pass, the fake is as good as the real server for hopper's tests.
//
// The suite compares what clients depend on — status codes, content types,
// error texts, the shape of every answer (field names and JSON types), stream
// framing, residency and keep_alive, model swaps, and surviving a client that
// hangs up — never generated text or timings. Each server answers the same
// requests and must meet the same expectations, which were taken from a real
// Ollama 0.17.4. Where the fake cannot follow the real server, the difference
// is written down in ollamatest's package documentation, and the suite checks
// only what both do.
//
// It is a test harness: only tests import it.
package conformance
