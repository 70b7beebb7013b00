package torture

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hopper-dev/hopper/hooks"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

var (
	tableFlag = flag.Bool("corpus.table", false, "print the bad-input corpus as a Markdown table")
	bugsFlag  = flag.Bool("torture.bugs", false, "run the cases skipped as known bugs or unbuilt features, to see whether they pass now")
)

// The corpus runs with a small max_job_size, so the cases at the limit are
// cheap; the 100 MB file is over any limit.
const corpusMaxJobSize = 2 << 20

// placement is how a corpus case reaches new/.
type placement int

const (
	atomically   placement = iota // written in tmp/, then renamed into new/ (hopper submit, rsync, mv)
	inPlace                       // written straight into new/ (cat > new/x.json)
	halfThenRest                  // half written in place, the rest 300 ms later (within settle)
	halfOnly                      // half written in place, never finished
	symlink                       // a symlink to link(w)
	fifo                          // mkfifo
	socket                        // a listening unix socket
	directory                     // mkdir
	hardlink                      // a hard link to a file outside the spool
	twice                         // dropped, then dropped again under the same name once the first has a record
	vanish                        // written in place and removed at once
	tmpOnly                       // written in tmp/ and never renamed
)

var placementNames = map[placement]string{
	atomically: "tmp/ then rename", inPlace: "written in place", halfThenRest: "half, rest 300ms later",
	halfOnly: "half, never finished", symlink: "symlink", fifo: "FIFO", socket: "unix socket",
	directory: "directory", hardlink: "hard link", twice: "same name twice", vanish: "written then removed",
	tmpOnly: "left in tmp/",
}

// keep is where a record keeps the original bytes of its job.
type keep int

const (
	keepNone      keep = iota
	keepJob            // "job": the job as submitted (JSON-equal: same keys, order and number text)
	keepJobBOM         // "job": the job without its UTF-8 byte order mark
	keepRaw            // "job_raw": the bytes as text
	keepFile           // "job_file": failed/ID.raw holds the bytes
	keepRecord         // a record moved back into new/: its job, and its earlier round in history
	keepUntouched      // nothing read: the file (or what a link points at) is as it was
)

var keepNames = map[keep]string{keepNone: "", keepJob: "job", keepJobBOM: "job (BOM dropped)", keepRaw: "job_raw",
	keepFile: "ID.raw", keepRecord: "job + history", keepUntouched: "untouched"}

// want is where a corpus case must end: dir is done, failed, new (ignored
// and left there), tmp (left there), or "" (nowhere: it is gone).
type want struct {
	dir    string
	kind   spool.ErrorKind
	status int    // kind target: the target's status
	msg    string // a substring of the record's error message
	keep   keep
	// source: the record's ID is generated and its source names the
	// dropped file.
	source bool
	// hook is a webhook URL in the case's bytes. With hookMsg empty no
	// delivery to it may ever be recorded (it belongs to a job hopper
	// must not run or read); otherwise every delivery to it fails at its
	// first attempt, never sent, with hookMsg in its error.
	hook, hookMsg string
	// unrun is a prompt in the case's bytes that the target must never be
	// asked to run.
	unrun string
}

// reply is what the HTTP front must answer a body: a status and a
// substring of the error message (Ollama's {"error": "..."}, or hopper's
// {"error": {"message": ...}}).
type reply struct {
	status int
	msg    string
	// byTarget: the front queued the job and relays the target's
	// refusal, so the job's record is in failed/.
	byTarget bool
	// mayRefuse: a 413 or 422 refusal is as good as the status.
	mayRefuse bool
}

// badCase is one kind of bad (or odd) input.
type badCase struct {
	name  string
	file  string        // testdata/badinput/FILE holds the bytes
	gen   func() []byte // or they are made here
	size  int64         // or they are a job padded to this size, made as they are written
	drop  string        // the name in new/ (default NAME.json)
	place placement
	link  func(c *corpus) string // symlink: the link's target
	want  want
	// jobs and chat are what POST /jobs and POST /api/chat answer the same
	// bytes; zero when the case is about files only.
	jobs, chat reply
	// httpSkip says why the HTTP half of the case is skipped: a bug or a
	// feature not built yet.
	httpSkip string
}

func (c badCase) dropName() string {
	if c.drop != "" {
		return c.drop
	}
	return c.name + ".json"
}

// bytes returns the case's bytes; nil for one too large to hold (see
// stream).
func (c badCase) bytes(tb testing.TB) []byte {
	tb.Helper()
	switch {
	case c.size > 8<<20:
		return nil
	case c.size > 0:
		data, _ := io.ReadAll(padded(c.size))
		return data
	case c.gen != nil:
		return c.gen()
	case c.file != "":
		data, err := os.ReadFile(filepath.Join("testdata", "badinput", c.file))
		if err != nil {
			tb.Fatal(err)
		}
		return data
	}
	return nil
}

// stream returns the case's bytes as a reader, and how many there are.
func (c badCase) stream(tb testing.TB) (io.Reader, int64) {
	if c.size > 0 {
		return padded(c.size), c.size
	}
	data := c.bytes(tb)
	return bytes.NewReader(data), int64(len(data))
}

// padded is a valid job of exactly n bytes: a prompt and a long "pad"
// field, which passes through to the target.
func padded(n int64) io.Reader {
	head, tail := `{"model": "m1", "prompt": "padded", "pad": "`, `"}`
	return io.MultiReader(strings.NewReader(head),
		io.LimitReader(repeatReader('a'), n-int64(len(head)+len(tail))), strings.NewReader(tail))
}

// repeatReader reads as an endless run of one byte.
type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	if len(p) > 0 {
		p[0] = byte(r)
		for n := 1; n < len(p); n *= 2 {
			copy(p[n:], p[:n])
		}
	}
	return len(p), nil
}

