// Package httpfront is hopper's HTTP front end (DESIGN §5). It only reads
// and writes spool files, so it may run in its own process beside the
// runner; it notices jobs finishing and output arriving with fsnotify on
// cur/, deferred/, done/ and failed/ (the watcher is only a wake-up, fed to
// spool.FollowWith: every waiter also looks now and then, and polls when
// watching is unavailable).
//
// Endpoints:
//
//	POST   /jobs              submit a job file; 202, Location: /jobs/ID, the record so far.
//	                          Idempotency-Key (or the job's idempotency_key): the same key
//	                          and body within 24h is the same job (200, Idempotent-Replayed);
//	                          the same key with another body is 422.
//	GET    /jobs/{id}         the record; ?wait=30s long-polls until done or failed
//	GET    /jobs/{id}/out     live output as NDJSON, ending when the job ends
//	DELETE /jobs/{id}         queued, deferred or held: canceled now (200);
//	                          running: asked to stop (202); finished: 409
//	GET    /jobs              ?state=queued,working&limit=100, newest first
//	POST   /api/chat /api/generate /api/embed /api/embeddings
//	POST   /v1/chat/completions /v1/completions /v1/embeddings
//	                          the Ollama drop-in: queued as volatile jobs at priority 100
//	                          (X-Hopper-Priority overrides) and answered as Ollama answers
//	POST   /v1/files          OpenAI's upload (multipart file, purpose "batch"), up to MaxUpload
//	GET    /v1/files          uploads and batches' own files; GET, DELETE /v1/files/{id},
//	                          GET /v1/files/{id}/content
//	POST   /v1/batches        OpenAI's Batch API: a batch from an uploaded file; GET /v1/batches,
//	                          GET /v1/batches/{id}, POST /v1/batches/{id}/cancel (DESIGN §10)
//	GET    / /api/tags /api/ps /api/version /v1/models /v1/models/{model}, POST /api/show
//	                          proxied to the target unchanged
//	GET    /healthz           "ok" when the spool is there; never needs a token
//	GET    /metrics           Prometheus
//
// Drop-in answers follow Ollama: NDJSON chunks relayed live from cur/ID.out
// unless "stream": false (/v1: SSE "data:" events and "data: [DONE]" when
// "stream": true), one JSON object otherwise. The status line is held back
// until the first chunk, so a job the target refuses gets the target's own
// status and message. A failed job maps to a status as follows:
//
//	target       the target's status (4xx, or 5xx after the retries); 500 for an
//	             error inside a 200 stream
//	bad_input    400
//	canceled     499 "request canceled: REASON" (Ollama's status for a canceled request)
//	timeout      504
//	expired      503 (as Ollama's full queue)
//	unreachable  502
//	interrupted  500
//
// in Ollama's {"error": "..."} shape, or OpenAI's {"error": {"message",
// "type", "param", "code"}} on /v1 with type "api_error", as Ollama's
// OpenAI layer reports every failure of the handler behind it (requests
// that layer refuses itself, such as malformed JSON, are
// "invalid_request_error"). Once a stream has begun, an error ends
// it with an {"error": ...} line (/v1: a data: event holding the error
// object). An attempt that fails after part of its output was streamed is
// not retried for the client: the stream ends with the error and the job is
// canceled, since another attempt's output could not continue the first.
// A client that disconnects cancels its job.
//
// Errors on every endpoint are JSON: 400 malformed JSON (on /jobs with its
// line, column and byte offset; on the drop-in in Ollama's words) or a webhook refused,
// 401 with WWW-Authenticate: Bearer, 403 a browser request refused (below),
// 404 unknown job, 409, 413, 415, 422 a JSON body that is not a valid job,
// 429 a client over its share of long-polls, 503 with Retry-After when the
// limits below are reached, 507 when the spool's disk is full. A failure of
// the spool is answered with the operation and the condition, never a path
// or the system's words (those go to the log).
//
// Limits, each its own, so that one kind of request cannot starve another:
// BodyBudget bounds the request body bytes held in memory by all requests
// together (a body that does not fit is 503 at once); MaxWaiters the drop-in
// requests and synchronous function calls waiting on their jobs; MaxPollers
// the long-polls and output streams, and MaxPollersPerIP those of one
// client address (an IPv6 client by its /64). A body is read into one
// buffer of its size and becomes the job file in place (see rewriteObject):
// the front holds the body and, while the spool writes it, one parsed copy.
//
// Browsers (see origin.go): on a connection to a loopback address the Host
// header must name this machine or a host of Origins (DNS rebinding); a
// request whose Origin is not allowed (Origins, Ollama's defaults, the
// front's own) is 403, as is a cross-site one without Origin that changes
// state with a "simple" content type; CORS preflights from allowed origins
// are answered before the token check. Requests without Origin, as every
// client but a browser sends them, are not affected.
//
// Webhooks of jobs arriving over HTTP (POST /jobs, POST /functions/{name}
// through the function's own, the drop-in's "webhook", and the hopper lines
// of a batch created with POST /v1/batches) must be http or https, and are
// refused (400) when their host is an address that deliveries of such jobs
// may not reach unless hooks.allow (WebhookAllow) lists it; the hooks
// package decides, as it does when it connects.
//
// The batch endpoints answer OpenAI's objects and errors. Every batch is
// listed, also those dropped as files into new/; a batch's own files have
// IDs of their own, file-in-NAME (its input), file-out-NAME (done/NAME.jsonl)
// and file-err-NAME (failed/NAME.errors.jsonl), so output_file_id works
// for every batch. An ID there that is not a valid one is 404, as OpenAI
// answers an unknown one.
//
// Idempotency keys live in the spool's state directory
// .hopper/idempotency/ (a spool.StateDir), one file per key naming the job
// and the front that claimed it. A retry finds a key whose job does not
// exist yet "still being handled" (409, Retry-After) for 30 s only while
// that front still runs: a key left by a front that was killed between
// claiming it and writing the job is free again at once.
//
// Job IDs in paths must pass spool.ValidID; anything else ("..",
// "%2e%2e", "/etc/passwd") is 400 before the spool is touched. The front
// opens no path under the spool itself: it reads and writes through the
// spool's verbs (records, Stats for /metrics, FollowWith for waiting and
// live output, Open and Lstat for batch and uploaded files, a StateDir for
// the keys), which go through the spool's os.Root.
package httpfront
