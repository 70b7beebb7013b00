package spool

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A batch (DESIGN §10) is a file NAME.jsonl in new/: one request per line,
// each a hopper job object or an OpenAI Batch API line. The runner claims it
// into batches/NAME.jsonl, writes the record batches/NAME.json, and expands
// it, a chunk at a time, into one job per line, NAME.000001, NAME.000002, …
// in new/, all at the batch's priority. When every line has ended, the
// answers are written, in input order and in OpenAI's batch output shape,
// to done/NAME.jsonl, and the failed ones also to failed/NAME.errors.jsonl.
//
// batches/NAME.json is written by whoever submits the batch (state
// validating, carrying its options) and from then on by the runner alone;
// a request to cancel is a separate file, batches/NAME.cancel, that the
// runner acts on.

// BatchState is a batch's status, named as OpenAI's Batch API names them.
type BatchState string

// The states of a batch.
const (
	BatchValidating BatchState = "validating"  // submitted; not yet checked and counted
	BatchInProgress BatchState = "in_progress" // its lines are queued and running
	BatchFinalizing BatchState = "finalizing"  // every line ended; the output is being written
	BatchCompleted  BatchState = "completed"   // the output is written
	BatchFailed     BatchState = "failed"      // refused as a whole (errors says why); no line ran
	BatchCancelling BatchState = "cancelling"  // a cancel was asked for and is being carried out
	BatchCancelled  BatchState = "cancelled"   // canceled; the output holds what had ended
)

// Terminal reports whether the batch has ended.
func (s BatchState) Terminal() bool {
	return s == BatchCompleted || s == BatchFailed || s == BatchCancelled
}

// Batch is the record batches/NAME.json.
type Batch struct {
	ID    string     `json:"id"`
	State BatchState `json:"state"`
	// Total is the number of lines (blank lines aside); Done and Failed
	// count the lines that have ended so far.
	Total    int `json:"total"`
	Done     int `json:"done"`
	Failed   int `json:"failed"`
	Priority int `json:"priority"`
	// Digits is the width of the line numbers in the lines' IDs, fixed
	// when the batch is counted (6, or more for a million lines or more).
	Digits int `json:"digits,omitempty"`
	// Expanded is how many lines are queued as jobs so far, and Offset the
	// byte offset in the input of the next line to queue.
	Expanded int   `json:"expanded"`
	Offset   int64 `json:"offset"`
	// Source is the file name the batch arrived under, when the ID differs.
	Source string `json:"source,omitempty"`
	// Origin is OriginHTTP for batches created over HTTP.
	Origin string `json:"origin,omitempty"`
	// Endpoint, CompletionWindow, Metadata and InputFileID are what an
	// OpenAI client gave when it created the batch.
	Endpoint         string          `json:"endpoint,omitempty"`
	CompletionWindow string          `json:"completion_window,omitempty"`
	Metadata         json.RawMessage `json:"metadata,omitempty"`
	InputFileID      string          `json:"input_file_id,omitempty"`
	// Input, Output and ErrorsFile are paths relative to the spool.
	Input      string       `json:"input,omitempty"`
	Output     string       `json:"output,omitempty"`
	ErrorsFile string       `json:"errors_file,omitempty"`
	Errors     []BatchError `json:"errors,omitempty"`

	CreatedAt    time.Time  `json:"created_at"`
	InProgressAt *time.Time `json:"in_progress_at,omitempty"`
	FinalizingAt *time.Time `json:"finalizing_at,omitempty"`
	CompletedAt  *time.Time `json:"completed_at,omitempty"`
	FailedAt     *time.Time `json:"failed_at,omitempty"`
	CancellingAt *time.Time `json:"cancelling_at,omitempty"`
	CancelledAt  *time.Time `json:"cancelled_at,omitempty"`
}