func sha(r io.Reader) [sha256.Size]byte {
	h := sha256.New()
	_, _ = io.Copy(h, r)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

const (
	badJSON   = "the job is not valid JSON"
	notObject = "a job must be a JSON object"
	notUTF8   = "it is not UTF-8 text"
)

// Frequent answers of the front.
var (
	jobs422 = func(msg string) reply { return reply{status: http.StatusUnprocessableEntity, msg: msg} }
	bad400  = func(msg string) reply { return reply{status: http.StatusBadRequest, msg: msg} }
	ok202   = reply{status: http.StatusAccepted}
	// byTarget is the target's refusal, relayed by the drop-in.
	byTarget = func(status int, msg string) reply { return reply{status: status, msg: msg, byTarget: true} }
	ok200    = reply{status: http.StatusOK}
)

// badField is a case whose job gives one of hopper's fields a value of the
// wrong type or range: the runner fails it as bad input with msg, and both
// fronts refuse it naming short.
func badField(name, msg, short string) badCase {
	return badCase{name: name, file: name + ".json", want: failedBad(msg, keepJob), jobs: jobs422(short), chat: bad400(short)}
}

func failedBad(msg string, k keep) want {
	return want{dir: spool.DirFailed, kind: spool.KindBadInput, msg: msg, keep: k}
}

func done(k keep) want { return want{dir: spool.DirDone, keep: k} }

var ignored = want{dir: spool.DirNew, keep: keepUntouched}

// withHook adds to w a webhook URL in the case's bytes, what its
// deliveries must fail with ("": there must be none), and a prompt that
// must never run.
func withHook(w want, url, msg, unrun string) want {
	w.hook, w.hookMsg, w.unrun = url, msg, unrun
	return w
}

// overHook is the webhook of a job one byte over max_job_size.
const overHook = "http://127.0.0.1:9/over-the-limit"

func overWithHook() []byte {
	head := `{"model": "m1", "prompt": "over the limit, with a webhook", "webhook": "` + overHook + `", "pad": "`
	return []byte(head + strings.Repeat("a", corpusMaxJobSize+1-len(head)-len(`"}`)) + `"}`)
}

// corpus is the bad-input corpus: each case with what DESIGN makes of it.
func badCases() []badCase {
	nested := func(depth int) func() []byte {
		return func() []byte {
			return []byte(`{"model": "m1", "prompt": "deep", "meta": ` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)
		}
	}
	return []badCase{
		// Not JSON at all.
		{name: "truncated", file: "truncated.json", want: failedBad("ends early", keepRaw),
			jobs: bad400("ends early"), chat: bad400("unexpected EOF")},
		{name: "syntax-error", file: "syntax-error.json", want: failedBad("invalid character", keepRaw),
			jobs: bad400("line 1, column 10"), chat: bad400("invalid character")},
		{name: "empty", file: "empty.json", want: failedBad("the job file is empty", keepRaw),
			jobs: bad400("empty"), chat: bad400("missing request body")},
		{name: "whitespace", file: "whitespace.json", want: failedBad("the job file is empty", keepRaw),
			jobs: bad400("empty"), chat: bad400("missing request body")},
		{name: "binary", file: "binary.bin", want: failedBad(notUTF8, keepFile),
			jobs: bad400(badJSON), chat: bad400("invalid character")},
		{name: "utf16le", file: "utf16le.json", want: failedBad(notUTF8, keepFile),
			jobs: bad400(badJSON), chat: bad400("invalid character")},
		{name: "utf16be", file: "utf16be.json", want: failedBad(notUTF8, keepFile),
			jobs: bad400(badJSON), chat: bad400("invalid character")},
		{name: "nul-in-string", file: "nul-in-string.json", want: failedBad("invalid character", keepRaw),
			jobs: bad400(badJSON), chat: bad400("invalid character")},
		{name: "nul-bytes", file: "nul-bytes.json", want: failedBad("invalid character", keepRaw),
			jobs: bad400(badJSON), chat: bad400("invalid character")},
		{name: "trailing-garbage", file: "trailing-garbage.json", want: failedBad("after top-level value", keepRaw),
			// Ollama (gin) reads the first JSON value and ignores the rest.
			jobs: bad400("after top-level value"), chat: ok200},
		{name: "two-objects", file: "two-objects.json", want: failedBad("after top-level value", keepRaw),
			jobs: bad400("after top-level value"), chat: ok200},
		{name: "deeply-nested", gen: nested(20000), want: failedBad("exceeded max depth", keepRaw),
			jobs: bad400("exceeded max depth"), chat: bad400("exceeded max depth")},
		{name: "text-over-the-inline-limit", gen: func() []byte { return bytes.Repeat([]byte("not json "), 170000) }, // 1.5 MiB: over the 1 MiB kept inline
			want: failedBad(badJSON, keepFile), jobs: bad400(badJSON), chat: bad400("invalid character")},
		{name: "100mb", size: 100 << 20, want: failedBad("over the limit", keepFile),
			jobs: reply{status: http.StatusRequestEntityTooLarge, msg: "larger than the limit"}, chat: reply{status: http.StatusRequestEntityTooLarge, msg: "larger than the limit"}},
		{name: "one-byte-over-the-limit", size: corpusMaxJobSize + 1, want: failedBad("over the limit", keepFile),
			jobs: reply{status: http.StatusRequestEntityTooLarge, msg: "larger than the limit"}, chat: reply{status: http.StatusRequestEntityTooLarge, msg: "larger than the limit"}},
		// Never read, so its webhook is never known.
		{name: "over-the-limit-with-webhook", gen: overWithHook, want: withHook(failedBad("over the limit", keepFile), overHook, "", "over the limit, with a webhook"),
			jobs: reply{status: http.StatusRequestEntityTooLarge, msg: "larger than the limit"}, chat: reply{status: http.StatusRequestEntityTooLarge, msg: "larger than the limit"}},
		// Accepted and run, or refused: never accepted and then failed (it
		// was, until Submit checked the size after adding "origin").
		{name: "exactly-the-limit", size: corpusMaxJobSize, want: done(keepJob), jobs: reply{status: http.StatusAccepted, mayRefuse: true}},

		// JSON, but not an object.
		{name: "top-array", file: "top-array.json", want: failedBad(notObject+", got array", keepJob),
			jobs: jobs422(notObject), chat: bad400("cannot unmarshal array")},
		{name: "top-string", file: "top-string.json", want: failedBad(notObject+", got string", keepJob),
			jobs: jobs422(notObject), chat: bad400("cannot unmarshal string")},
		{name: "top-null", file: "top-null.json", want: failedBad(notObject+", got null", keepJob),
			jobs: jobs422(notObject), chat: bad400("model is required")},
		{name: "top-number", file: "top-number.json", want: failedBad(notObject+", got number", keepJob),
			jobs: jobs422(notObject), chat: bad400("cannot unmarshal number")},
		{name: "top-bool", file: "top-bool.json", want: failedBad(notObject+", got bool", keepJob),
			jobs: jobs422(notObject), chat: bad400("cannot unmarshal bool")},

		// Objects with hopper's fields of the wrong type or value.
		{name: "model-number", file: "model-number.json", want: failedBad(`"model" must be a string, got the number 42`, keepJob),
			jobs: jobs422(`"model" must be a string`), chat: bad400("cannot unmarshal number into Go struct field ChatRequest.model")},
		{name: "missing-model", file: "missing-model.json", want: failedBad(`"model" is required`, keepJob),
			jobs: jobs422(`"model" is required`), chat: bad400("model is required")},
		{name: "blank-model", file: "blank-model.json", want: failedBad(`"model" is required`, keepJob),
			jobs: jobs422(`"model" is required`), chat: reply{status: http.StatusNotFound, msg: "model '   ' not found"}},
		{name: "no-endpoint", file: "no-endpoint.json", want: failedBad("cannot tell which endpoint", keepJob),
			// For Ollama a chat without messages loads the model.
			jobs: jobs422("cannot tell which endpoint"), chat: ok200},
		{name: "endpoint-number", file: "endpoint-number.json", want: failedBad(`"endpoint" must be a string`, keepJob),
			// The drop-in sets the endpoint from its path.
			jobs: jobs422(`"endpoint" must be a string`), chat: ok200},
		{name: "unknown-endpoint", file: "unknown-endpoint.json", want: failedBad(`unknown endpoint "teleport"`, keepJob),
			jobs: jobs422(`unknown endpoint "teleport"`), chat: ok200},
		{name: "function-array", file: "function-array.json", want: failedBad(`"function" must be a string`, keepJob),
			jobs: jobs422(`"function" must be a string`), chat: bad400("model is required")},
		{name: "vars-string", file: "vars-string.json", want: failedBad(`"vars" must be a JSON object`, keepJob),
			jobs: jobs422(`"vars" must be a JSON object`), chat: bad400("model is required")},
		{name: "unknown-function", file: "unknown-function.json", want: failedBad(`unknown function "no-such-function"`, keepJob),
			// DESIGN §8: the front validates before accepting, and
			// functions/ is the front's too.
			jobs: jobs422("no-such-function"), chat: bad400("model is required")},
		// A drop-in body may carry hopper's fields; they are checked.
		badField("webhook-object", `"webhook" must be a string`, `"webhook" must be a string`),
		badField("priority-string", `"priority" must be an integer, got the string "high"`, `"priority" must be an integer`),
		badField("priority-fraction", `"priority" must be an integer, got the number 1.5`, `"priority" must be an integer`),
		badField("priority-huge", `"priority" must be an integer`, `"priority" must be an integer`),
		badField("priority-1e400", `"priority" must be an integer`, `"priority" must be an integer`),
		badField("max-attempts-string", `"max_attempts" must be an integer`, `"max_attempts" must be an integer`),
		badField("max-attempts-negative", `"max_attempts" must be 1 or more`, `"max_attempts" must be 1 or more`),
		badField("timeout-number", `"timeout" must be a duration`, `"timeout" must be a duration`),
		badField("timeout-word", `"timeout" must be a duration like "90s" or "10m", got "forever"`, `"timeout" must be a duration`),
		badField("timeout-negative", `"timeout" must be a duration`, `"timeout" must be a duration`),
		badField("max-age-bool", `"max_age" must be a duration`, `"max_age" must be a duration`),
		badField("idempotency-key-number", `"idempotency_key" must be a string`, `"idempotency_key" must be a string`),
		{name: "origin-number", file: "origin-number.json", want: failedBad(`"origin" must be a string`, keepJob),
			// POST /jobs checks hopper's fields as a job file's; the drop-in
			// takes an Ollama request, in which "origin" is no field: the
			// front writes its own over whatever came.
			jobs: jobs422(`"origin" must be a string`), chat: ok200},

		// Odd but valid, or refused by the target rather than by hopper.
		{name: "utf8-bom", file: "utf8-bom.json", want: done(keepJobBOM),
			jobs: bad400(badJSON), chat: bad400("invalid character")},
		{name: "invalid-utf8-in-string", file: "invalid-utf8-in-string.json", want: done(keepJob), jobs: ok202, chat: ok200},
		{name: "trailing-newlines", file: "trailing-newlines.json", want: done(keepJob), jobs: ok202, chat: ok200},
		{name: "meta-string", file: "meta-string.json", want: done(keepJob), jobs: ok202, chat: ok200},
		{name: "stream-string", file: "stream-string.json", want: done(keepJob),
			jobs: ok202, chat: bad400("cannot unmarshal string into Go struct field ChatRequest.stream")},
		{name: "keep-alive-numeric-string", file: "keep-alive-numeric-string.json", want: done(keepJob), jobs: ok202, chat: ok200},
		{name: "deep-but-allowed", gen: nested(500), want: done(keepJob), jobs: ok202, chat: ok200},
		{name: "duplicate-keys", file: "duplicate-keys.json", // the last "model" wins, as in Ollama
			want: want{dir: spool.DirFailed, kind: spool.KindTarget, status: 404, msg: "model 'nope' not found", keep: keepJob},
			jobs: ok202, chat: byTarget(http.StatusNotFound, "model 'nope' not found")},
		{name: "keep-alive-object", file: "keep-alive-object.json",
			want: want{dir: spool.DirFailed, kind: spool.KindTarget, status: 400, msg: "Unsupported type", keep: keepJob}, jobs: ok202,
			chat: byTarget(http.StatusBadRequest, "Unsupported type")},
		{name: "messages-string", file: "messages-string.json",
			want: want{dir: spool.DirFailed, kind: spool.KindTarget, status: 400, msg: "cannot unmarshal string", keep: keepJob}, jobs: ok202,
			chat: byTarget(http.StatusBadRequest, "cannot unmarshal string")},
		{name: "options-1e400", file: "options-1e400.json",
			want: want{dir: spool.DirFailed, kind: spool.KindTarget, status: 400, msg: "1e400", keep: keepJob}, jobs: ok202,
			chat: byTarget(http.StatusBadRequest, "1e400")},
		// A record moved back into new/ runs again; over HTTP it is no job.
		{name: "record-retried", file: "record-retried.json", want: done(keepRecord), jobs: jobs422("cannot tell which endpoint")},
		{name: "record-without-job", file: "record-without-job.json", want: failedBad("no JSON job", keepNone), jobs: jobs422("endpoint")},
		// A record-shaped body with "origin" or "batch", fields hopper
		// writes into jobs and never into records, is a job: its
		// own fields run or fail, never the inner job, whose webhook
		// no event is sent to.
		{name: "record-with-origin", file: "record-with-origin.json",
			want: withHook(failedBad("cannot tell which endpoint", keepJob), "http://127.0.0.1:9/record-with-origin", "", "INNER-record-with-origin"),
			jobs: jobs422("cannot tell which endpoint")},
		{name: "record-with-origin-and-prompt", file: "record-with-origin-and-prompt.json",
			want: withHook(done(keepJob), "http://127.0.0.1:9/record-with-origin-and-prompt", "", "INNER-record-with-origin-and-prompt"),
			jobs: ok202},
		{name: "record-with-batch", file: "record-with-batch.json",
			want: withHook(failedBad("cannot tell which endpoint", keepJob), "http://127.0.0.1:9/record-with-batch", "", "INNER-record-with-batch")},

		// Webhooks that are not http or https: bad input wherever they
		// come from (a dropped file lands in failed/, hopper submit and
		// the front refuse them), never a delivery attempt.
		{name: "webhook-file-url", file: "webhook-file.json", want: failedBad(`"webhook" must be an absolute http or https URL`, keepJob),
			jobs: jobs422("must be an absolute http or https URL"), chat: bad400("want an http or https URL")},
		{name: "webhook-gopher-url", file: "webhook-gopher.json", want: failedBad(`"webhook" must be an absolute http or https URL`, keepJob),
			jobs: jobs422("must be an absolute http or https URL"), chat: bad400("want an http or https URL")},

		// Names.
		{name: "name-with-bang", file: "valid.json", drop: "my job!.json", want: want{dir: spool.DirFailed, kind: spool.KindBadInput, msg: "not a valid job ID", keep: keepJob, source: true}},
		{name: "name-with-space", file: "valid.json", drop: "two words.json", want: want{dir: spool.DirFailed, kind: spool.KindBadInput, msg: "not a valid job ID", keep: keepJob, source: true}},
		{name: "name-unicode", file: "valid.json", drop: "ジョブ.json", want: want{dir: spool.DirFailed, kind: spool.KindBadInput, msg: "not a valid job ID", keep: keepJob, source: true}},
		{name: "name-newline", file: "valid.json", drop: "line\nbreak.json", want: want{dir: spool.DirFailed, kind: spool.KindBadInput, msg: "not a valid job ID", keep: keepJob, source: true}},
		{name: "name-leading-dash", file: "valid.json", drop: "-rf.json", want: want{dir: spool.DirFailed, kind: spool.KindBadInput, msg: "not a valid job ID", keep: keepJob, source: true}},
		{name: "name-129-chars", file: "valid.json", drop: strings.Repeat("n", 129) + ".json", want: want{dir: spool.DirFailed, kind: spool.KindBadInput, msg: "not a valid job ID", keep: keepJob, source: true}},
		{name: "name-128-chars", file: "valid.json", drop: strings.Repeat("n", 128) + ".json", want: done(keepJob)},
		{name: "name-with-dots", file: "valid.json", drop: "a.b.c.json", want: done(keepJob)},
		{name: "name-twice", file: "valid.json", drop: "daily.json", place: twice, want: done(keepJob)},
		{name: "dot-file", file: "valid.json", drop: ".hidden.json", want: ignored},
		{name: "dot-json", file: "valid.json", drop: ".json", want: ignored},
		{name: "uppercase-extension", file: "valid.json", drop: "upper.JSON", want: ignored},
		{name: "no-extension", file: "valid.json", drop: "noext", want: ignored},
		{name: "rsync-temp-name", file: "valid.json", drop: ".rsynced.json.Xa1b2c", want: ignored},
		// NAME.jsonl is a batch: see corpus_batch_test.go.
		// Named like a line of a batch that does not exist: a job of its
		// own, under its own name, even with a made-up line key.
		{name: "batch-line-name-without-batch", file: "valid.json", drop: "nightly.000001.json", want: done(keepJob)},
		{name: "batch-line-name-with-forged-key", file: "batch-line-forged.json", drop: "forged.000001.json", want: done(keepJob)},

		// Placements.
		{name: "written-in-place", file: "valid.json", place: inPlace, want: done(keepJob)},
		{name: "half-written-completed", file: "valid.json", place: halfThenRest, want: done(keepJob)},
		{name: "half-written-abandoned", file: "valid.json", place: halfOnly, want: failedBad("ends early", keepRaw)},
		{name: "written-then-removed", file: "valid.json", place: vanish, want: want{}},
		{name: "left-in-tmp", file: "valid.json", drop: "staged", place: tmpOnly, want: want{dir: spool.DirTmp}},
		{name: "symlink-to-file-outside", place: symlink, link: func(c *corpus) string { return c.secret }, want: ignored},
		{name: "symlink-to-dir-outside", place: symlink, link: func(c *corpus) string { return c.canary }, want: ignored},
		{name: "symlink-to-fifo-outside", place: symlink, link: func(c *corpus) string { return c.fifo }, want: ignored},
		{name: "symlink-relative-outside", place: symlink, link: func(c *corpus) string { return "../../canary/secret.json" }, want: ignored},
		{name: "symlink-into-done", place: symlink, link: func(c *corpus) string { return "../done/" + c.innocent + ".json" }, want: ignored},
		{name: "symlink-into-new", place: symlink, link: func(c *corpus) string { return "noext" }, want: ignored},
		{name: "symlink-dangling", place: symlink, link: func(c *corpus) string { return "/nonexistent/job.json" }, want: ignored},
		{name: "symlink-loop", place: symlink, link: func(c *corpus) string { return "symlink-loop.json" }, want: ignored},
		{name: "fifo", place: fifo, want: ignored},
		{name: "socket", place: socket, want: ignored},
		{name: "directory", place: directory, drop: "x.json", want: ignored},
		// A hard link is a regular file: hopper cannot tell it from one
		// written in place, and reads it (see docs/BENCHMARKS-proof.md).
		{name: "hard-link-to-file-outside", file: "valid.json", place: hardlink, want: done(keepJob)},
	}
}

// corpus is a running hopper serve with the canaries outside its spool.
type corpus struct {
	w        *world
	canary   string // a directory outside the spool that nothing may read
	secret   string // canary/secret.json: a valid job whose prompt is marker
	fifo     string // canary/fifo: a FIFO that would block a reader
	marker   string
	innocent string // a done job a symlink points at
	inotify  int    // watches canary/ for any open or read
}

func newCorpus(t *testing.T, settings ...string) *corpus {
	fake := ollamatest.NewServer(t, ollamatest.WithModels("m1", "m2", "m3"))
	settings = append([]string{fmt.Sprintf("HOPPER_MAX_JOB_SIZE=%d", corpusMaxJobSize)}, settings...)
	w := newWorld(t, true, fake, keptDir(t, "hopper-corpus-"), settings...)
	c := &corpus{w: w, canary: filepath.Join(w.dir, "canary"), marker: fmt.Sprintf("CANARY-%d", time.Now().UnixNano())}
	c.secret, c.fifo = filepath.Join(c.canary, "secret.json"), filepath.Join(c.canary, "fifo")
	if err := os.Mkdir(c.canary, 0o750); err != nil {
		t.Fatal(err)
	}
	job := fmt.Sprintf(`{"model": "m1", "messages": [{"role": "user", "content": %q}]}`, c.marker)
	if err := os.WriteFile(c.secret, []byte(job), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(c.fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	c.inotify = watchOpens(t, c.canary)
	// The watch must see an open, or the canary proves nothing.
	probe := filepath.Join(w.dir, "probe")
	if err := os.Mkdir(probe, 0o750); err != nil {
		t.Fatal(err)
	}
	fd := watchOpens(t, probe)
	if err := os.WriteFile(filepath.Join(probe, "f"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if n, _ := unix.Read(fd, make([]byte, 4096)); n <= 0 {
		t.Fatal("inotify reported no open of a file in a watched directory; the canary would prove nothing")
	}
	return c
}

// watchOpens returns an inotify descriptor that reports every open or read
// of a file in dir.
func watchOpens(t *testing.T, dir string) int {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
		t.Fatal(err)
	}
	return fd
}

// checkCanaries fails the test if anything opened or read a file in
// canary/, if the target ever saw the canary's prompt, or if any file in
// the spool holds it.
func (c *corpus) checkCanaries(t *testing.T) {
	buf := make([]byte, 64<<10)
	n, err := unix.Read(c.inotify, buf)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		t.Fatal(err)
	}
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
		t.Errorf("something opened or read canary/%s outside the spool (inotify mask %#x)", name, ev.Mask)
		off += unix.SizeofInotifyEvent + int(ev.Len)
	}
	for _, r := range c.w.fake.Requests() {
		if bytes.Contains(r.Body, []byte(c.marker)) {
			t.Errorf("the target was sent the canary's job: %s %s", r.Path, r.Body)
		}
	}
	err = filepath.WalkDir(c.w.spool, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(c.marker)) {
			t.Errorf("%s holds the canary's contents", path)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestBadInputFiles drops every corpus case into new/ of a running hopper
// serve and checks that each ends as DESIGN says: bad input in failed/ with
// an error that says why and its bytes kept; names and file types hopper
// ignores left where they are, unread; nothing outside the spool read;
// hopper still running and serving jobs after it all.
func TestBadInputFiles(t *testing.T) {
	if *tableFlag {
		printTable(t)
	}
	start := time.Now()
	c := newCorpus(t)
	w := c.w
	serve := w.start(nil, "serve")

	// A job for symlink-into-done to point at, done before anything else.
	c.innocent = "innocent"
	writeAtomically(t, w, "innocent.json", []byte(`{"model": "m1", "prompt": "innocent"}`))
	innocentPath := filepath.Join(w.spool, spool.DirDone, "innocent.json")
	waitFor(t, time.Minute, "the innocent job", func() bool { _, err := os.Stat(innocentPath); return err == nil })
	innocentBytes, _ := os.ReadFile(innocentPath)

	cases := badCases()
	originals := map[string][]byte{}
	var bg sync.WaitGroup
	for _, bc := range cases {
		data := bc.bytes(t)
		c.place(t, &bg, bc, data)
		if bc.place == halfOnly {
			data = data[:len(data)/2]
		}
		originals[bc.name] = data
	}
	t.Logf("placed %d cases in %v", len(cases), time.Since(start).Round(time.Millisecond))
	// A job dropped after all the junk must still run: nothing blocked the
	// runner.
	writeAtomically(t, w, "sentinel.json", []byte(`{"model": "m2", "prompt": "after the corpus"}`))
	bg.Wait()

	records := 2 // innocent and sentinel
	for _, bc := range cases {
		if bc.want.dir == spool.DirDone || bc.want.dir == spool.DirFailed {
			records += expectedRecords(bc)
		}
	}
	waitFor(t, 2*time.Minute, "every case that ends in done/ or failed/ to get there", func() bool {
		if serve.exited() {
			t.Fatalf("hopper serve exited (%v)", serve.state)
		}
		n := 0
		for _, d := range []string{spool.DirDone, spool.DirFailed} {
			for _, name := range w.names(d) {
				if strings.HasSuffix(name, ".json") {
					n++
				}
			}
		}
		return n >= records
	})
	t.Logf("all landed after %v", time.Since(start).Round(time.Millisecond))
	// Nothing may still be moving: give a settle time for a late change.
	time.Sleep(1200 * time.Millisecond)
	recs := c.records(t)
	if len(recs) != records {
		t.Errorf("got %d records, want %d", len(recs), records)
	}
	c.checkCounts(t, cases)

	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) { c.checkCase(t, bc, recs, originals[bc.name]) })
	}
	if data, _ := os.ReadFile(innocentPath); !bytes.Equal(data, innocentBytes) {
		t.Errorf("done/innocent.json, which a symlink in new/ points at, changed")
	}
	t.Logf("checked after %v", time.Since(start).Round(time.Millisecond))
	c.checkCanaries(t)
	t.Logf("canaries checked after %v", time.Since(start).Round(time.Millisecond))
	if serve.exited() {
		t.Fatalf("hopper serve exited (%v)", serve.state)
	}
	if code := serve.term(t); code != 0 {
		t.Errorf("hopper serve exited %d after SIGTERM, want 0", code)
	}
}

// checkCounts checks what hopper status counts once every case has
// landed: nothing queued, and what is left in new/ under a job's name but
// is no regular file (symlinks, FIFOs, sockets, directories) as ignored.
func (c *corpus) checkCounts(t *testing.T, cases []badCase) {
	t.Helper()
	ignored := 0
	for _, bc := range cases {
		fi, err := os.Lstat(filepath.Join(c.w.spool, spool.DirNew, bc.dropName()))
		if bc.want.dir == spool.DirNew && err == nil && !fi.Mode().IsRegular() && spool.Candidate(bc.dropName()) {
			ignored++
		}
	}
	if ignored == 0 {
		t.Fatal("no case leaves a non-regular file in new/: the count proves nothing")
	}
	var st struct {
		Counts map[string]int `json:"counts"`
	}
	out := c.w.hopper("status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("hopper status --json: %v\n%s", err, out)
	}
	if st.Counts["queued"] != 0 || st.Counts["ignored"] != ignored {
		t.Errorf("hopper status counts %d queued and %d ignored, want 0 and %d (the symlinks, FIFOs, sockets and directories left in new/)",
			st.Counts["queued"], st.Counts["ignored"], ignored)
	}
}

func expectedRecords(bc badCase) int {
	if bc.place == twice {
		return 2
	}
	return 1
}

// writeAtomically writes data in tmp/ and renames it to new/name.
func writeAtomically(t *testing.T, w *world, name string, data []byte) {
	t.Helper()
	streamAtomically(t, w, name, bytes.NewReader(data))
}

// streamAtomically is writeAtomically for a reader.
func streamAtomically(t *testing.T, w *world, name string, r io.Reader) {
	t.Helper()
	tmp := filepath.Join(w.spool, spool.DirTmp, ".corpus-"+fmt.Sprint(time.Now().UnixNano()))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, r)
	if err = errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(w.spool, spool.DirNew, name)); err != nil {
		t.Fatal(err)
	}
}

