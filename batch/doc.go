// Package batch runs batches (DESIGN §10): a file of requests, one per
// line, in, a file of answers, one per line in input order, out, in
// OpenAI's Batch API shapes (internal/openai).
//
// A batch is a file NAME.jsonl in new/ (dropped there, or written by
// Submit for `hopper batch submit` and POST /v1/batches), each line a
// hopper job object or an OpenAI Batch API line ({"custom_id", "method":
// "POST", "url", "body"}). The runner claims it into batches/NAME.jsonl
// (Claim), checks and counts it (Validate, Check), writes the record
// batches/NAME.json, and queues it, a chunk at a time, as one job per line
// in new/ (Expand): NAME~000001, NAME~000002, … (spool.LineSep), all at the
// batch's priority, each carrying a "batch" object with the batch's name,
// the line's custom_id and its key (spool.LineKey), the proof that hopper
// wrote it. When every line has ended, Finish writes the answers to
// done/NAME.jsonl, in input order, and the failed ones also to
// failed/NAME.errors.jsonl. A line that is not a valid request fails on
// its own (its record in failed/, bad input); two lines sharing a
// custom_id, or no line at all, refuse the whole batch (RefusedError).
//
// Contract:
//
//   - A Store holds nothing but its spool: any number, in any processes,
//     may serve one spool. Everything it touches goes through the spool's
//     verbs; it never opens a path under the spool root itself.
//   - batches/NAME.json is written by whoever submits the batch (state
//     validating, with its Options) and from then on by the runner's one
//     batches goroutine alone (Claim, Validate, Expand, Finish, Write). A
//     request to cancel is a separate file, batches/NAME.cancel (Cancel),
//     that the runner acts on; Get and List show such a batch as
//     cancelling.
//   - Submit writes the record before it places the input, in one rename:
//     a submitter killed between the two leaves a record that
//     FailAbandoned ends after AbandonedAfter.
//   - Expand writes the lines' jobs, then (one fsync for the chunk) the
//     record saying how far it got: after a crash the record is at most a
//     chunk behind, and Expand with check set skips lines already written.
//   - Finish streams the output, a line at a time, and Check streams the
//     input: neither holds a batch's lines or answers in memory. Check
//     keeps each custom_id as a 128-bit fingerprint, not its bytes.
//   - Finish calls its recorded func once the output is durable and before
//     the final record: a crash between leaves the batch finalizing, and
//     the next start writes the output, and calls recorded, again.
//   - The records of a batch's lines stay while the batch has not ended
//     (Prune keeps them; spool.Prune alone does not know them), since the
//     output is written from them; an ended batch is pruned whole with
//     done/'s retention.
//   - Uploads (OpenAI's /v1/files) are files/ID.jsonl with their
//     description files/ID.json (PutFile: the bytes first); SubmitFile
//     checks one and links it into new/ as a batch, without a copy, so
//     DeleteFile of the upload leaves the batch its input. DeleteFileOf
//     removes a batch's own input, output or errors file once it ended.
//   - A batch counted before spool.LineSep was reserved keeps its lines'
//     old names (NAME.000001; Record.LineSep is ".") until it ends.
package batch
