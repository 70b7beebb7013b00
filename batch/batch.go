package batch

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/internal/openai"
	"github.com/hopper-dev/hopper/spool"
)

// Store keeps a spool's batches: their files in batches/, their lines'
// jobs, their output in done/ and failed/. It holds no state of its own
// beyond the spool, so any number of them, in any processes, may serve
// one spool at once, as the spool's own verbs may.
type Store struct {
	sp *spool.Spool
}

// New returns the Store of the batches in sp.
func New(sp *spool.Spool) *Store { return &Store{sp: sp} }

func (s *Store) now() time.Time { return s.sp.Options().Now() }

// badInput is a *spool.BadInputError saying what is wrong with a line.
func badInput(format string, args ...any) error {
	return &spool.BadInputError{Reason: fmt.Sprintf(format, args...)}
}

var utf8BOM = []byte("\xef\xbb\xbf")

func trimBOM(data []byte) []byte { return bytes.TrimPrefix(data, utf8BOM) }

func firstByte(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// State is a batch's status, named as OpenAI's Batch API names them.
type State string

// The states of a batch.
const (
	Validating State = "validating"  // submitted; not yet checked and counted
	InProgress State = "in_progress" // its lines are queued and running
	Finalizing State = "finalizing"  // every line ended; the output is being written
	Completed  State = "completed"   // the output is written
	Failed     State = "failed"      // refused as a whole (errors says why); no line ran
	Cancelling State = "cancelling"  // a cancel was asked for and is being carried out
	Cancelled  State = "cancelled"   // canceled; the output holds what had ended
)

// Terminal reports whether the batch has ended.
func (s State) Terminal() bool {
	return s == Completed || s == Failed || s == Cancelled
}

// Record is a batch's record, batches/NAME.json.
type Record struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// Total is the number of lines (blank lines aside); Done and Failed
	// count the lines that have ended so far.
	Total    int `json:"total"`
	Done     int `json:"done"`
	Failed   int `json:"failed"`
	Priority int `json:"priority"`
	// Digits is the width of the line numbers in the lines' IDs, fixed
	// when the batch is counted (6, or more for a million lines or more).
	Digits int `json:"digits,omitempty"`
	// LineSep is what separates the name from the number in the lines'
	// IDs: "~" (spool.LineSep). A batch counted before hopper reserved it has
	// "." (NAME.000042) and keeps it until it ends; read fills it in.
	LineSep string `json:"line_sep,omitempty"`
	// Expanded is how many lines are queued as jobs so far, and Offset the
	// byte offset in the input of the next line to queue.
	Expanded int   `json:"expanded"`
	Offset   int64 `json:"offset"`
	// Source is the file name the batch arrived under, when the ID differs.
	Source string `json:"source,omitempty"`
	// Origin is spool.OriginHTTP for batches created over HTTP.
	Origin string `json:"origin,omitempty"`
	// Endpoint, CompletionWindow, Metadata and InputFileID are what an
	// OpenAI client gave when it created the batch.
	Endpoint         string          `json:"endpoint,omitempty"`
	CompletionWindow string          `json:"completion_window,omitempty"`
	Metadata         json.RawMessage `json:"metadata,omitempty"`
	InputFileID      string          `json:"input_file_id,omitempty"`
	// Input, Output and ErrorsFile are paths relative to the spool.
	Input      string    `json:"input,omitempty"`
	Output     string    `json:"output,omitempty"`
	ErrorsFile string    `json:"errors_file,omitempty"`
	Errors     []Problem `json:"errors,omitempty"`

	CreatedAt    time.Time  `json:"created_at"`
	InProgressAt *time.Time `json:"in_progress_at,omitempty"`
	FinalizingAt *time.Time `json:"finalizing_at,omitempty"`
	CompletedAt  *time.Time `json:"completed_at,omitempty"`
	FailedAt     *time.Time `json:"failed_at,omitempty"`
	CancellingAt *time.Time `json:"cancelling_at,omitempty"`
	CancelledAt  *time.Time `json:"cancelled_at,omitempty"`
}