// place puts one case into new/; slow placements finish in bg.
func (c *corpus) place(t *testing.T, bg *sync.WaitGroup, bc badCase, data []byte) {
	t.Helper()
	w := c.w
	path := filepath.Join(w.spool, spool.DirNew, bc.dropName())
	var err error
	switch bc.place {
	case atomically:
		r, _ := bc.stream(t)
		streamAtomically(t, w, bc.dropName(), r)
	case inPlace:
		err = os.WriteFile(path, data, 0o640)
	case halfThenRest, halfOnly:
		var f *os.File
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640); err != nil {
			break
		}
		if _, err = f.Write(data[:len(data)/2]); err != nil || bc.place == halfOnly {
			err = errors.Join(err, f.Close())
			break
		}
		bg.Go(func() {
			time.Sleep(300 * time.Millisecond)
			_, err := f.Write(data[len(data)/2:])
			if err = errors.Join(err, f.Close()); err != nil {
				t.Error(err)
			}
		})
	case symlink:
		err = os.Symlink(bc.link(c), path)
	case fifo:
		err = unix.Mkfifo(path, 0o640)
	case socket:
		var ln net.Listener
		if ln, err = net.Listen("unix", path); err == nil {
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			t.Cleanup(func() { ln.Close() })
		}
	case directory:
		err = os.Mkdir(path, 0o750)
	case hardlink:
		outside := filepath.Join(w.dir, "hardlinked.json")
		if err = os.WriteFile(outside, data, 0o640); err == nil {
			err = os.Link(outside, path)
		}
	case twice:
		writeAtomically(t, w, bc.dropName(), data)
		bg.Go(func() {
			stem := strings.TrimSuffix(bc.dropName(), ".json")
			runtest.Poll(time.Minute, 10*time.Millisecond, func() bool { return exists(filepath.Join(w.spool, spool.DirDone, stem+".json")) })
			writeAtomically(t, w, bc.dropName(), data)
		})
	case vanish:
		if err = os.WriteFile(path, data, 0o640); err == nil {
			err = os.Remove(path)
		}
	case tmpOnly:
		err = os.WriteFile(filepath.Join(w.spool, spool.DirTmp, bc.dropName()), data, 0o640)
	}
	if err != nil {
		t.Fatalf("%s: %v", bc.name, err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// records reads every record in done/ and failed/.
func (c *corpus) records(t *testing.T) []*spool.Record {
	t.Helper()
	var out []*spool.Record
	for _, d := range []string{spool.DirDone, spool.DirFailed} {
		for _, name := range c.w.names(d) {
			if !strings.HasSuffix(name, ".json") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(c.w.spool, d, name))
			if err != nil {
				continue // moved on meanwhile
			}
			r, err := spool.ParseRecord(data)
			if err != nil {
				t.Fatalf("%s/%s: %v", d, name, err)
			}
			out = append(out, r)
		}
	}
	return out
}

// find picks a case's records: STEM, or a generated ID whose source is
// the dropped name.
func find(recs []*spool.Record, bc badCase) []*spool.Record {
	stem := strings.TrimSuffix(bc.dropName(), ".json")
	var out []*spool.Record
	for _, r := range recs {
		if r.ID == stem || r.Source == bc.dropName() {
			out = append(out, r)
		}
	}
	return out
}

func (c *corpus) checkCase(t *testing.T, bc badCase, all []*spool.Record, data []byte) {
	w := c.w
	recs := find(all, bc)
	path := filepath.Join(w.spool, spool.DirNew, bc.dropName())
	switch bc.want.dir {
	case spool.DirNew:
		if len(recs) > 0 {
			t.Errorf("got record %s (%s), want the file ignored", recs[0].ID, recs[0].State)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatalf("new/%s is gone (%v), want it left where it is", bc.dropName(), err)
		}
		if fi.Mode().IsRegular() {
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Errorf("new/%s changed", bc.dropName())
			}
		}
		return
	case spool.DirTmp:
		if len(recs) > 0 || !exists(filepath.Join(w.spool, spool.DirTmp, bc.dropName())) {
			t.Errorf("got %d records and tmp/%s exists: %v; want it left in tmp/", len(recs), bc.dropName(), exists(filepath.Join(w.spool, spool.DirTmp, bc.dropName())))
		}
		return
	case "":
		if len(recs) > 0 || exists(path) {
			t.Errorf("got %d records, new/ entry %v; want nothing", len(recs), exists(path))
		}
		return
	}
	if exists(path) {
		t.Errorf("new/%s is still there", bc.dropName())
	}
	if len(recs) != expectedRecords(bc) {
		t.Fatalf("got %d records, want %d", len(recs), expectedRecords(bc))
	}
	for _, r := range recs {
		c.checkRecord(t, bc, r, data)
	}
	if bc.want.hook != "" {
		c.checkHook(t, bc.want, recs[0].ID)
	}
	if p := bc.want.unrun; p != "" {
		for _, r := range c.w.fake.Requests() {
			if inference(r.Path) && promptOf(r.Body) == p {
				t.Errorf("the target was asked to run %q: %s %.300s", p, r.Path, r.Body)
			}
		}
	}
}

