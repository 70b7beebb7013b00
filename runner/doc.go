// Package runner is hopper's worker (DESIGN §3, §4). One Runner serves one
// spool and drives every target through a Lane of its own:
//
//   - a Lane is the only sender of requests to its target. It keeps at most
//     Parallel requests in flight (the server's OLLAMA_NUM_PARALLEL), all
//     of one load key — the model plus the options that make Ollama reload
//     it (ollama.LoadKey) — and moves to another key only once they have
//     all finished, so a server never swaps a model under running requests.
//     It claims a job by rename, runs it, and records the outcome.
//   - one dispatcher goroutine is the only claimer: whenever the queue
//     changes or a slot frees, it asks Pick, for each lane with a free slot,
//     which job that lane should take, and starts it in a goroutine of its
//     own. Pick is a pure function of the queue index, every lane's state,
//     the clock and the Policy, so it is table-tested.
//   - the keeper recovers what a crash left in cur/ at start, then keeps the
//     queue index fed (the watcher), prunes old records and carries batches.
//
// The lanes' scheduling state (slots in use, the key in flight, resident
// and installed models, health) is guarded by one mutex; each running job
// belongs to its goroutine, which releases its slot when it ends. Residency
// comes from /api/ps and /api/tags at start, after each load and every
// Refresh — never one probe per job. The state of every target is
// published to .hopper/targets.json for `hopper status` and /metrics.
//
// Failures fall into two budgets. When a target is unavailable (refused,
// reset before answering, 429, 503, or a broken stream followed by a failed
// probe) its lane stops: the job returns to the queue with no attempt
// charged (to deferred/ with the state queued, keeping its place in line),
// other lanes take it, and the lane probes /api/version with capped
// exponential backoff until it answers. When the job itself failed (500,
// a broken stream from a server that still answers, an error inside the
// stream) the record is deferred with backoff and jitter until
// max_attempts, then fails. "Model not found" on one target sends the job
// to another that may have it; it fails with Ollama's words once none has.
// Other 4xx answers fail the job at once with Ollama's own message.
//
// Execution is at-least-once: a job running when hopper is killed goes back
// in line on the next start (attempt + 1). On shutdown no lane claims
// anything new; running jobs get ShutdownGrace to finish, then are aborted
// and left queued in cur/ without charging an attempt.
package runner
