// Package realollama gives tests a real Ollama server: the `ollama` binary of
// version Version, built by .ci/ollama.sh, serving tiny random-weight models
// that the gguf subpackage writes. It is a test harness; nothing outside
// tests imports it.
//
// Contract:
//   - Binary finds the binary: $HOPPER_OLLAMA_BIN if set, else
//     $(os.UserCacheDir())/hopper/ollama-<Version>/ollama. If it is missing the
//     test is skipped with the reason — unless HOPPER_REAL_OLLAMA=1 (set by CI,
//     which promises a real server), in which case the test fails. Either way
//     the message says to run .ci/ollama.sh.
//   - Start runs `ollama serve` on a free 127.0.0.1 port with its own
//     OLLAMA_MODELS and HOME (temporary directories of the test), every
//     inherited OLLAMA_* variable removed, OLLAMA_NO_CLOUD=1, GIN_MODE=release, and
//     OLLAMA_MAX_LOADED_MODELS from WithMaxLoadedModels. It returns once GET /
//     answers 200. The test's cleanup stops the server's process group (the
//     server and the runners it spawned, nothing else): SIGTERM, then SIGKILL
//     after a grace period, and waits for the process. If the test failed, the
//     tail of the server log is logged.
//   - CreateModel makes a model NAME from the tiny GGUF of a seed with
//     `ollama create` against that server. The same seed gives the same
//     weights, so two names over one seed share one runner; different seeds are
//     different models. The model's files (GGUF and Modelfile) are written once
//     per test binary and seed; creating a name already created on that server
//     does nothing.
//   - The models talk gibberish: the chat template renders .Messages, and
//     PARAMETER num_predict 16 bounds every answer, with temperature 0 so the
//     same request gives the same answer.
//
// Loopback only: the server listens on 127.0.0.1 and the harness talks only
// to it.
package realollama