// checkHook checks the outbox's deliveries to want.hook (see want).
func (c *corpus) checkHook(t *testing.T, want want, id string) {
	t.Helper()
	if want.hookMsg == "" {
		if p, f := c.deliveries(t, want.hook); len(p)+len(f) > 0 {
			t.Errorf("an event was recorded for delivery to %s, the webhook of a job that must not run: %+v %+v", want.hook, p, f)
		}
		return
	}
	var failed []hooks.Delivery
	waitFor(t, 30*time.Second, "the deliveries to "+want.hook+" to fail", func() bool {
		var pending []hooks.Delivery
		pending, failed = c.deliveries(t, want.hook)
		return len(pending) == 0 && len(failed) > 0
	})
	for _, d := range failed {
		if d.Job != id || d.Attempts != 1 || d.LastStatus != 0 || !strings.Contains(d.LastError, want.hookMsg) {
			t.Errorf("delivery %s of %s for job %s: %d attempts, status %d, error %q; want one attempt for job %s, refused with %q",
				d.ID, d.Type, d.Job, d.Attempts, d.LastStatus, d.LastError, id, want.hookMsg)
		}
	}
}

// deliveries reads the outbox's pending and failed deliveries to url.
func (c *corpus) deliveries(t *testing.T, url string) (pending, failed []hooks.Delivery) {
	t.Helper()
	for _, state := range []string{hooks.StatePending, hooks.StateFailed} {
		dir := filepath.Join(c.w.spool, ".hopper", "outbox", state) // each state has its directory
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue // moved on meanwhile
			}
			var d hooks.Delivery
			if err := json.Unmarshal(data, &d); err != nil {
				t.Errorf("outbox/%s/%s: %v", state, e.Name(), err)
				continue
			}
			switch {
			case d.URL != url:
			case state == hooks.StatePending:
				pending = append(pending, d)
			default:
				failed = append(failed, d)
			}
		}
	}
	return pending, failed
}

