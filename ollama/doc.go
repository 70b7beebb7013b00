// Package ollama is hopper's client for its target, an Ollama server.
//
// A [Client] posts request bodies that the caller has already prepared (the
// job's Ollama or OpenAI-style body with "stream" set) and hands back the
// target's final answer in the shape Ollama gives with "stream": false,
// whatever framing the answer arrived in:
//
//   - application/x-ndjson (Ollama's native stream): every line goes to the
//     caller's onChunk as it arrives, and the lines are folded into the single
//     object Ollama would have sent, following the server's own aggregation
//     (message.content, message.thinking and response joined, tool calls and
//     logprobs collected, every other field taken from the final done chunk);
//   - text/event-stream (the OpenAI-compatible /v1 endpoints): every data:
//     payload goes to onChunk and the chunks are folded into the
//     non-streaming chat.completion or text_completion object; the stream must
//     end with "data: [DONE]";
//   - application/json: returned as it is.
//
// Failures are typed so that the caller can choose a retry budget with
// errors.As:
//
//   - [*UnavailableError]: the target is down or busy (connection refused, DNS
//     failure, connection closed before any response, 429, 503). Not the
//     job's fault.
//   - [*JobFailedError]: this request failed but may succeed if sent again
//     (500 and the other 5xx, a connection lost after the response started,
//     an {"error": ...} line inside a 200 stream, a stalled stream).
//   - [*RejectedError]: any other 4xx; its Error is Ollama's own message.
//
// When the caller's context ends, the request is aborted and the returned
// error wraps ctx.Err(), so errors.Is(err, context.Canceled) and
// errors.Is(err, context.DeadlineExceeded) tell cancel from timeout.
//
// Model names compare as Ollama compares them ([SameModel],
// [NormalizeModel]); [KeepAlive] turns a configured keep_alive into the JSON
// value Ollama accepts.
//
// A Client is safe for concurrent use once its exported fields are set. The
// package keeps no global state and knows nothing of the spool or runner.
package ollama
