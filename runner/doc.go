// Package runner is hopper's worker: one Runner per spool and Ollama target
// claims queued jobs one at a time, runs each against the target, and moves
// it to done/, deferred/ or failed/ (DESIGN §3, §4).
//
// The choice of the next job is Pick, a pure function of the queue index,
// the models resident on the target, the clock and the Policy, so it can be
// table-tested. The loop around it owns all mutable state in one goroutine;
// the request to the target runs in a second goroutine it waits on, so a
// cancel request or a shutdown can abort it.
//
// Failures fall into two budgets. When the target is unavailable (refused,
// reset before answering, 429, 503) the runner keeps the job, probes the
// target with capped exponential backoff, and charges no attempt. When the
// job itself failed (500, a broken stream, an error inside the stream) the
// record is deferred with backoff and jitter until max_attempts, then fails.
// Other 4xx answers fail the job at once with Ollama's own message.
//
// Execution is at-least-once: a job running when hopper is killed runs
// again on the next start (attempt + 1), first of all.
package runner