func (c *corpus) checkRecord(t *testing.T, bc badCase, r *spool.Record, data []byte) {
	want := bc.want
	dir := spool.DirDone
	if r.State == spool.StateFailed {
		dir = spool.DirFailed
	}
	if dir != want.dir {
		t.Errorf("%s ended in %s/ (%+v), want %s/", r.ID, dir, r.Error, want.dir)
		return
	}
	if want.dir == spool.DirFailed {
		switch {
		case r.Error == nil:
			t.Errorf("%s: failed without an error", r.ID)
		case r.Error.Kind != want.kind || r.Error.Status != want.status || !strings.Contains(r.Error.Message, want.msg):
			t.Errorf("%s: got error %s %d %q, want %s %d containing %q", r.ID, r.Error.Kind, r.Error.Status, r.Error.Message, want.kind, want.status, want.msg)
		}
		if want.kind == spool.KindBadInput && r.Attempts != 0 {
			t.Errorf("%s: bad input cost %d attempts at the target, want 0", r.ID, r.Attempts)
		}
	}
	generated := r.ID != strings.TrimSuffix(bc.dropName(), ".json")
	switch {
	case want.source && (!generated || r.Source != bc.dropName() || !spool.ValidID(r.ID)):
		t.Errorf("got ID %q, source %q; want a generated ID and source %q", r.ID, r.Source, bc.dropName())
	case !want.source && bc.place != twice && generated:
		t.Errorf("got ID %q, want %q", r.ID, strings.TrimSuffix(bc.dropName(), ".json"))
	}
	switch want.keep {
	case keepJob, keepJobBOM:
		orig := data
		if want.keep == keepJobBOM {
			orig = bytes.TrimPrefix(orig, []byte("\xef\xbb\xbf"))
		}
		if !jsonEqual(r.Job, orig) {
			t.Errorf("%s: the record's job is %.200q, want the job as submitted, %.200q", r.ID, r.Job, orig)
		}
	case keepRaw:
		if r.JobRaw == nil || *r.JobRaw != string(data) {
			t.Errorf("%s: job_raw is %.200q, want the bytes as dropped, %.200q", r.ID, deref(r.JobRaw), data)
		}
	case keepFile:
		want, size := bc.stream(t)
		f, err := os.Open(filepath.Join(c.w.spool, spool.DirFailed, r.JobFile))
		if err != nil || r.JobFile != r.ID+".raw" {
			t.Errorf("%s: job_file %q: %v; want %s.raw", r.ID, r.JobFile, err, r.ID)
			break
		}
		defer f.Close()
		fi, _ := f.Stat()
		if fi.Size() != size || sha(f) != sha(want) {
			t.Errorf("%s: %s holds %d bytes, not the %d bytes as dropped", r.ID, r.JobFile, fi.Size(), size)
		}
	case keepRecord:
		var old spool.Record
		_ = json.Unmarshal(data, &old)
		if !jsonEqual(r.Job, old.Job) || len(r.History) != 1 || r.History[0].Attempts != old.Attempts {
			t.Errorf("%s: got job %s, history %+v; want the old record's job and its round in history", r.ID, r.Job, r.History)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// jsonEqual reports whether two JSON texts differ at most in insignificant
// space.
func jsonEqual(a, b []byte) bool {
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// TestBadInputHTTP sends every corpus case with bytes to POST /jobs and
// POST /api/chat of hopper serve's front: bad input is refused with a 4xx
// that says why and nothing is written; input the front takes is queued.
func TestBadInputHTTP(t *testing.T) {
	addr := runtest.FreeAddr(t)
	c := newCorpus(t, "HOPPER_HTTP="+addr)
	w := c.w
	serve := w.start(nil, "serve")
	base := "http://" + addr
	waitHealthy(t, base)
	client := &http.Client{Timeout: time.Minute}

	send := func(t *testing.T, path string, body io.Reader, size int64, header http.Header) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		req.Header = header
		if req.Header == nil {
			req.Header = http.Header{"Content-Type": {"application/json"}}
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("POST %s: reading the answer: %v", path, err)
		}
		return resp.StatusCode, string(data)
	}
	check := func(t *testing.T, path string, got int, body string, want reply) {
		t.Helper()
		if want.mayRefuse && (got == http.StatusRequestEntityTooLarge || got == http.StatusUnprocessableEntity) {
			want = reply{status: got}
		}
		if got != want.status || !strings.Contains(errorText(body), want.msg) {
			t.Errorf("POST %s: got %d %.300s, want %d with %q", path, got, body, want.status, want.msg)
		}
		if got >= 400 && errorText(body) == "" {
			t.Errorf("POST %s: %d without a reason: %.300s", path, got, body)
		}
	}
	for _, bc := range badCases() {
		if bc.jobs.status == 0 && bc.chat.status == 0 {
			continue
		}
		t.Run(bc.name, func(t *testing.T) {
			if bc.httpSkip != "" && !*bugsFlag {
				t.Skip(bc.httpSkip)
			}
			for _, ep := range []struct {
				path string
				want reply
			}{{"/jobs", bc.jobs}, {"/api/chat", bc.chat}} {
				if ep.want.status == 0 {
					continue
				}
				quiet(t, w)
				before := snapshot(t, w)
				r, size := bc.stream(t)
				status, body := send(t, ep.path, r, size, nil)
				check(t, ep.path, status, body, ep.want)
				if ep.path == "/jobs" && status < 300 {
					// What the front acknowledged, hopper must be able to
					// run: it may fail at the target, not as bad input.
					if r := awaitRecord(t, w, body); r.Error != nil && r.Error.Kind == spool.KindBadInput {
						t.Errorf("POST /jobs acknowledged job %s (%d), then it failed as bad input: %s", r.ID, status, r.Error.Message)
					}
				}
				if status >= 400 && !ep.want.byTarget {
					if after := snapshot(t, w); !slices.Equal(before, after) {
						t.Errorf("POST %s answered %d but the spool changed: %v", ep.path, status, diff(before, after))
					}
				}
				if size > corpusMaxJobSize {
					// The same without a Content-Length: the front must
					// stop reading at its limit.
					r, _ = bc.stream(t)
					status, body = send(t, ep.path, io.MultiReader(r), -1, nil)
					check(t, ep.path+" (chunked)", status, body, ep.want)
				}
			}
		})
	}

	// What only HTTP can get wrong.
	for _, hc := range []struct {
		name, method, path, body string
		header                   http.Header
		want                     reply
	}{
		{"content-type-html", "POST", "/jobs", `{"model":"m1","prompt":"x"}`, http.Header{"Content-Type": {"text/html"}}, reply{status: http.StatusUnsupportedMediaType, msg: "Content-Type"}},
		{"unknown-path", "POST", "/api/teleport", `{"model":"m1"}`, nil, reply{status: http.StatusNotFound}},
		{"chat-with-get", "GET", "/api/chat", "", nil, reply{status: http.StatusMethodNotAllowed}},
		{"priority-header-not-a-number", "POST", "/api/chat", `{"model":"m1","messages":[{"role":"user","content":"x"}]}`, http.Header{"X-Hopper-Priority": {"urgent"}}, bad400("X-Hopper-Priority must be an integer")},
		{"job-id-traversal", "GET", "/jobs/..%2f..%2fetc%2fpasswd", "", nil, bad400("invalid job ID")},
		{"job-id-dotdot", "GET", "/jobs/%2e%2e", "", nil, bad400("invalid job ID")},
		{"cancel-id-traversal", "DELETE", "/jobs/..%2Fcanary", "", nil, bad400("invalid job ID")},
		{"idempotency-key-too-long", "POST", "/jobs", `{"model":"m1","prompt":"x"}`, http.Header{"Idempotency-Key": {strings.Repeat("k", 300)}}, bad400("idempotency key")},
	} {
		t.Run(hc.name, func(t *testing.T) {
			quiet(t, w)
			before := snapshot(t, w)
			req, err := http.NewRequest(hc.method, base+hc.path, strings.NewReader(hc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = hc.header
			if req.Header == nil {
				req.Header = http.Header{}
			}
			if req.Header.Get("Content-Type") == "" && hc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != hc.want.status || !strings.Contains(string(data), hc.want.msg) {
				t.Errorf("%s %s: got %d %.300s, want %d with %q", hc.method, hc.path, resp.StatusCode, data, hc.want.status, hc.want.msg)
			}
			if after := snapshot(t, w); !slices.Equal(before, after) {
				t.Errorf("the spool changed: %v", diff(before, after))
			}
		})
	}
	c.checkCanaries(t)
	if serve.exited() {
		t.Fatalf("hopper serve exited (%v)", serve.state)
	}
	if code := serve.term(t); code != 0 {
		t.Errorf("hopper serve exited %d after SIGTERM, want 0", code)
	}
}

// errorText is the message of an error answer in Ollama's shape or
// OpenAI's, or "".
func errorText(body string) string {
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal([]byte(body), &v) != nil || len(v.Error) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(v.Error, &s) == nil {
		return s
	}
	var o struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(v.Error, &o)
	return o.Message
}

// quiet waits until the runner has nothing queued, running or being
// written.
func quiet(t *testing.T, w *world) {
	t.Helper()
	waitFor(t, time.Minute, "the spool to be quiet", func() bool {
		return w.count(spool.DirNew) == 0 && w.count(spool.DirCur) == 0 && w.count(spool.DirDeferred) == 0 && w.count(spool.DirTmp) == 0
	})
}

// awaitRecord waits for the final record of the job a 2xx answer of POST
// /jobs describes.
func awaitRecord(t *testing.T, w *world, answer string) *spool.Record {
	t.Helper()
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(answer), &v); err != nil || !spool.ValidID(v.ID) {
		t.Fatalf("POST /jobs answered %.200q, want a record with an id", answer)
	}
	var r *spool.Record
	waitFor(t, time.Minute, "job "+v.ID+" to finish", func() bool {
		for _, d := range []string{spool.DirDone, spool.DirFailed} {
			if data, err := os.ReadFile(filepath.Join(w.spool, d, v.ID+".json")); err == nil {
				r, err = spool.ParseRecord(data)
				return err == nil
			}
		}
		return false
	})
	return r
}

// snapshot lists every file in the spool's job directories and tmp/.
func snapshot(t *testing.T, w *world) []string {
	t.Helper()
	var out []string
	for _, d := range []string{spool.DirTmp, spool.DirNew, spool.DirCur, spool.DirDeferred, spool.DirHold, spool.DirDone, spool.DirFailed} {
		for _, n := range w.names(d) {
			out = append(out, d+"/"+n)
		}
	}
	return out
}

func diff(before, after []string) string {
	var added, removed []string
	for _, a := range after {
		if !slices.Contains(before, a) {
			added = append(added, a)
		}
	}
	for _, b := range before {
		if !slices.Contains(after, b) {
			removed = append(removed, b)
		}
	}
	return fmt.Sprintf("added %v, removed %v", added, removed)
}

// printTable logs the corpus as the Markdown table of docs/BENCHMARKS-proof.md.
func printTable(t *testing.T) {
	var sb strings.Builder
	sb.WriteString("| case | dropped as | placement | ends in | error | bytes kept in | POST /jobs | POST /api/chat |\n|---|---|---|---|---|---|---|---|\n")
	for _, bc := range badCases() {
		ends, errText := bc.want.dir+"/", ""
		switch bc.want.dir {
		case spool.DirNew:
			ends = "new/ (ignored)"
		case spool.DirTmp:
			ends = "tmp/ (left)"
		case "":
			ends = "nowhere"
		}
		if bc.want.kind != "" {
			errText = string(bc.want.kind)
			if bc.want.status != 0 {
				errText += fmt.Sprintf(" %d", bc.want.status)
			}
			errText += ": …" + bc.want.msg + "…"
		}
		if bc.want.source {
			ends += " (generated ID, `source` = name)"
		}
		fmt.Fprintf(&sb, "| %s | `%s` | %s | %s | %s | %s | %s | %s |\n", bc.name, strings.ReplaceAll(shorten(bc.dropName()), "\n", `\n`),
			placementNames[bc.place], ends, strings.ReplaceAll(errText, "|", `\|`), keepNames[bc.want.keep], replyText(bc.jobs), replyText(bc.chat))
	}
	t.Logf("\n%s", sb.String())
}

func shorten(s string) string {
	if len(s) > 24 {
		return s[:10] + "…" + s[len(s)-10:]
	}
	return s
}

func replyText(r reply) string {
	switch {
	case r.status == 0:
		return ""
	case r.msg == "":
		return fmt.Sprint(r.status)
	}
	return fmt.Sprintf("%d …%s…", r.status, strings.ReplaceAll(r.msg, "|", `\|`))
}
