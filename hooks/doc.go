// Package hooks delivers hopper's events (DESIGN §6). Every state change of a
// job is an Event; Emit sends it, as a signed Standard Webhooks request, to the
// job's own webhook and to every configured webhook whose event filter
// matches, and hands it to the executable in the hooks directory named after
// the new state.
//
// Contract:
//
//   - Emit is the runner's only call. It writes one outbox file per webhook
//     delivery (each fsynced, then its directory, when the spool fsyncs) and
//     returns once they exist. It never waits on a receiver or a hook
//     process, so a receiver that hangs cannot delay the runner.
//   - Run is the dispatcher. It delivers pending files, those a previous
//     process left behind included, so a crash or SIGKILL loses no webhook.
//     Delivery is at least once: a receiver dedupes on webhook-id.
//   - A delivery is tried on the Schedule (Standard Webhooks': at once, then
//     after 5s, 5m, 30m, 2h, 5h, 10h and 10h, each ±10% jitter). Retry-After
//     on a failed answer makes the next attempt wait at least that long
//     (capped at 24h). Each attempt has Timeout (15s). A 2xx answer delivers
//     it; redirects are never followed (a 3xx is a failed attempt); 410 Gone
//     ends it at once and, for a configured endpoint, disables that endpoint
//     until `hopper hooks enable URL`. After the last attempt it is failed:
//     `hopper hooks` lists it, `hopper hooks redeliver ID` queues it again.
//   - Order: the events of one job reach one URL in the order they were
//     emitted; event N+1 is not sent before event N was delivered or failed.
//     Deliveries to one endpoint (scheme://host:port) run at most
//     Config.Workers at a time; different endpoints never wait on each other.
//   - Each request carries webhook-id (the same on every retry),
//     webhook-timestamp (unix seconds of this attempt) and, when a secret is
//     set, webhook-signature: "v1," and the base64 HMAC-SHA256 of
//     "id.timestamp.body" keyed by the secret's bytes after "whsec_". The
//     job's webhook is signed with Config.Secret; a configured webhook with
//     its own secret, else with Config.Secret. No secret: no signature.
//     The body is {"type", "timestamp", "data"}, data being the Event.
//   - Logs name a delivery's endpoint (scheme://host:port), never its URL,
//     which may hold a secret (chat webhooks do); the file has the URL.
//
// Trust: a job dropped into the spool as a file is trusted, since write
// access to the spool is the authorization; its webhook may reach any
// address, as may configured webhooks. A job that arrived over HTTP is
// untrusted (Emit's untrusted argument): its webhook is refused at dial time,
// after name resolution, when the address is loopback, private (RFC 1918),
// unique-local (fc00::/7), link-local, unspecified, multicast or otherwise
// special, unless Config.Allow names the host (exactly, or "*.example.com")
// or holds a CIDR or address containing it. Untrusted requests ignore
// HTTP_PROXY. A refused delivery fails at once, without retries.
//
// The outbox lives in the spool, one JSON file per delivery, never holding a
// secret. Its directories are spool.StateDirs: every file is written with
// the spool's durable write (a dot-named temporary file, fsync, rename) and
// read through the spool, never by path:
//
//	SPOOL/.hopper/outbox/
//	  pending/   msg_….json   waiting; next_attempt_at says when
//	  failed/    msg_….json   given up; last_error says why
//	  disabled/  HASH.json    configured endpoints that answered 410 Gone
//
// Delivery IDs sort by emission time. A delivery moves from pending/ to
// failed/ by rewriting it with state "failed" and then renaming it, so a
// crash between the two is completed by the next Run. Attempt counts are
// rewritten without fsync: a crash may repeat an attempt, never skip one.
// Pending, Failed, Status, Redeliver and Enable read and write only these
// files, so `hopper hooks` works beside a running `hopper serve`.
//
// One dispatcher per outbox: Run holds an flock on
// SPOOL/.hopper/outbox/dispatch.lock. A Run that finds it held (another
// process on the same spool) only runs exec hooks, leaves its deliveries to
// the holder, and takes over within a minute of the holder's exit.
//
// Exec hooks are not spooled and do not survive a crash. Run executes them
// one at a time, in event order, from a queue of up to 1000 (more are
// dropped with a warning). The executable Dir/STATE (done, failed, working,
// loading, queued, deferred) gets the Event as JSON on stdin and runs in its
// own process group; after ExecTimeout (30s) the whole group is killed. A
// missing or non-executable hook is skipped; a failing hook never changes
// the job. When Run's context ends, the running hook is killed and queued
// ones are dropped.
//
// A hook's environment is built afresh, never inherited whole, since
// hopper's own holds its settings, tokens and webhook secret
// (HOPPER_HOOKS_SECRET, HOPPER_TOKENS, …). It has, when hopper's
// environment sets them, PATH, HOME, LANG, every LC_*, TZ, USER, LOGNAME and
// TMPDIR (on Windows also SYSTEMROOT, WINDIR, COMSPEC, PATHEXT, USERPROFILE,
// TEMP and TMP), and the variables Config.Env names (hooks.env, never a
// HOPPER_* name); then HOPPER_JOB_ID, HOPPER_STATE, HOPPER_EVENT,
// HOPPER_SPOOL and HOPPER_RECORD (the record's path when the event fired,
// e.g. SPOOL/done/ID.json). Nothing else.
//
// A hook's stdout and stderr are read to their end, however much it
// writes, but only the first and the last 4 KiB of each are kept; when the
// hook ends they go to the log line by line, with a line "… N bytes
// omitted …" between them when something was dropped.
package hooks
