// Package ollamatest provides a fake Ollama server for tests, as
// net/http/httptest provides a fake HTTP server: [NewServer] starts it on a
// loopback port and registers its shutdown with t.Cleanup; [Server.URL] is
// the address to give the code under test, in process or as a subprocess.
//
// The fake speaks Ollama 0.17.4's HTTP API with the shapes, status codes and
// error texts of Ollama's own source (server/routes.go, api/types.go,
// middleware/openai.go, openai/openai.go):
//
//	GET|HEAD /                 "Ollama is running"
//	GET|HEAD /api/version      {"version": "0.17.4"}
//	GET|HEAD /api/tags         the configured models
//	GET      /api/ps           the resident models, with expires_at
//	POST     /api/show         model details and capabilities
//	POST     /api/chat         NDJSON stream (the default) or one object
//	POST     /api/generate     likewise, with context
//	POST     /api/embed        normalized embeddings
//	POST     /api/embeddings   the legacy endpoint, raw vector
//	POST     /v1/chat/completions, /v1/completions   SSE when "stream": true,
//	                           ending "data: [DONE]"; stream_options.include_usage
//	POST     /v1/embeddings    float or base64
//	GET      /v1/models
//
// Unknown paths answer 404 "404 page not found" and known paths with the
// wrong method 405 "405 method not allowed", as Ollama's router does.
//
// # Behaviour mirrored from Ollama
//
// Requests are checked in Ollama's order with its messages: an empty body
// is 400 "missing request body", a truncated one 400 "unexpected EOF", a
// keep_alive of "3600" 400 `time: missing unit in duration "3600"`; /api/chat
// without a model is 400 "model is required" while /api/generate and
// /api/embed say 404 "model '' not found"; an unknown model is 404
// "model 'x' not found" for chat and generate (before any streaming) and
// 404 `model "x" not found, try pulling it first` for embeddings; /v1 errors
// are {"error": {"message", "type", "param", "code"}}.
//
// A model is loaded when a request needs it and it is not resident; each
// load is counted ([Server.Loads], [Server.LoadsOf]), takes the load delay
// and shows in load_duration. It then stays resident for the request's
// keep_alive (seconds or a duration string; negative: forever; 0: unloaded
// when the request ends; absent: Ollama's default of 5m). A chat without
// messages, or a generate with an empty prompt, only loads the model
// (done_reason "load"); with keep_alive 0 it unloads it (done_reason
// "unload"). At most WithMaxLoaded models (default 3) are resident; another
// load evicts as Ollama does. Each model serves one request at a time, like
// Ollama with OLLAMA_NUM_PARALLEL=1; the others wait their turn. Residency
// changes caused by a request are visible before its final chunk is sent.
//
// Replies are deterministic: "reply from MODEL to: PROMPT" unless
// [WithReply] scripts them, one token per word, with a token delay if
// configured. options.num_predict (/v1: max_tokens) cuts the reply with
// done_reason "length". Metrics are measured; counts are words. Embeddings
// are fixed pseudo-random vectors derived from the model and the text.
// A client that disconnects aborts its generation.
//
// # Faults and records
//
// [Server.FailNext], [Server.HangNext], [Server.DropMidStream],
// [Server.ErrorMidStream] and [Server.SlowTokens] script failures of the
// following inference requests; [Server.Stop] and [Server.Start] take the
// whole server down and up on the same port. [Server.Requests] records every
// request; [Server.InFlight] and [Server.MaxInFlight] count inference
// requests being handled, so a test can assert that its caller never sent
// two at once.
//
// # Not mirrored
//
// There are no real models, templates, tool calls, images, logprobs or
// structured outputs: such fields are accepted and ignored. Memory limits
// do not cause evictions. Type errors in request bodies name the fake's Go
// types where Ollama names its own. Completion ids count up instead of being
// random.
package ollamatest