// Problem says why a batch was refused as a whole.
type Problem struct {
	Code    string `json:"code"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// legacySep separated a line's number in batches counted before
// spool.LineSep was reserved.
const legacySep = "."

// Width is the number of digits in the batch's line IDs.
func (b *Record) Width() int {
	if b.Digits > 0 {
		return b.Digits
	}
	return max(6, len(strconv.Itoa(b.Total)))
}

// LineID is the ID of line i (from 1) of the batch.
func (b *Record) LineID(i int) string {
	return fmt.Sprintf("%s%s%0*d", b.ID, cmp.Or(b.LineSep, string(spool.LineSep)), b.Width(), i)
}

// Ended is how many lines have ended.
func (b *Record) Ended() int { return b.Done + b.Failed }

// maxName leaves room for the line number in a line's ID.
const maxName = 100

// ValidName reports whether name may name a batch: a job ID a person
// may give (spool.PlainID) short enough for its lines' IDs.
func ValidName(name string) bool { return len(name) <= maxName && spool.PlainID(name) }

// Marshal encodes a batch record as indented JSON.
func (b *Record) Marshal() ([]byte, error) {
	data, err := jsonfmt.MarshalIndent(b)
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
		key, err := sc.text()
		if err != nil {
			return "", err
		}
		if c, err := sc.peek(); err != nil || c != ':' {
			return "", cmp.Or(err, errNotJSON)
		}
		sc.i++
		if strings.EqualFold(key, "custom_id") {
			if c, err := sc.peek(); err != nil || c != '"' {
				return "", cmp.Or(err, errors.New("its custom_id is not a string"))
			}
			return sc.text()
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

// text decodes the string token at sc.i.
func (sc *headScanner) text() (string, error) {
	tok, err := sc.str()
	if err != nil {
		return "", err
	}
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return "", errNotJSON
	}
	return s, nil
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

// RefusedError is why a batch file was refused as a whole: a
// *spool.BadInputError (errors.As finds one) that keeps every problem's code and
// line.
type RefusedError struct {
	Errors []Problem
}

func (e *RefusedError) Error() string {
	more := ""
	if len(e.Errors) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(e.Errors)-1)
	}
	return e.Errors[0].Message + more
}

// Unwrap makes the refusal bad input.
func (e *RefusedError) Unwrap() error { return &spool.BadInputError{Reason: e.Error()} }

// ErrEnded means a batch has ended and can no longer be canceled.
var ErrEnded = errors.New("the batch already ended")

// Checked is what checking a batch file found.
type Checked struct {
	Lines int // non-blank lines
}

// Check reads a batch file through and counts its lines. It refuses,
// with a *RefusedError (bad input) whose problems it also returns, a
// file with no lines and one in which two lines share a custom_id, since
// answers could not be told apart. Malformed
// lines are not refused here: each fails on its own when the batch runs.
//
// The custom_ids are not kept: each is indexed by a 128-bit fingerprint
// (idPrint), so a batch of millions of lines with long custom_ids holds
// about 30 bytes a line, whatever their length.
func Check(r io.Reader, maxLine int64) (Checked, []Problem, error) {
	lr := newLineReader(r, maxLine, 0)
	seen := map[idPrint]int{}
	var c Checked
	var errs []Problem
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
			p := printOf(id)
			if first, dup := seen[p]; dup {
				if len(errs) < 100 {
					errs = append(errs, Problem{Code: "duplicate_custom_id", Line: lr.line,
						Message: fmt.Sprintf("line %d repeats the custom_id %q of line %d; every line needs its own", lr.line, id, first)})
				}
				continue
			}
			seen[p] = lr.line
		}
	}
	if len(errs) == 0 && c.Lines == 0 {
		errs = []Problem{{Code: "empty_file", Message: "the batch has no lines: give one request per line"}}
	}
	if len(errs) > 0 {
		return c, errs, &RefusedError{Errors: errs}
	}
	return c, nil, nil
}

// idPrint is a custom_id's fingerprint: the first 128 bits of its SHA-256.
// Two custom_ids that differ share one with a chance of about 2^-128 a
// pair, so far below 2^-64 for the largest batch that the index may stand
// for the custom_ids themselves.
type idPrint [16]byte

func printOf(id string) idPrint {
	sum := sha256.Sum256([]byte(id))
	return idPrint(sum[:16])
}

// batchURLs maps the url of an OpenAI Batch API line to the endpoint
// of its job.
var batchURLs = map[string]string{
	"/v1/chat/completions": "openai.chat",
	"/v1/completions":      "openai.completions",
	"/v1/embeddings":       "openai.embeddings",
}

// URLs lists the urls an OpenAI batch line may name, sorted.
func URLs() []string {
	urls := make([]string, 0, len(batchURLs))
	for u := range batchURLs {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	return urls
}

// lineJob turns one line of batch b into the job file for it: an OpenAI
// line's body with the endpoint its url names, or a hopper job as given,
// plus the batch's name and priority. It returns the job's bytes and the
// parsed job; an error is a *spool.BadInputError saying what is wrong with the
// line.
func (s *Store) lineJob(b *Record, id string, line []byte) ([]byte, *spool.Job, error) {
	line = trimBOM(line)
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		return nil, nil, spool.JSONError(line, err)
	}
	if obj == nil {
		return nil, nil, badInput("a batch line must be a JSON object, got null")
	}
	if raw, ok := obj["custom_id"]; ok && firstByte(raw) != '"' {
		return nil, nil, badInput("\"custom_id\" must be a string, got %s", spool.Describe(raw))
	}
	var custom *string
	if raw, ok := obj["custom_id"]; ok {
		custom = new(string)
		_ = json.Unmarshal(raw, custom)
	}
	job := obj
	if _, isOpenAI := obj["url"]; isOpenAI || obj["body"] != nil {
		for key, want := range map[string]byte{"url": '"', "method": '"', "body": '{'} {
			if raw, ok := obj[key]; ok && firstByte(raw) != want {
				kind := "a string"
				if want == '{' {
					kind = "a JSON object holding the request"
				}
				return nil, nil, badInput("%q must be %s, got %s", key, kind, spool.Describe(raw))
			}
		}
		var l openai.BatchLine
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, nil, badInput("not an OpenAI batch line ({\"custom_id\", \"method\": \"POST\", \"url\", \"body\": {…}}): %v", err)
		}
		endpoint, ok := batchURLs[l.URL]
		switch {
		case l.CustomID == nil:
			return nil, nil, badInput("an OpenAI batch line needs a \"custom_id\" to match its answer")
		case l.Method != nil && *l.Method != "POST":
			return nil, nil, badInput("\"method\" must be \"POST\", got %q", *l.Method)
		case !ok:
			return nil, nil, badInput("\"url\" %q is not served: use one of %s", l.URL, strings.Join(URLs(), ", "))
		case l.Body == nil:
			return nil, nil, badInput("\"body\" must be a JSON object holding the request")
		}
		for _, k := range slices.Sorted(maps.Keys(l.Body)) {
			if spool.IsHopperField(k) && k != "stream" || k == "custom_id" {
				return nil, nil, badInput("\"body\" may not set %q: it is one of hopper's own job fields", k)
			}
		}
		job = l.Body
		job["endpoint"], _ = json.Marshal(endpoint)
		custom = l.CustomID
	}
	delete(job, "custom_id")
	delete(job, "batch_key")
	job["batch"], _ = json.Marshal(lineField{Name: b.ID, CustomID: custom, Key: s.sp.LineKey(id)})
	job["priority"] = json.RawMessage(strconv.Itoa(b.Priority))
	if b.Origin != "" {
		// Lines that came over HTTP are as untrusted as jobs that do:
		// their webhooks are guarded.
		job["origin"], _ = json.Marshal(b.Origin)
	}
	data, err := jsonfmt.Marshal(job)
	if err != nil {
		return nil, nil, badInput("%v", err)
	}
	j, err := spool.ParseJob(data, s.sp.Options().MaxJobSize)
	if err != nil {
		return nil, nil, err
	}
	return data, j, nil
}

// lineField is the "batch" object of a line's job: the batch's name, the
// line's custom_id and the proof that hopper wrote it (spool.LineKey).
// spool.ParseJob reads the name and the key.
type lineField struct {
	Name     string  `json:"name"`
	CustomID *string `json:"custom_id,omitempty"`
	Key      string  `json:"key"`
}

// jobCustomID is the custom_id a line's job carries: in its "batch"
// object, or at its top level in lines written before spool.LineSep was
// reserved.
func jobCustomID(job []byte) (string, bool) {
	var probe struct {
		Batch json.RawMessage `json:"batch"`
	}
	if json.Unmarshal(trimBOM(job), &probe) == nil && firstByte(probe.Batch) == '{' {
		return customID(probe.Batch)
	}
	return customID(job)
}

// Options are what a submitter gives a batch beyond its lines.
type Options struct {
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

// Submit checks a batch file (Check) and queues it as
// new/NAME.jsonl, after writing its record batches/NAME.json (validating,
// with the options) for the runner to adopt. Refused input is a
// *spool.BadInputError and nothing is written. It returns the record.
func (s *Store) Submit(r io.Reader, o Options) (*Record, error) {
	in, err := s.sp.NewPending("batch", 0)
	if err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	defer in.Discard()
	if _, _, err := Check(io.TeeReader(r, in), s.sp.Options().MaxJobSize); err != nil {
		return nil, err
	}
	b, err := s.create(o)
	if err != nil {
		return nil, err
	}
	if err := in.Commit(spool.DirNew, b.ID+".jsonl", true, false); err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", b.ID, err)
	}
	return b, nil
}

// SubmitFile is Submit for a file uploaded with PutFile: its
// bytes are checked and linked into new/, not copied.
func (s *Store) SubmitFile(fileID string, o Options) (*Record, error) {
	meta, err := s.File(fileID)
	if err != nil {
		return nil, err
	}
	f, err := s.sp.OpenRegular(FilePath(meta.ID))
	if err != nil {
		return nil, fmt.Errorf("submit batch: %w", err)
	}
	_, _, cerr := Check(f, s.sp.Options().MaxJobSize)
	f.Close()
	if cerr != nil {
		return nil, cerr
	}
	o.InputFileID = meta.ID
	b, err := s.create(o)
	if err != nil {
		return nil, err
	}
	if err := s.sp.Link(spool.DirFiles, meta.ID+".jsonl", spool.DirNew, b.ID+".jsonl"); err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", b.ID, err)
	}
	return b, nil
}

// AbandonedAfter is how long a batch record may wait for its input before
// FailAbandoned gives up on it. A submitter places the input right
// after the record, in one rename.
const AbandonedAfter = time.Minute

// FailAbandoned fails the batches whose submitter stopped between
// writing the record and placing the input (hopper batch submit, or the
// HTTP front on POST /v1/batches, killed in that instant): records still
// validating, created before before, whose input is in neither new/ nor
// batches/. It returns them, for their batch.done events. Only records
// without an input beside them are read. It also removes cancel requests
// written before before that nothing will act on — for a batch that has
// ended, or whose file was taken out of new/ by hand — so a later batch
// of the same name is not canceled by them.
func (s *Store) FailAbandoned(before time.Time) ([]*Record, error) {
	entries, err := s.sp.ReadDir(spool.DirBatches)
	if err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	inputs := map[string]bool{}
	for name := range batchFiles(entries, ".jsonl") {
		inputs[name] = true
	}
	var out []*Record
	var errs []error
	for name, e := range batchFiles(entries, ".cancel") {
		if fi, err := e.Info(); err != nil || !fi.ModTime().Before(before) {
			continue
		}
		b, err := s.read(name)
		stale := (err == nil && b.State.Terminal()) ||
			(errors.Is(err, fs.ErrNotExist) && !inputs[name] && !s.sp.Exists(spool.DirNew, name+".jsonl"))
		if stale {
			_ = s.sp.Remove(spool.DirBatches + "/" + e.Name())
		}
	}
	for name := range batchFiles(entries, ".json") {
		if inputs[name] || s.sp.Exists(spool.DirNew, name+".jsonl") {
			continue
		}
		b, err := s.read(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if b.State != Validating || b.Total != 0 || !b.CreatedAt.Before(before) ||
			s.sp.Exists(spool.DirNew, name+".jsonl") || s.sp.Exists(spool.DirBatches, name+".jsonl") {
			continue
		}
		now := s.now().UTC()
		b.State, b.FailedAt = Failed, &now
		b.Errors = []Problem{{Code: "input_missing", Message: fmt.Sprintf(
			"the batch's input never arrived: its submitter stopped after writing this record (%s) and before placing %s.jsonl in new/; submit the file again",
			b.CreatedAt.Format(time.RFC3339), name)}}
		if err := s.Write(b, true); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, b)
	}
	return out, errors.Join(errs...)
}

// create picks a free name and writes the batch's first record.
func (s *Store) create(o Options) (*Record, error) {
	name := o.Name
	if !ValidName(name) {
		name = s.sp.NewID()
	}
	if s.nameTaken(name, true) {
		name = s.uniqueName(name)
	}
	b := &Record{
		ID: name, State: Validating, Priority: o.Priority, Origin: o.Origin,
		Endpoint: o.Endpoint, CompletionWindow: o.CompletionWindow, Metadata: o.Metadata,
		InputFileID: o.InputFileID, CreatedAt: s.now().UTC(),
	}
	data, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	if err := s.sp.CreateFile(spool.DirBatches, name+".json", data, true); err != nil {
		return nil, fmt.Errorf("submit batch %s: %w", name, err)
	}
	return b, nil
}

// uniqueName is uniqueName for a batch: short enough that its lines'
// IDs are valid too (daily → daily.20261127T231005.123456Z-7f3a9c).
func (s *Store) uniqueName(stem string) string {
	id := s.sp.NewID()
	if room := maxName - len(id) - 1; len(stem) > room {
		stem = strings.TrimRight(stem[:max(room, 0)], ".")
	}
	if stem == "" {
		return id
	}
	return stem + "." + id
}

// nameTaken reports whether a batch, its output or any of its lines'
// records already uses the name; with queued set, a batch file waiting in
// new/ too.
func (s *Store) nameTaken(name string, queued bool) bool {
	if queued && s.sp.Exists(spool.DirNew, name+".jsonl") {
		return true
	}
	if s.sp.Exists(spool.DirBatches, name+".json") || s.sp.Exists(spool.DirBatches, name+".jsonl") || s.sp.Exists(spool.DirDone, name+".jsonl") {
		return true
	}
	return s.linesLeft(name)
}

// linesLeft reports whether a job of a batch named name is in the spool,
// in any state: a new batch of that name would collide with its records
// (the batch itself may be pruned while its failed lines are kept).
func (s *Store) linesLeft(name string) bool {
	prefix := name + string(spool.LineSep)
	for _, d := range []string{spool.DirNew, spool.DirCur, spool.DirDeferred, spool.DirHold, spool.DirDone, spool.DirFailed} {
		entries, _ := s.sp.ReadDir(d)
		for _, e := range entries {
			id, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok || !strings.HasPrefix(id, prefix) {
				continue
			}
			if b, _, ok := spool.LineOf(id); ok && b == name {
				return true
			}
		}
	}
	return false
}

// Write rewrites batches/ID.json, fsynced when sync is set.
func (s *Store) Write(b *Record, sync bool) error {
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	if err := s.sp.WriteFile(spool.DirBatches, b.ID+".json", data, sync); err != nil {
		return fmt.Errorf("write batch %s: %w", b.ID, err)
	}
	return nil
}

// fileOf is the name of the batch whose file in batches/ e is, when e's
// name ends in ext (".json", ".jsonl", ".cancel"); false for another file
// or for a dot-file (one being written).
func fileOf(e fs.DirEntry, ext string) (string, bool) {
	name, ok := strings.CutSuffix(e.Name(), ext)
	return name, ok && !strings.HasPrefix(name, ".")
}

// batchFiles yields, of entries (a listing of batches/), each file whose
// name ends in ext and is not a dot-file, with the name of its batch.
func batchFiles(entries []fs.DirEntry, ext string) iter.Seq2[string, fs.DirEntry] {
	return func(yield func(string, fs.DirEntry) bool) {
		for _, e := range entries {
			if name, ok := fileOf(e, ext); ok && !yield(name, e) {
				return
			}
		}
	}
}

// read reads batches/name.json.
func (s *Store) read(name string) (*Record, error) {
	data, err := s.sp.ReadFile(spool.DirBatches + "/" + name + ".json")
	if err != nil {
		return nil, err
	}
	var b Record
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("batches/%s.json: %w", name, err)
	}
	if b.ID == "" {
		b.ID = name
	}
	if b.LineSep == "" && (b.State != Validating || b.Total > 0) {
		b.LineSep = legacySep // counted before spool.LineSep was reserved
	}
	return &b, nil
}

// Claim takes the batch file new/NAME.jsonl into batches/, adopting the
// record its submitter wrote or writing one, and checks it (Validate).
// A name in use gets a unique suffix; an invalid one a generated name. It
// returns an error wrapping spool.ErrGone if the file went first.
func (s *Store) Claim(e spool.Entry) (*Record, error) {
	stem := strings.TrimSuffix(e.Name, ".jsonl")
	name, source := stem, ""
	if !ValidName(stem) {
		name, source = s.sp.NewID(), e.Name
	}
	b, err := s.read(name)
	adopt := err == nil && b.State == Validating && b.Total == 0 && !s.sp.Exists(spool.DirBatches, name+".jsonl")
	if !adopt && source == "" && s.nameTaken(name, false) {
		name, source = s.uniqueName(name), e.Name
	}
	for try := 0; ; try++ {
		err := s.sp.Move(spool.DirNew, e.Name, spool.DirBatches, name+".jsonl", true)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || try == 3 {
			return nil, fmt.Errorf("claim batch %s: %w", e.Name, err)
		}
		adopt = false
		name, source = s.uniqueName(stem), e.Name
	}
	if !adopt {
		created := e.Arrived
		if created.IsZero() {
			created = s.now()
		}
		b = &Record{ID: name, State: Validating, Source: source, CreatedAt: created.UTC()}
	}
	return b, s.Validate(b)
}

// Validate checks a claimed batch's input (Check): a good one
// becomes in_progress with its total, a refused one failed with its
// errors. The record is written either way.
func (s *Store) Validate(b *Record) error {
	b.Input = spool.DirBatches + "/" + b.ID + ".jsonl"
	now := s.now().UTC()
	if fi, err := s.sp.Lstat(b.Input); err == nil && !fi.Mode().IsRegular() {
		// Swapped for a symlink or the like after it was looked at.
		b.State, b.FailedAt = Failed, &now
		b.Errors = []Problem{{Code: "invalid_file", Message: "the batch file is not a regular file"}}
		return s.Write(b, true)
	}
	f, err := s.sp.OpenRegular(b.Input)
	if err != nil {
		return fmt.Errorf("validate batch %s: %w", b.ID, err)
	}
	c, errs, err := Check(f, s.sp.Options().MaxJobSize)
	f.Close()
	var bad *spool.BadInputError
	switch {
	case errors.As(err, &bad):
		b.State, b.Errors, b.FailedAt, b.Total = Failed, errs, &now, c.Lines
		defer func() { _ = s.sp.Remove(spool.DirBatches + "/" + b.ID + ".cancel") }() // nothing left to cancel
	case err != nil:
		return fmt.Errorf("validate batch %s: %w", b.ID, err)
	default:
		b.State, b.Total, b.InProgressAt, b.Expanded, b.Offset = InProgress, c.Lines, &now, 0, 0
		b.Digits, b.LineSep = max(6, len(strconv.Itoa(b.Total))), string(spool.LineSep)
	}
	return s.Write(b, true)
}

// Expand queues up to max more lines of an in-progress batch as jobs
// new/NAME~0000NN.json, from b.Offset on, then records how far it got. put
// receives the queue entry of each job written; a line that is not a
// valid request is failed at once (bad input, its bytes kept in the
// record) and reported to bad. With check set, a line whose job exists
// already anywhere is skipped: a crash may have come after it was written
// and before the record said so. It returns the number of lines handled.
func (s *Store) Expand(b *Record, max int, check bool, put func(spool.Entry), bad func(line int)) (int, error) {
	f, err := s.sp.OpenRegular(b.Input)
	if errors.Is(err, fs.ErrNotExist) {
		// The input was removed while the batch ran: the lines not yet
		// queued can never run, and the batch ends with the rest.
		b.Errors = append(b.Errors, Problem{Code: "input_missing", Message: fmt.Sprintf(
			"%s was removed while the batch ran: %d of its %d lines were queued, the rest never ran", b.Input, b.Expanded, b.Total)})
		b.Total = b.Expanded
		return 0, s.Write(b, true)
	}
	if err != nil {
		return 0, fmt.Errorf("expand batch %s: %w", b.ID, err)
	}
	defer f.Close()
	if _, err := f.Seek(b.Offset, io.SeekStart); err != nil {
		return 0, fmt.Errorf("expand batch %s: %w", b.ID, err)
	}
	lr := newLineReader(f, s.sp.Options().MaxJobSize, b.Offset)
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
		if check && (s.sp.OwnLine(id) || s.sp.Taken(id)) {
			b.Expanded, b.Offset = i, lr.offset
			continue
		}
		var data []byte
		var j *spool.Job
		var jerr error
		if tooLong {
			jerr = tooLongLine(lr.head(), s.sp.Options().MaxJobSize)
		} else {
			data, j, jerr = s.lineJob(b, id, line)
		}
		if jerr != nil {
			if err := s.failLine(b, id, line, jerr); err != nil {
				return n, err
			}
			bad(i)
		} else {
			err := s.sp.CreateFile(spool.DirNew, id+".json", data, false)
			if errors.Is(err, fs.ErrExist) && !s.sp.OwnLine(id) {
				// A file someone dropped under the line's name: it runs
				// as a job of its own, under another name.
				if err = s.sp.Move(spool.DirNew, id+".json", spool.DirNew, s.sp.UniqueName(id)+".json", false); err == nil || errors.Is(err, spool.ErrGone) {
					err = s.sp.CreateFile(spool.DirNew, id+".json", data, false)
				}
			}
			switch {
			case errors.Is(err, fs.ErrExist):
				// The line is queued already: written before a crash.
			case err != nil:
				return n, fmt.Errorf("expand batch %s: %w", b.ID, err)
			default:
				put(spool.Entry{Dir: spool.DirNew, Name: id + ".json", Model: j.Model, Function: j.Function, Options: j.Body["options"], Priority: j.Priority, Arrived: s.now()})
			}
		}
		b.Expanded, b.Offset = i, lr.offset
	}
	// The jobs must be on disk before the record says they exist.
	if err := s.sp.SyncAll(); err != nil {
		return n, fmt.Errorf("expand batch %s: %w", b.ID, err)
	}
	// One fsync a chunk: after a power loss the record is at most a
	// chunk behind the jobs, which the next start's check covers.
	return n, s.Write(b, true)
}

// failLine writes the failed record of a batch line that cannot run.
func (s *Store) failLine(b *Record, id string, line []byte, why error) error {
	now := s.now()
	_, i, _ := spool.LineOf(id)
	rec := &spool.Record{ID: id, State: spool.StateFailed, SubmittedAt: now, FinishedAt: &now,
		Error: &spool.JobError{Kind: spool.KindBadInput, Message: fmt.Sprintf("request %d of batch %s: %v", i, b.ID, why)}}
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
	// The event names no webhook of the line's own: its bytes were
	// refused, so nothing in them is trusted.
	told := *rec
	told.Job, told.JobRaw = nil, nil
	if err := s.sp.Reject(rec, &told); err != nil {
		return fmt.Errorf("expand batch %s: %w", b.ID, err)
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
func (s *Store) LineEnded(id string) LineState {
	name := id + ".json"
	for range 3 {
		// In the order jobs move: new/, cur/, then the rest.
		for _, d := range []string{spool.DirNew, spool.DirCur, spool.DirDeferred, spool.DirHold} {
			if s.sp.Exists(d, name) {
				return LineLive
			}
		}
		if s.sp.Exists(spool.DirDone, name) {
			return LineDone
		}
		if s.sp.Exists(spool.DirFailed, name) {
			return LineFailed
		}
	}
	return LineGone
}

// LineLive reports whether batch line id's job is queued, running,
// deferred or held.
func (s *Store) LineLive(id string) bool {
	for _, d := range []string{spool.DirNew, spool.DirCur, spool.DirDeferred, spool.DirHold} {
		if s.sp.Exists(d, id+".json") {
			return true
		}
	}
	return false
}

// Cancel asks the runner to cancel a batch: it writes
// batches/NAME.cancel, which the runner acts on (queued lines are failed as
// canceled, the running one aborted, and the output written with what had
// ended).
// It returns the batch as it now stands.
func (s *Store) Cancel(name string) (*Record, error) {
	b, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	if b.State.Terminal() {
		return b, fmt.Errorf("cancel batch %s: %w (%s)", b.ID, ErrEnded, b.State)
	}
	at, _ := s.now().UTC().MarshalText()
	if err := s.sp.WriteFile(spool.DirBatches, b.ID+".cancel", append(at, '\n'), true); err != nil {
		return nil, fmt.Errorf("cancel batch %s: %w", b.ID, err)
	}
	return s.Get(b.ID)
}

// CancelRequested reports whether batches/NAME.cancel exists.
func (s *Store) CancelRequested(name string) bool {
	return s.sp.Exists(spool.DirBatches, name+".cancel")
}

// Get returns batch name's record. A batch still in new/ with no
// record is described as validating; one with a cancel request that is
// still running as cancelling.
func (s *Store) Get(name string) (*Record, error) {
	if !spool.ValidID(name) {
		return nil, spool.NotFound("%q is not a batch name", name)
	}
	b, err := s.read(name)
	switch {
	case err == nil:
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	case s.sp.Exists(spool.DirBatches, name+".jsonl"):
		b = &Record{ID: name, State: Validating, CreatedAt: s.sp.ChangeTime(spool.DirBatches, name+".jsonl").UTC()}
	case s.sp.Exists(spool.DirNew, name+".jsonl"):
		b = &Record{ID: name, State: Validating, CreatedAt: s.sp.ChangeTime(spool.DirNew, name+".jsonl").UTC()}
	default:
		return nil, spool.NotFound("no batch named %s", name)
	}
	s.showCancel(b)
	return b, nil
}

// showCancel shows a running batch with a cancel request as cancelling.
func (s *Store) showCancel(b *Record) {
	if !b.State.Terminal() && b.State != Cancelling && s.CancelRequested(b.ID) {
		b.State = Cancelling
		if fi, err := s.sp.Stat(spool.DirBatches + "/" + b.ID + ".cancel"); err == nil {
			t := fi.ModTime().UTC()
			b.CancellingAt = &t
		}
	}
}

// List returns every batch record, oldest first. Batch files
// waiting in new/ without a record are listed as validating. Records that
// cannot be read are left out and named in the error, beside the rest.
func (s *Store) List() ([]*Record, error) {
	var out []*Record
	var bad []error
	seen := map[string]bool{}
	entries, err := s.sp.ReadDir(spool.DirBatches)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	for _, e := range entries {
		name, ok := fileOf(e, ".json")
		if !ok {
			name, ok = fileOf(e, ".jsonl")
		}
		if !ok || seen[name] {
			continue
		}
		seen[name] = true
		b, err := s.Get(name)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, b)
	}
	waiting, err := s.sp.ReadDir(spool.DirNew)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	for _, e := range waiting {
		if name, ok := strings.CutSuffix(e.Name(), ".jsonl"); ok && spool.BatchCandidate(e.Name()) && !seen[name] && spool.ValidID(name) {
			seen[name] = true
			if b, err := s.Get(name); err == nil {
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
