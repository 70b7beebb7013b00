// Package e2ereal holds end-to-end tests and benchmarks of hopper against a
// real Ollama server (internal/realollama): the runner and the HTTP front run
// in process, on a spool under the test's temporary directory, in front of
// `ollama serve` with three tiny models of different weights and
// OLLAMA_MAX_LOADED_MODELS=1, so every switch between models is a real
// unload and load.
//
// The tests are skipped when the ollama binary is not built, unless
// HOPPER_REAL_OLLAMA=1, which makes its absence a failure (see realollama).
// A recording proxy between hopper and the server keeps every request hopper
// sent, and the server's log tells how many times it loaded a model, so the
// tests check what reached the server, not only what hopper says.
//
// The package has no code outside its tests.
package e2ereal
