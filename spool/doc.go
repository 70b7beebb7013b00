// Package spool is hopper's maildir-style job store: a directory tree in which
// every state of every job is one plain file, readable with ls, cat and jq.
//
// Layout (see DESIGN §1):
//
//	tmp/       writers stage files here, then rename(2) them into place
//	new/       queued jobs: NAME.json, exactly as submitted
//	cur/       claimed jobs: ID.json (the record), ID.out (live output),
//	           ID.cancel (a request to abort the running job)
//	deferred/  records waiting to retry; not_before says when
//	hold/      jobs parked by a person; never run, never expire
//	done/      finished records
//	failed/    failed, canceled, expired and rejected records; ID.raw keeps
//	           the original bytes of bad input too large or not text
//	batches/   batches (package batch): NAME.jsonl (the input), NAME.json
//	           (the record), NAME.cancel (a request to cancel it)
//	files/     files uploaded over HTTP (package batch; OpenAI's /v1/files):
//	           ID.jsonl, ID.json
//	PAUSED     if it exists, the runner claims nothing new
//	.hopper/   the runner lock and runtime state
//
// Contract:
//
//   - Every move between states is a rename(2) within one filesystem; on
//     Linux it is renameat2(RENAME_NOREPLACE), so no record is ever
//     overwritten. A move whose source is gone returns ErrGone: someone else
//     took the file first.
//   - Files are created in tmp/ and renamed into place. With Options.Fsync the
//     file is fsynced before the rename and the directory after it wherever
//     recovery depends on it (submits, and records entering done/, failed/,
//     deferred/). Intermediate rewrites (loading, working) and ID.out are not
//     fsynced.
//   - Completion is two steps: rewrite cur/ID.json with its final state, then
//     rename it. Recover finishes a move a crash interrupted, and hands back
//     the jobs that were running so they run again first.
//   - All access goes through an os.Root opened on the spool directory, and
//     job files are opened with O_NOFOLLOW: a symlink dropped into new/ never
//     makes hopper read or write outside the spool.
//   - One runner per spool holds Lock; every other operation (submit, cancel,
//     hold, retry, ...) is safe to run from other processes at the same time,
//     because each one is a single rename that either wins or finds the file
//     gone.
//   - spool/ is the only package that opens paths under the spool root.
//     Others use its verbs, below; none of them is handed the os.Root.
//   - There is one durable write (write.go): a dot-named file staged in tmp/
//     (beside itself in cur/ and under .hopper/), fsynced, renamed into
//     place, its directory fsynced. Job files, records, batch output,
//     uploads and every StateDir's files go through it.
//
// The verbs other packages use, beyond the job's life (Submit, Claim,
// Update, Finish, Requeue, Recover, Cancel, Retry, Hold, Release, Prune):
//
//   - Reading: Get, Find, List, Finished (a done or failed record, or nil),
//     Stats (counts by directory, oldest queued, paused), QueuedAt, Open and
//     Lstat (a file by the spool-relative path the spool gave it: a batch's
//     Input, Output and ErrorsFile, batch.FilePath), CheckDir, OutputLines, and
//     the Catalog and Queue indexes.
//   - Following: Wait, Follow and FollowWith relay a job's live output
//     (cur/ID.out) line by line across attempts and return its final
//     record; FollowWith takes a wake-up channel from a caller's own
//     watcher, and polls without one.
//   - State of their own: StateDir(name) is .hopper/NAME for a package's
//     files (the hook outbox, the front's idempotency keys) with Make,
//     WriteFile (durable, replacing), Create (durable, never replacing),
//     ReadFile, Names, Stat, Move, Remove, OpenFile (a lock), Sync and
//     RemoveStale. Names are single file names, never followed through a
//     symlink.
//   - Fronts: HoldFront and FrontAlive name a front process and tell
//     whether it still runs (its flock), for the jobs and idempotency keys
//     it leaves behind.
//
// Batches (DESIGN §10) are package batch's: its files in batches/ and
// files/, its output in done/ and failed/, and the OpenAI shapes are its and
// internal/openai's. The spool knows of them only what every job shares:
// which files in new/ are batches (BatchCandidate), and the names of the
// jobs their lines become, NAME~000042 (LineOf). LineSep is reserved for
// those: ValidID accepts such an ID, but PlainID, the rule for any name a
// person gives a job or a batch, does not, and Claim runs a file dropped
// under such a name only if hopper wrote it as that line (LineKey, an
// HMAC under .hopper/secret, in its "batch" object), quarantining it
// otherwise; a file dropped as NAME.000001.json is a job like any other.
// Batches counted before LineSep was reserved keep their lines' old names,
// NAME.000001, until they end (LegacyLineOf). For batch/ the spool also
// exports verbs over its own directories (verbs.go): ReadDir, ReadFile,
// Stat, Remove, Exists, ChangeTime, OpenRegular, WriteFile, CreateFile,
// NewPending (the durable write, streamed), Move, Link, SyncAll, Taken,
// UniqueName, Reject (a job that never ran, failed) and CancelQueued.
//
// The package knows nothing of Ollama: a Queue is given the function that
// compares model names.
package spool
