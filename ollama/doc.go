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
// errors.Is(err, context.DeadlineExceeded) tell cancel from timeout. The
// response body is closed at that moment, so a read in progress stops even
// when the target trickles bytes or the transport ignores the context; a
// line cut short is never passed to onChunk.
//
// What the target sends is bounded: one stream line or SSE event by
// [Client.MaxLine] (16 MiB), the answer (a JSON answer, or what is folded
// from a stream) by [Client.MaxAnswer] (256 MiB); beyond either the request
// fails with a *JobFailedError wrapping [ErrLineTooLong] or
// [ErrAnswerTooLarge] and the connection is closed. An error response is
// read up to 64 KiB, and the target's text that an error carries is cut at
// 4 KiB and marked with "…".
//
// Streams are folded without keeping their chunks: each line is read into
// a reused buffer, handed to onChunk (valid only during the call) and
// scanned in place; the text it carries is appended, already escaped, to
// blocks that never move, and the answer is written once, at its exact
// size. A stream costs about its answer twice (the folded text and the
// answer) and a few buffers, whatever its length.
//
// Model names compare as Ollama compares them ([SameModel],
// [NormalizeModel]); [KeepAlive] turns a configured keep_alive into the JSON
// value Ollama accepts.
//
// A Client is safe for concurrent use once its exported fields are set. The
// package keeps no global state and knows nothing of the spool or runner.
package ollama
