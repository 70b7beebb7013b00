// Package ollamatest provides a fake Ollama server for tests, as
// net/http/httptest provides a fake HTTP server: [NewServer] starts it on a
// loopback port and registers its shutdown with t.Cleanup; [Server.URL] is
// the address to give the code under test, in the test process or in a
// subprocess.
//
// The fake speaks the HTTP API of Ollama 0.17.4 with the shapes, status
// codes, content types and error texts of that release's source
// (server/routes.go, api/types.go, middleware/openai.go, openai/openai.go),
// checked against a real 0.17.4 server by the suite in internal/conformance,
// which runs the same expectations against the fake and a real Ollama:
//
//	GET|HEAD /                 "Ollama is running"
//	GET|HEAD /api/version      {"version":"0.17.4"}
//	GET|HEAD /api/tags         the configured models
//	GET      /api/ps           the resident models, with expires_at
//	POST     /api/show         details and capabilities
//	POST     /api/chat         NDJSON stream (the default) or one object
//	POST     /api/generate     likewise, with context
//	POST     /api/embed        normalized embeddings
//	POST     /api/embeddings   the legacy endpoint: the raw vector
//	POST     /v1/chat/completions, /v1/completions
//	                           one object, or SSE with "stream": true ending
//	                           "data: [DONE]"; stream_options.include_usage
//	POST     /v1/embeddings    float or base64
//	GET      /v1/models
//
// Other paths answer 404 "404 page not found", known paths with the wrong
// method 405 "405 method not allowed" with an Allow header, as Ollama's
// router does.
//
// # Requests and errors
//
// Requests are checked in Ollama's order and refused with its messages, for
// example:
//
//	400 {"error":"missing request body"}                    empty body
//	400 {"error":"unexpected EOF"}                          truncated body
//	400 {"error":"time: missing unit in duration \"3600\""} keep_alive "3600"
//	400 {"error":"model is required"}                       /api/chat without model
//	404 {"error":"model '' not found"}                      /api/generate without model
//	404 {"error":"model 'x' not found"}                     chat, generate: unknown model, even when streaming
//	404 {"error":"model \"x\" not found, try pulling it first"}   embed, embeddings: unknown model
//	400 {"error":"\"x\" does not support thinking"}         "think": true on a plain model
//	500 {"error":"option \"num_ctx\" must be of type integer"}   an option of the wrong JSON type
//	500 {"error":"invalid format: \"\\\"xml\\\"\"; expected \"json\" or a valid JSON Schema object"}
//
// Options are type-checked as Ollama's api.Options.FromMap does, after the
// model is found and before it loads; unknown options are ignored. A format
// that is neither "json" nor an object is refused after the model has loaded,
// as Ollama's runner refuses it; when the answer was to stream, that 500
// carries Content-Type "application/json" without a charset, as Ollama's
// streamResponse writes errors that come before the first chunk (so does a
// fault from ErrorMidStream that strikes before any token).
//
// On /v1 paths errors are {"error":{"message","type","param","code"}}: the
// OpenAI layer's own refusals (bad JSON, an empty body — "EOF" —, no
// messages, a field of the wrong type, bad input) are 400
// "invalid_request_error"; refusals of the handler behind it keep their
// status and are typed "api_error", as in 0.17.4.
//
// # Models
//
// A model is loaded when a request needs it and it is not resident. Each
// load is counted ([Server.Loads], [Server.LoadsOf]), takes the load delay
// and shows in load_duration. The model then stays resident for the
// request's keep_alive: seconds or a duration string, negative for ever, 0
// to unload when the request ends, and Ollama's 5m when absent (a request
// without keep_alive, as every /v1 request is, leaves a resident model's
// keep_alive as it was). A chat
// without messages or a generate without prompt only loads the model
// (done_reason "load"), and with keep_alive 0 unloads it (done_reason
// "unload"). At most [WithMaxLoaded] models (default 3) are resident;
// loading another evicts an idle one as Ollama's scheduler does: the one
// with the shortest keep_alive, then by name; if none is idle, the first in
// that order is unloaded as soon as its requests end, and the load waits.
//
// Each loaded model serves [WithParallel] requests at once (default 1, as
// Ollama's OLLAMA_NUM_PARALLEL; always 1 for embedding models); later
// requests wait for a free slot, first come first served (a request that
// only loads or unloads a model takes none). A model is loaded
// with the request's runner options, the fields of Ollama's api.Runner:
// num_ctx, num_batch, num_gpu, main_gpu, use_mmap and num_thread, with
// Ollama's defaults (num_ctx 4096, num_batch 512, num_gpu -1, main_gpu 0,
// num_thread 0, use_mmap unset) for those a request leaves out; /v1
// requests never set them. A request whose model is loaded with the same
// runner options (a negative num_gpu matches any) shares its slots; one
// that asks for other values waits until the model's requests have ended
// and then reloads it, a counted load. As in Ollama's scheduler
// (server/sched.go), requests that need a load, reload or eviction queue
// and are dealt with one at a time, oldest first, while requests for a
// loaded model with matching options go straight to it, even when a reload
// or an eviction is waiting for it to become idle.
//
// Unlike Ollama, which unloads asynchronously after answering, the fake
// applies a request's residency change before sending its final chunk, so a
// test can check [Server.Resident] or /api/ps as soon as it has the answer.
//
// Replies are deterministic: "reply from MODEL to: PROMPT" unless
// [WithReply] scripts them, one token per word, after the token delay.
// options.num_predict (/v1: max_tokens) cuts them with done_reason
// "length". Durations are measured; token counts are word counts. Thinking
// models ([Model].Thinking) think first. Embeddings are fixed
// pseudo-random vectors derived from the model and the text. A client that
// disconnects aborts its generation.
//
// # Faults and records
//
// [Server.FailNext], [Server.HangNext], [Server.DropMidStream],
// [Server.ErrorMidStream] and [Server.SlowTokens] script failures of the
// next inference requests; [Server.Stop] and [Server.Start] take the whole
// server down (connections refused) and up again on the same port.
// [Server.Requests] records every request; [Server.InFlight] and
// [Server.MaxInFlight] count inference requests being handled, including
// those waiting for their model, so a test can assert that its caller never
// sent two at once. [Server.Serving] and [Server.MaxServing] count requests
// running on a model, holding one of its slots; [Server.Waiting] those held
// up by a load, a reload, an eviction, the scheduler's queue or a busy
// model; [Server.MaxModelsInFlight] is the largest number of distinct
// models that were running requests at the same time (a model reloaded
// with other options counts once, since its loads never serve at the same
// time). [Server.Loads] and [Server.LoadsOf] count loads, reloads included.
//
// # Not mirrored
//
// There are no real models, templates, tool calls, images or logprobs: those
// fields are accepted and ignored. A JSON schema in format (or /v1
// response_format) is accepted but neither applied nor checked: a real
// Ollama constrains the output to the schema, and refuses with 500 "invalid
// JSON schema in format" a schema llama.cpp cannot turn into a grammar,
// which only llama.cpp can decide. Memory does not limit residency, /api/ps
// reports the whole model in VRAM with the num_ctx it was loaded with, at
// most the 4096 its /api/show claims it was trained with (the default
// num_ctx is 4096 as on a machine with less than 23 GiB of VRAM), an
// embedding request takes one slot however many inputs it has (Ollama runs
// them at once, one slot each), a model to be unloaded or reloaded goes once
// its requests end even if a later request asked to keep it (Ollama lets a
// later explicit keep_alive cancel the unload), /api/show describes a
// made-up model (its modelfile, parameters, template, model_info and tensors
// are plausible, not any real model's), and prompt_eval_count counts words,
// not template tokens. Every token is one stream chunk; a real Ollama holds
// back tokens that end inside a UTF-8 character or may begin a stop
// sequence, so it sends fewer chunks than eval_count. /v1 ids count up
// instead of being random.
package ollamatest