// BatchError says why a batch was refused as a whole.
type BatchError struct {
	Code    string `json:"code"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// Width is the number of digits in the batch's line IDs.
func (b *Batch) Width() int {
	if b.Digits > 0 {
		return b.Digits
	}
	return max(6, len(strconv.Itoa(b.Total)))
}

// LineID is the ID of line i (from 1) of the batch.
func (b *Batch) LineID(i int) string { return fmt.Sprintf("%s.%0*d", b.ID, b.Width(), i) }

// Ended is how many lines have ended.
func (b *Batch) Ended() int { return b.Done + b.Failed }

// LineOf splits a job ID into the batch it may belong to and its line
// number: "tickets.000042" → "tickets", 42. ok is false when the ID does
// not end in a dot and six or more digits.
func LineOf(id string) (batch string, line int, ok bool) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 || len(id)-i-1 < 6 {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil || n <= 0 || id[i+1] == '+' {
		return "", 0, false
	}
	return id[:i], n, true
}

// lineKey is the proof, carried in a batch line's "batch_key", that hopper
// wrote it: an HMAC of the line's ID under the spool's secret
// (.hopper/secret), which only hopper's processes can read.
func (s *Spool) lineKey(id string) string {
	m := hmac.New(sha256.New, s.secret())
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// isLine reports whether a job is the batch line its ID names, as hopper
// wrote it: a job named like a line but not carrying its key is a user's job.
func (s *Spool) isLine(id string, j *Job) bool {
	if _, _, ok := LineOf(id); !ok || j == nil || j.BatchKey == "" {
		return false
	}
	return hmac.Equal([]byte(j.BatchKey), []byte(s.lineKey(id)))
}

// ownLine reports whether new/ID.json is the batch line hopper wrote.
func (s *Spool) ownLine(id string) bool {
	data, _, regular, err := s.readJobFile(DirNew, id+".json")
	if err != nil || !regular {
		return false
	}
	j, err := ParseJob(data, s.opts.MaxJobSize)
	return err == nil && s.isLine(id, j)
}

// lineNamed reports whether a name in new/ is that of a line of a batch
// hopper knows: such a file is claimed under its own name only when it is
// that line (isLine).
func (s *Spool) lineNamed(stem string) bool {
	name, _, ok := LineOf(stem)
	return ok && s.exists(DirBatches, name+".json")
}

// maxBatchName leaves room for the line number in a line's ID.
const maxBatchName = 100

func validBatchName(name string) bool { return len(name) <= maxBatchName && ValidID(name) }

// BatchCandidate reports whether a name in new/ is a batch file: not
// dot-named, ending in .jsonl.
func BatchCandidate(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".jsonl") && len(name) > len(".jsonl")
}

// Marshal encodes a batch record as indented JSON.
func (b *Batch) Marshal() ([]byte, error) {
	data, err := marshalDoc(b)
	if err != nil {
		return nil, fmt.Errorf("encode batch %s: %w", b.ID, err)
	}
	return data, nil
}

// lineReader reads a batch file's lines, skipping blank ones, and keeps
// the byte offset of the next one. A line longer than max is reported as
// too long and skipped: only its head, the first max bytes, is held, to
// find its custom_id in (headCustomID).
type lineReader struct {
	r      *bufio.Reader
	max    int64
	buf    []byte
	offset int64 // of the next line
	line   int   // file line number of the last line returned
}

// head is the start, at most max bytes, of the line next last reported as
// too long. The slice is valid until the next call.
func (lr *lineReader) head() []byte { return lr.buf }

func newLineReader(r io.Reader, max int64, offset int64) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256<<10), max: max, offset: offset}
}

// next returns the next non-blank line without its line ending. The slice
// is valid until the next call. io.EOF ends the file.
func (lr *lineReader) next() (line []byte, tooLong bool, err error) {
	for {
		lr.buf = lr.buf[:0]
		tooLong = false
		var n int64
		for {
			chunk, err := lr.r.ReadSlice('\n')
			n += int64(len(chunk))
			if !tooLong {
				if int64(len(lr.buf)+len(chunk)) > lr.max+2 {
					// Keep the first max bytes as the head; drop the rest
					// as it is read.
					tooLong = true
					if room := lr.max - int64(len(lr.buf)); room > 0 {
						lr.buf = append(lr.buf, chunk[:room]...)
					}
					lr.buf = lr.buf[:min(int64(len(lr.buf)), lr.max)]
				} else {
					lr.buf = append(lr.buf, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, false, err
			}
			if n == 0 {
				return nil, false, io.EOF
			}
			break
		}
		lr.offset += n
		lr.line++
		if tooLong {
			return nil, true, nil
		}
		line = bytes.TrimRight(lr.buf, "\r\n")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, false, nil
	}
}

// customID returns a line's "custom_id" when it is a JSON object with one.
func customID(line []byte) (string, bool) {
	var probe struct {
		CustomID *string `json:"custom_id"`
	}
	if json.Unmarshal(trimBOM(line), &probe) != nil || probe.CustomID == nil {
		return "", false
	}
	return *probe.CustomID, true
}

// headCustomID finds the top-level "custom_id" of a line too long to
// parse whole in head, its first bytes: it walks the object's members in
// order, stepping over their values without decoding them, and stops at
// the first custom_id (matched as customID matches it, regardless of
// case). When it finds none the error says why: errHeadEnds when the head
// ends first, or words that follow "the line is over the limit, and".
func headCustomID(head []byte) (string, error) {
	sc := headScanner{b: trimBOM(head)}
	if c, err := sc.peek(); err != nil || c != '{' {
		return "", errors.New("it is not a JSON object")
	}
	sc.i++
	for first := true; ; first = false {
		c, err := sc.peek()
		switch {
		case err != nil:
			return "", err
		case c == '}' && first:
			return "", errors.New("it has no custom_id")
		case c != '"':
			return "", errNotJSON
		}
		tok, err := sc.str()
		if err != nil {
			return "", err
		}
		var key string
		if json.Unmarshal(tok, &key) != nil {
			return "", errNotJSON
		}
		if c, err := sc.peek(); err != nil || c != ':' {
			return "", cmp.Or(err, errNotJSON)
		}
		sc.i++
		if strings.EqualFold(key, "custom_id") {
			if c, err := sc.peek(); err != nil || c != '"' {
				return "", cmp.Or(err, errors.New("its custom_id is not a string"))
			}
			tok, err := sc.str()
			if err != nil {
				return "", err
			}
			var id string
			if json.Unmarshal(tok, &id) != nil {
				return "", errNotJSON
			}
			return id, nil
		}
		if err := sc.skip(); err != nil {
			return "", err
		}
		switch c, err := sc.peek(); {
		case err != nil:
			return "", err
		case c == '}':
			return "", errors.New("it has no custom_id")
		case c != ',':
			return "", errNotJSON
		}
		sc.i++
	}
}

var (
	errHeadEnds = errors.New("the bytes read end first")
	errNotJSON  = errors.New("it is not valid JSON")
)

// headScanner steps through the JSON text of a line's head. It checks only
// what it needs to find the top-level members: a value it steps over may
// be malformed inside (the line fails all the same).
type headScanner struct {
	b []byte
	i int
}

// peek skips white space and returns the next byte.
func (sc *headScanner) peek() (byte, error) {
	for sc.i < len(sc.b) && strings.IndexByte(" \t\r\n", sc.b[sc.i]) >= 0 {
		sc.i++
	}
	if sc.i == len(sc.b) {
		return 0, errHeadEnds
	}
	return sc.b[sc.i], nil
}

// str returns the string token at sc.i, quotes included.
func (sc *headScanner) str() ([]byte, error) {
	for j := sc.i + 1; j < len(sc.b); j++ {
		switch sc.b[j] {
		case '\\':
			j++
		case '"':
			tok := sc.b[sc.i : j+1]
			sc.i = j + 1
			return tok, nil
		}
	}
	return nil, errHeadEnds
}

// skip steps over the value at sc.i.
func (sc *headScanner) skip() error {
	c, err := sc.peek()
	switch {
	case err != nil:
		return err
	case c == '"':
		_, err := sc.str()
		return err
	case c == '{' || c == '[':
		depth := 0
		for sc.i < len(sc.b) {
			switch sc.b[sc.i] {
			case '"':
				if _, err := sc.str(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					sc.i++
					return nil
				}
			}
			sc.i++
		}
		return errHeadEnds
	}
	start := sc.i // a number, true, false or null
	for sc.i < len(sc.b) && strings.IndexByte(",}] \t\r\n", sc.b[sc.i]) < 0 {
		sc.i++
	}
	switch {
	case sc.i == len(sc.b):
		return errHeadEnds
	case sc.i == start:
		return errNotJSON
	}
	return nil
}

// tooLongLine is why a batch line over the limit fails, naming the
// custom_id in its head or saying why it has none.
func tooLongLine(head []byte, limit int64) error {
	id, err := headCustomID(head)
	switch {
	case err == nil:
		return badInput("the line (custom_id %q) is over the limit of %d bytes (max_job_size)", id, limit)
	case errors.Is(err, errHeadEnds):
		return badInput("the line is over the limit of %d bytes (max_job_size), and its custom_id is not within its first %d bytes: its answer names none", limit, len(head))
	}
	return badInput("the line is over the limit of %d bytes (max_job_size), and %v", limit, err)
}

// BatchRefusedError is why a batch file was refused as a whole: a
// *BadInputError (errors.As finds one) that keeps every problem's code and
// line.
type BatchRefusedError struct {
	Errors []BatchError
}

func (e *BatchRefusedError) Error() string {
	more := ""
	if len(e.Errors) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(e.Errors)-1)
	}
	return e.Errors[0].Message + more
}

// Unwrap makes the refusal bad input.
func (e *BatchRefusedError) Unwrap() error { return &BadInputError{Reason: e.Error()} }

// ErrBatchEnded means a batch has ended and can no longer be canceled.
var ErrBatchEnded = errors.New("the batch already ended")

// BatchCheck is what checking a batch file found.
type BatchCheck struct {
	Lines int // non-blank lines
}

// CheckBatch reads a batch file through and counts its lines. It refuses,
// with a *BatchRefusedError (bad input) whose problems it also returns, a
// file with no lines and one in which two lines share a custom_id, since
// answers could not be told apart. Malformed
// lines are not refused here: each fails on its own when the batch runs.
func CheckBatch(r io.Reader, maxLine int64) (BatchCheck, []BatchError, error) {
	lr := newLineReader(r, maxLine, 0)
	seen := map[string]int{}
	var c BatchCheck
	var errs []BatchError
	for {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c, nil, err
		}
		c.Lines++
		var id string
		var ok bool
		if tooLong {
			// It fails when it runs, but its answer carries the
			// custom_id its head holds: that must not be a repeat either.
			var err error
			id, err = headCustomID(lr.head())
			ok = err == nil
		} else {
			id, ok = customID(line)
		}
		if ok {
			if first, dup := seen[id]; dup {
				if len(errs) < 100 {
					errs = append(errs, BatchError{Code: "duplicate_custom_id", Line: lr.line,
						Message: fmt.Sprintf("line %d repeats the custom_id %q of line %d; every line needs its own", lr.line, id, first)})
				}
				continue
			}
			seen[id] = lr.line
		}
	}
	if len(errs) == 0 && c.Lines == 0 {
		errs = []BatchError{{Code: "empty_file", Message: "the batch has no lines: give one request per line"}}
	}
	if len(errs) > 0 {
		return c, errs, &BatchRefusedError{Errors: errs}
	}
	return c, nil, nil
}

// openaiBatchURLs maps the url of an OpenAI Batch API line to the endpoint
// of its job.
var openaiBatchURLs = map[string]string{
	"/v1/chat/completions": "openai.chat",
	"/v1/completions":      "openai.completions",
	"/v1/embeddings":       "openai.embeddings",
}

// BatchURLs lists the urls an OpenAI batch line may name, sorted.
func BatchURLs() []string {
	urls := make([]string, 0, len(openaiBatchURLs))
	for u := range openaiBatchURLs {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	return urls
}

// batchJob turns one line of batch b into the job file for it: an OpenAI
// line's body with the endpoint its url names, or a hopper job as given,
// plus the batch's name and priority. It returns the job's bytes and the
// parsed job; an error is a *BadInputError saying what is wrong with the
// line.
func (s *Spool) batchJob(b *Batch, id string, line []byte) ([]byte, *Job, error) {
	line = trimBOM(line)
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, nil, jsonError(line, err)
	}
	if obj == nil {
		return nil, nil, badInput("a batch line must be a JSON object, got null")
	}
	if raw, ok := obj["custom_id"]; ok && firstByte(raw) != '"' {
		return nil, nil, badInput("\"custom_id\" must be a string, got %s", describe(raw))
	}
	job := obj
	if _, openai := obj["url"]; openai || obj["body"] != nil {
		for key, want := range map[string]byte{"url": '"', "method": '"', "body": '{'} {
			if raw, ok := obj[key]; ok && firstByte(raw) != want {
				kind := "a string"
				if want == '{' {
					kind = "a JSON object holding the request"
				}
				return nil, nil, badInput("%q must be %s, got %s", key, kind, describe(raw))
			}
		}
		var l struct {
			CustomID *string                    `json:"custom_id"`
			Method   *string                    `json:"method"`
			URL      string                     `json:"url"`
			Body     map[string]json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, nil, badInput("not an OpenAI batch line ({\"custom_id\", \"method\": \"POST\", \"url\", \"body\": {…}}): %v", err)
		}
		endpoint, ok := openaiBatchURLs[l.URL]
		switch {
		case l.CustomID == nil:
			return nil, nil, badInput("an OpenAI batch line needs a \"custom_id\" to match its answer")
		case l.Method != nil && *l.Method != "POST":
			return nil, nil, badInput("\"method\" must be \"POST\", got %q", *l.Method)
		case !ok:
			return nil, nil, badInput("\"url\" %q is not served: use one of %s", l.URL, strings.Join(BatchURLs(), ", "))
		case l.Body == nil:
			return nil, nil, badInput("\"body\" must be a JSON object holding the request")
		}
		for _, k := range hopperFields {
			if _, clash := l.Body[k]; clash && k != "stream" {
				return nil, nil, badInput("\"body\" may not set %q: it is one of hopper's own job fields", k)
			}
		}
		job = l.Body
		job["endpoint"], _ = json.Marshal(endpoint)
		job["custom_id"], _ = json.Marshal(*l.CustomID)
	}
	job["batch"], _ = json.Marshal(b.ID)
	job["batch_key"], _ = json.Marshal(s.lineKey(id))
	job["priority"] = json.RawMessage(strconv.Itoa(b.Priority))
	if b.Origin != "" {
		// Lines that came over HTTP are as untrusted as jobs that do:
		// their webhooks are guarded.
		job["origin"], _ = json.Marshal(b.Origin)
	}
	data, err := marshalObject(job)
	if err != nil {
		return nil, nil, badInput("%v", err)
	}
	j, err := ParseJob(data, s.opts.MaxJobSize)
	if err != nil {
		return nil, nil, err
	}
	return data, j, nil
}

// BatchOptions are what a submitter gives a batch beyond its lines.
type BatchOptions struct {
	// Name is the batch's ID; a name in use gets a unique suffix, an
	// invalid or empty one a generated name.
	Name     string
	Priority int
	Origin   string
	// What an OpenAI client gave.
	Endpoint         string
	CompletionWindow string
	Metadata         json.RawMessage
	InputFileID      string
}

// SubmitBatch checks a batch file (CheckBatch) and queues it as
// new/NAME.jsonl, after writing its record batches/NAME.json (validating,
// with the options) for the runner to adopt. Refused input is a
// *BadInputError and nothing is written. It returns the record.
func (s *Spool) SubmitBatch(r io.Reader, o BatchOptions) (*Batch, error) {
	tmp := DirTmp + "/.batch." + s.ids.next()
	f, err := s.root.OpenFile(tmp, fileCreate, s.opts.FileMode)
	if err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.root.Remove(tmp)
		}
	}()
	_, _, cerr := CheckBatch(io.TeeReader(r, f), s.opts.MaxJobSize)
	err = errors.Join(f.Chmod(s.opts.FileMode), s.syncIf(f), f.Close())
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	b, err := s.createBatch(o)
	if err != nil {
		return nil, err
	}
	if err := s.moveSync(DirTmp, tmp[len(DirTmp)+1:], DirNew, b.ID+".jsonl"); err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", b.ID, err)
	}
	ok = true
	return b, nil
}

// SubmitBatchFile is SubmitBatch for a file uploaded with PutFile: its
// bytes are checked and linked into new/, not copied.
func (s *Spool) SubmitBatchFile(fileID string, o BatchOptions) (*Batch, error) {
	meta, err := s.File(fileID)
	if err != nil {
		return nil, err
	}
	f, err := s.openRegular(DirFiles + "/" + meta.ID + ".jsonl")
	if err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	_, _, cerr := CheckBatch(f, s.opts.MaxJobSize)
	f.Close()
	if cerr != nil {
		return nil, cerr
	}
	o.InputFileID = meta.ID
	b, err := s.createBatch(o)
	if err != nil {
		return nil, err
	}
	if err := s.link(DirFiles, meta.ID+".jsonl", DirNew, b.ID+".jsonl"); err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", b.ID, err)
	}
	if s.opts.Fsync {
		if err := s.syncDir(DirNew); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// AbandonedAfter is how long a batch record may wait for its input before
// FailAbandonedBatches gives up on it. A submitter places the input right
// after the record, in one rename.
const AbandonedAfter = time.Minute

// FailAbandonedBatches fails the batches whose submitter stopped between
// writing the record and placing the input (hopper batch submit, or the
// HTTP front on POST /v1/batches, killed in that instant): records still
// validating, created before before, whose input is in neither new/ nor
// batches/. It returns them, for their batch.done events. Only records
// without an input beside them are read. It also removes cancel requests
// written before before that nothing will act on — for a batch that has
// ended, or whose file was taken out of new/ by hand — so a later batch
// of the same name is not canceled by them.
func (s *Spool) FailAbandonedBatches(before time.Time) ([]*Batch, error) {
	entries, err := fs.ReadDir(s.root.FS(), DirBatches)
	if err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	inputs := map[string]bool{}
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".jsonl"); ok {
			inputs[name] = true
		}
	}
	var out []*Batch
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".cancel")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		if fi, err := e.Info(); err != nil || !fi.ModTime().Before(before) {
			continue
		}
		b, err := s.readBatch(name)
		stale := (err == nil && b.State.Terminal()) ||
			(errors.Is(err, fs.ErrNotExist) && !inputs[name] && !s.exists(DirNew, name+".jsonl"))
		if stale {
			_ = s.root.Remove(DirBatches + "/" + e.Name())
		}
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") || inputs[name] || s.exists(DirNew, name+".jsonl") {
			continue
		}
		b, err := s.readBatch(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if b.State != BatchValidating || b.Total != 0 || !b.CreatedAt.Before(before) ||
			s.exists(DirNew, name+".jsonl") || s.exists(DirBatches, name+".jsonl") {
			continue
		}
		now := s.now().UTC()
		b.State, b.FailedAt = BatchFailed, &now
		b.Errors = []BatchError{{Code: "input_missing", Message: fmt.Sprintf(
			"the batch's input never arrived: its submitter stopped after writing this record (%s) and before placing %s.jsonl in new/; submit the file again",
			b.CreatedAt.Format(time.RFC3339), name)}}
		if err := s.WriteBatch(b, true); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, b)
	}
	return out, errors.Join(errs...)
}

// createBatch picks a free name and writes the batch's first record.
func (s *Spool) createBatch(o BatchOptions) (*Batch, error) {
	name := o.Name
	if !validBatchName(name) {
		name = s.NewID()
	}
	if s.batchTaken(name, true) {
		name = s.uniqueBatchName(name)
	}
	b := &Batch{
		ID: name, State: BatchValidating, Priority: o.Priority, Origin: o.Origin,
		Endpoint: o.Endpoint, CompletionWindow: o.CompletionWindow, Metadata: o.Metadata,
		InputFileID: o.InputFileID, CreatedAt: s.now().UTC(),
	}
	data, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	if err := s.writeFile(DirBatches, name+".json", data, s.opts.Fsync, false); err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", name, err)
	}
	return b, nil
}

// uniqueBatchName is uniqueName for a batch: short enough that its lines'
// IDs are valid too (daily → daily.20261127T231005.123456Z-7f3a9c).
func (s *Spool) uniqueBatchName(stem string) string {
	id := s.NewID()
	if room := maxBatchName - len(id) - 1; len(stem) > room {
		stem = strings.TrimRight(stem[:max(room, 0)], ".")
	}
	if stem == "" {
		return id
	}
	return stem + "." + id
}

// batchTaken reports whether a batch, its output or any of its lines'
// records already uses the name; with queued set, a batch file waiting in
// new/ too.
func (s *Spool) batchTaken(name string, queued bool) bool {
	if queued && s.exists(DirNew, name+".jsonl") {
		return true
	}
	if s.exists(DirBatches, name+".json") || s.exists(DirBatches, name+".jsonl") || s.exists(DirDone, name+".jsonl") {
		return true
	}
	return s.linesLeft(name)
}

// linesLeft reports whether a job of a batch named name is in the spool,
// in any state: a new batch of that name would collide with its records
// (the batch itself may be pruned while its failed lines are kept).
func (s *Spool) linesLeft(name string) bool {
	prefix := name + "."
	for _, d := range []string{DirNew, DirCur, DirDeferred, DirHold, DirDone, DirFailed} {
		entries, _ := fs.ReadDir(s.root.FS(), d)
		for _, e := range entries {
			id, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok || !strings.HasPrefix(id, prefix) {
				continue
			}
			if b, _, ok := LineOf(id); ok && b == name {
				return true
			}
		}
	}
	return false
}

// WriteBatch rewrites batches/ID.json, fsynced when sync is set.
func (s *Spool) WriteBatch(b *Batch, sync bool) error {
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	if err := s.writeFile(DirBatches, b.ID+".json", data, sync && s.opts.Fsync, true); err != nil {
		return fmt.Errorf("write batch %s: %w", b.ID, err)
	}
	return nil
}

// openRegular opens a file of the spool for reading if it is a regular
// file: a FIFO or device put in its place is refused, not waited on.
func (s *Spool) openRegular(path string) (*os.File, error) {
	f, err := s.root.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}

// readBatch reads batches/name.json.
func (s *Spool) readBatch(name string) (*Batch, error) {
	data, err := s.root.ReadFile(DirBatches + "/" + name + ".json")
	if err != nil {
		return nil, err
	}
	var b Batch
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("batches/%s.json: %w", name, err)
	}
	if b.ID == "" {
		b.ID = name
	}
	return &b, nil
}

// ClaimBatch takes the batch file new/NAME.jsonl into batches/, adopting the
// record its submitter wrote or writing one, and checks it (ValidateBatch).
// A name in use gets a unique suffix; an invalid one a generated name. It
// returns an error wrapping ErrGone if the file went first.
func (s *Spool) ClaimBatch(e Entry) (*Batch, error) {
	stem := strings.TrimSuffix(e.Name, ".jsonl")
	name, source := stem, ""
	if !validBatchName(stem) {
		name, source = s.NewID(), e.Name
	}
	b, err := s.readBatch(name)
	adopt := err == nil && b.State == BatchValidating && b.Total == 0 && !s.exists(DirBatches, name+".jsonl")
	if !adopt && source == "" && s.batchTaken(name, false) {
		name, source = s.uniqueBatchName(name), e.Name
	}
	for try := 0; ; try++ {
		err := s.moveSync(DirNew, e.Name, DirBatches, name+".jsonl")
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try == 3 {
			return nil, fmt.Errorf("claim batch %s: %w", e.Name, err)
		}
		adopt = false
		name, source = s.uniqueBatchName(stem), e.Name
	}
	if !adopt {
		created := e.Arrived
		if created.IsZero() {
			created = s.now()
		}
		b = &Batch{ID: name, State: BatchValidating, Source: source, CreatedAt: created.UTC()}
	}
	return b, s.ValidateBatch(b)
}

// ValidateBatch checks a claimed batch's input (CheckBatch): a good one
// becomes in_progress with its total, a refused one failed with its
// errors. The record is written either way.
func (s *Spool) ValidateBatch(b *Batch) error {
	b.Input = DirBatches + "/" + b.ID + ".jsonl"
	now := s.now().UTC()
	if fi, err := s.root.Lstat(b.Input); err == nil && !fi.Mode().IsRegular() {
		// Swapped for a symlink or the like after it was looked at.
		b.State, b.FailedAt = BatchFailed, &now
		b.Errors = []BatchError{{Code: "invalid_file", Message: "the batch file is not a regular file"}}
		return s.WriteBatch(b, true)
	}
	f, err := s.openRegular(b.Input)
	if err != nil {
		return fmt.Errorf("validate batch %s: %w", b.ID, err)
	}
	c, errs, err := CheckBatch(f, s.opts.MaxJobSize)
	f.Close()
	var bad *BadInputError
	switch {
	case errors.As(err, &bad):
		b.State, b.Errors, b.FailedAt, b.Total = BatchFailed, errs, &now, c.Lines
		defer func() { _ = s.root.Remove(DirBatches + "/" + b.ID + ".cancel") }() // nothing left to cancel
	case err != nil:
		return fmt.Errorf("validate batch %s: %w", b.ID, err)
	default:
		b.State, b.Total, b.InProgressAt, b.Expanded, b.Offset = BatchInProgress, c.Lines, &now, 0, 0
		b.Digits = max(6, len(strconv.Itoa(b.Total)))
	}
	return s.WriteBatch(b, true)
}

// ExpandBatch queues up to max more lines of an in-progress batch as jobs
// new/ID.0000NN.json, from b.Offset on, then records how far it got. put
// receives the queue entry of each job written; a line that is not a
// valid request is failed at once (bad input, its bytes kept in the
// record) and reported to bad. With check set, a line whose job exists
// already anywhere is skipped: a crash may have come after it was written
// and before the record said so. It returns the number of lines handled.
func (s *Spool) ExpandBatch(b *Batch, max int, check bool, put func(Entry), bad func(line int)) (int, error) {
	f, err := s.openRegular(b.Input)
	if errors.Is(err, fs.ErrNotExist) {
		// The input was removed while the batch ran: the lines not yet
		// queued can never run, and the batch ends with the rest.
		b.Errors = append(b.Errors, BatchError{Code: "input_missing", Message: fmt.Sprintf(
			"%s was removed while the batch ran: %d of its %d lines were queued, the rest never ran", b.Input, b.Expanded, b.Total)})
		b.Total = b.Expanded
		return 0, s.WriteBatch(b, true)
	}
	if err != nil {
		return 0, fmt.Errorf("expand batch %s: %w", b.ID, err)
	}
	defer f.Close()
	if _, err := f.Seek(b.Offset, io.SeekStart); err != nil {
		return 0, fmt.Errorf("expand batch %s: %w", b.ID, err)
	}
	lr := newLineReader(f, s.opts.MaxJobSize, b.Offset)
	n := 0
	for ; n < max && b.Expanded < b.Total; n++ {
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			// The input lost lines since it was counted: those
			// lines can never run.
			b.Total = b.Expanded
			break
		}
		if err != nil {
			return n, fmt.Errorf("expand batch %s: %w", b.ID, err)
		}
		i := b.Expanded + 1
		id := b.LineID(i)
		if check && (s.ownLine(id) || s.taken(id)) {
			b.Expanded, b.Offset = i, lr.offset
			continue
		}
		var data []byte
		var j *Job
		var jerr error
		if tooLong {
			jerr = tooLongLine(lr.head(), s.opts.MaxJobSize)
		} else {
			data, j, jerr = s.batchJob(b, id, line)
		}
		if jerr != nil {
			if err := s.failLine(b, id, line, jerr); err != nil {
				return n, err
			}
			bad(i)
		} else {
			err := s.writeFile(DirNew, id+".json", data, false, false)
			if errors.Is(err, fs.ErrExist) && !s.ownLine(id) {
				// A file someone dropped under the line's name: it runs
				// as a job of its own, under another name.
				if err = s.move(DirNew, id+".json", DirNew, s.uniqueName(id)+".json"); err == nil || errors.Is(err, ErrGone) {
					err = s.writeFile(DirNew, id+".json", data, false, false)
				}
			}
			switch {
			case errors.Is(err, fs.ErrExist):
				// The line is queued already: written before a crash.
			case err != nil:
				return n, fmt.Errorf("expand batch %s: %w", b.ID, err)
			default:
				put(Entry{Dir: DirNew, Name: id + ".json", Model: j.Model, Function: j.Function, Options: j.Body["options"], Priority: j.Priority, Arrived: s.now()})
			}
		}
		b.Expanded, b.Offset = i, lr.offset
	}
	if s.opts.Fsync {
		// The jobs must be on disk before the record says they exist.
		if err := s.syncAll(); err != nil {
			return n, fmt.Errorf("expand batch %s: %w", b.ID, err)
		}
	}
	// One fsync a chunk: after a power loss the record is at most a
	// chunk behind the jobs, which the next start's check covers.
	return n, s.WriteBatch(b, true)
}

// failLine writes the failed record of a batch line that cannot run.
func (s *Spool) failLine(b *Batch, id string, line []byte, why error) error {
	now := s.now()
	_, i, _ := LineOf(id)
	rec := &Record{ID: id, State: StateFailed, SubmittedAt: now, FinishedAt: &now,
		Error: &JobError{Kind: KindBadInput, Message: fmt.Sprintf("request %d of batch %s: %v", i, b.ID, why)}}
	switch {
	case line == nil:
		// Too large to copy: its bytes stay in the batch's input.
		rec.Error.Message += fmt.Sprintf("; its bytes are request %d of %s", i, b.Input)
	case json.Valid(line):
		rec.Job = json.RawMessage(bytes.Clone(line))
	default:
		raw := strings.ToValidUTF8(string(line), "\uFFFD")
		rec.JobRaw = &raw
	}
	data, err := rec.Marshal()
	if err != nil {
		return err
	}
	if err := s.writeFile(DirFailed, id+".json", data, false, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil // refused before a crash: its event was emitted then
		}
		return fmt.Errorf("expand batch %s: %w", b.ID, err)
	}
	if s.ended != nil {
		// The event names no webhook of the line's own: its bytes were
		// refused, so nothing in them is trusted.
		ev := *rec
		ev.Job, ev.JobRaw = nil, nil
		s.ended(&ev, "")
	}
	return nil
}

// LineState says where a batch line's job is: ended (done or failed), still
// live (queued, running, deferred or held), or gone (pruned, or moved away
// by hand: it will never end).
type LineState int

// The states of a line.
const (
	LineLive LineState = iota
	LineDone
	LineFailed
	LineGone
)

// LineEnded reports where batch line id's job is. A job moving between
// directories while it looks is looked for again before it is called gone.
func (s *Spool) LineEnded(id string) LineState {
	name := id + ".json"
	for range 3 {
		// In the order jobs move: new/, cur/, then the rest.
		for _, d := range []string{DirNew, DirCur, DirDeferred, DirHold} {
			if s.exists(d, name) {
				return LineLive
			}
		}
		if s.exists(DirDone, name) {
			return LineDone
		}
		if s.exists(DirFailed, name) {
			return LineFailed
		}
	}
	return LineGone
}

// LineLive reports whether batch line id's job is queued, running,
// deferred or held.
func (s *Spool) LineLive(id string) bool {
	for _, d := range []string{DirNew, DirCur, DirDeferred, DirHold} {
		if s.exists(d, id+".json") {
			return true
		}
	}
	return false
}

// CancelQueuedLines fails the jobs of ids that are still in new/ as
// canceled, with reason: each is claimed by rename as a runner claims, its
// record written in cur/ and moved to failed/, without an fsync each; one
// sync of the filesystem ends the lot. It returns the IDs it canceled; the
// others were claimed first or were never queued.
func (s *Spool) CancelQueuedLines(ids []string, reason string) ([]string, error) {
	var done []string
	var errs []error
	for _, id := range ids {
		if err := s.move(DirNew, id+".json", DirCur, id+".json"); err != nil {
			if !errors.Is(err, ErrGone) {
				errs = append(errs, err)
			}
			continue
		}
		c, err := s.load(id, "", s.changeTime(DirCur, id+".json"), true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		now := s.now()
		c.Record.State, c.Record.FinishedAt = StateFailed, &now
		c.Record.Error = &JobError{Kind: KindCanceled, Message: reason}
		data, err := c.Record.Marshal()
		if err == nil {
			err = s.writeFile(DirCur, id+".json", data, false, true)
		}
		if err == nil && s.ended != nil {
			s.ended(c.Record, StateQueued)
		}
		if err == nil {
			err = s.move(DirCur, id+".json", DirFailed, id+".json")
		}
		if err != nil {
			errs = append(errs, err) // left in cur/: recovery moves it on
			continue
		}
		done = append(done, id)
	}
	if s.opts.Fsync && len(done) > 0 {
		errs = append(errs, s.syncAll())
	}
	return done, errors.Join(errs...)
}

// CancelBatch asks the runner to cancel a batch: it writes
// batches/NAME.cancel, which the runner acts on (queued lines are failed as
// canceled, the running one aborted, and the output written with what had
// ended).
// It returns the batch as it now stands.
func (s *Spool) CancelBatch(name string) (*Batch, error) {
	b, err := s.GetBatch(name)
	if err != nil {
		return nil, err
	}
	if b.State.Terminal() {
		return b, fmt.Errorf("cancel batch %s: %w (%s)", b.ID, ErrBatchEnded, b.State)
	}
	at, _ := s.now().UTC().MarshalText()
	if err := s.writeFile(DirBatches, b.ID+".cancel", append(at, '\n'), s.opts.Fsync, true); err != nil {
		return nil, fmt.Errorf("cancel batch %s: %w", b.ID, err)
	}
	return s.GetBatch(b.ID)
}

// BatchCancelRequested reports whether batches/NAME.cancel exists.
func (s *Spool) BatchCancelRequested(name string) bool {
	return s.exists(DirBatches, name+".cancel")
}

// GetBatch returns batch name's record. A batch still in new/ with no
// record is described as validating; one with a cancel request that is
// still running as cancelling.
func (s *Spool) GetBatch(name string) (*Batch, error) {
	if !ValidID(name) {
		return nil, notFoundf("%q is not a batch name", name)
	}
	b, err := s.readBatch(name)
	switch {
	case err == nil:
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	case s.exists(DirBatches, name+".jsonl"):
		b = &Batch{ID: name, State: BatchValidating, CreatedAt: s.changeTime(DirBatches, name+".jsonl").UTC()}
	case s.exists(DirNew, name+".jsonl"):
		b = &Batch{ID: name, State: BatchValidating, CreatedAt: s.changeTime(DirNew, name+".jsonl").UTC()}
	default:
		return nil, notFoundf("no batch named %s", name)
	}
	s.showCancel(b)
	return b, nil
}

// showCancel shows a running batch with a cancel request as cancelling.
func (s *Spool) showCancel(b *Batch) {
	if !b.State.Terminal() && b.State != BatchCancelling && s.BatchCancelRequested(b.ID) {
		b.State = BatchCancelling
		if fi, err := s.root.Stat(DirBatches + "/" + b.ID + ".cancel"); err == nil {
			t := fi.ModTime().UTC()
			b.CancellingAt = &t
		}
	}
}

// ListBatches returns every batch record, oldest first. Batch files
// waiting in new/ without a record are listed as validating. Records that
// cannot be read are left out and named in the error, beside the rest.
func (s *Spool) ListBatches() ([]*Batch, error) {
	var out []*Batch
	var bad []error
	seen := map[string]bool{}
	entries, err := fs.ReadDir(s.root.FS(), DirBatches)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			name, ok = strings.CutSuffix(e.Name(), ".jsonl")
		}
		if !ok || strings.HasPrefix(name, ".") || seen[name] {
			continue
		}
		seen[name] = true
		b, err := s.GetBatch(name)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, b)
	}
	waiting, err := fs.ReadDir(s.root.FS(), DirNew)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	for _, e := range waiting {
		if name, ok := strings.CutSuffix(e.Name(), ".jsonl"); ok && BatchCandidate(e.Name()) && !seen[name] && ValidID(name) {
			seen[name] = true
			if b, err := s.GetBatch(name); err == nil {
				out = append(out, b)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, errors.Join(bad...)
}
