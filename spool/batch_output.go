package spool

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// BatchOutputLine is one line of a batch's output, in OpenAI's batch output
// shape: the answer (response) or, for a line that never got one, an error.
type BatchOutputLine struct {
	ID       string               `json:"id"`
	CustomID *string              `json:"custom_id"`
	Response *BatchOutputResponse `json:"response"`
	Error    *BatchOutputError    `json:"error"`
}

// BatchOutputResponse is the answer to one line: the HTTP status it would
// have had and the body (the target's answer, or an error object).
type BatchOutputResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// BatchOutputError is why a line has no answer.
type BatchOutputError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// FunctionAnswer is what a function job that is done answers, over HTTP
// (POST /functions/NAME) and as the body of its line in a batch's output:
// the parsed output (for functions with a schema) beside the target's
// response.
type FunctionAnswer struct {
	ID       string          `json:"id"`
	Output   json.RawMessage `json:"output,omitempty"`
	Response json.RawMessage `json:"response"`
}

// Failed reports whether the line did not succeed.
func (l *BatchOutputLine) Failed() bool {
	return l.Error != nil || l.Response == nil || l.Response.StatusCode >= 300
}

// outputLine describes line id of a batch from its record (nil when it has
// none: never queued, or dropped when the batch was canceled).
func outputLine(id string, custom *string, rec *Record, where string, canceled bool) *BatchOutputLine {
	l := &BatchOutputLine{ID: id, CustomID: custom}
	switch {
	case rec == nil && canceled:
		l.Error = &BatchOutputError{Code: "batch_cancelled", Message: "the batch was canceled before this line ran"}
	case rec == nil:
		l.Error = &BatchOutputError{Code: "missing", Message: fmt.Sprintf("no record of %s in done/ or failed/ (%s)", id, where)}
	case rec.State == StateDone:
		body := rec.Response
		if len(body) == 0 {
			body = json.RawMessage("null")
		}
		if rec.Function != "" {
			if b, err := json.Marshal(FunctionAnswer{ID: id, Output: rec.Output, Response: body}); err == nil {
				body = b
			}
		}
		l.Response = &BatchOutputResponse{StatusCode: 200, RequestID: id, Body: body}
	case rec.Error == nil:
		l.Error = &BatchOutputError{Code: "failed", Message: "the job failed without saying why"}
	case rec.Error.Kind == KindCanceled && canceled:
		l.Error = &BatchOutputError{Code: "batch_cancelled", Message: rec.Error.Message}
	case rec.Error.Kind == KindCanceled:
		l.Error = &BatchOutputError{Code: "cancelled", Message: rec.Error.Message}
	case rec.Error.Kind == KindExpired:
		l.Error = &BatchOutputError{Code: "batch_expired", Message: rec.Error.Message}
	default:
		status := rec.Error.HTTPStatus()
		typ := "api_error"
		if status >= 400 && status < 500 {
			typ = "invalid_request_error"
		}
		body, _ := json.Marshal(map[string]any{"error": map[string]any{
			"message": rec.Error.Message, "type": typ, "param": nil, "code": string(rec.Error.Kind),
		}})
		l.Response = &BatchOutputResponse{StatusCode: status, RequestID: id, Body: body}
	}
	return l
}

// lineRecord finds the final record of a batch line in done/ or failed/,
// and otherwise says where the job is.
func (s *Spool) lineRecord(id string) (*Record, string) {
	for _, d := range []string{DirDone, DirFailed} {
		if r, err := s.readRecord(d, id+".json"); err == nil {
			return r, ""
		}
	}
	if dir, err := s.Find(id); err == nil {
		return nil, "it is in " + dir + "/"
	}
	return nil, "pruned or moved by hand?"
}

// FinishBatch writes the output of a batch whose lines have all ended:
// done/NAME.jsonl with one line per input line in input order, and
// failed/NAME.errors.jsonl with the lines that failed (when any did). Both
// are streamed, one record at a time, so the answers are never all in
// memory. The batch becomes completed (cancelled when a cancel was asked
// for), with its counts taken from what was written. recorded is called
// once the output files are durable, before the final record is written: a
// crash before the record leaves the batch finalizing, and the next start
// writes the output again and calls recorded again.
func (s *Spool) FinishBatch(b *Batch, recorded func()) error {
	canceled := b.State == BatchCancelling || s.BatchCancelRequested(b.ID)
	now := s.now().UTC()
	if b.State != BatchFinalizing {
		b.State, b.FinalizingAt = BatchFinalizing, &now
		if err := s.WriteBatch(b, false); err != nil {
			return err
		}
	}
	// Without its input (removed by hand) the output is written all the
	// same, each line's custom_id taken from its record.
	var lr *lineReader
	in, err := s.openRegular(b.Input)
	switch {
	case err == nil:
		defer in.Close()
		lr = newLineReader(in, s.opts.MaxJobSize, 0)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("finish batch %s: %w", b.ID, err)
	}
	out, err := s.createPending(DirTmp, "output."+b.ID, 1<<20)
	if err != nil {
		return fmt.Errorf("finish batch %s: %w", b.ID, err)
	}
	defer out.discard()
	var errs *pending
	defer func() {
		if errs != nil {
			errs.discard()
		}
	}()

	done, failed := 0, 0
	var enc bytes.Buffer
	for i := 1; i <= b.Total; i++ {
		id := b.LineID(i)
		var rec *Record
		where := "never queued"
		if i <= b.Expanded {
			rec, where = s.lineRecord(id)
		}
		var custom *string
		if lr != nil {
			line, tooLong, err := lr.next()
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("finish batch %s: %w", b.ID, err)
			}
			switch {
			case err != nil:
			case tooLong:
				// Its custom_id, if the line's head holds one.
				if c, err := headCustomID(lr.head()); err == nil {
					custom = &c
				}
			default:
				if c, ok := customID(line); ok {
					custom = &c
				}
			}
		} else if rec != nil {
			if c, ok := customID(rec.Job); ok {
				custom = &c
			}
		}
		ol := outputLine(id, custom, rec, where, canceled)
		enc.Reset()
		if err := encodeLine(&enc, ol); err != nil {
			return fmt.Errorf("finish batch %s: %w", b.ID, err)
		}
		if _, err := out.Write(enc.Bytes()); err != nil {
			return fmt.Errorf("finish batch %s: %w", b.ID, err)
		}
		if !ol.Failed() {
			done++
			continue
		}
		failed++
		if errs == nil {
			if errs, err = s.createPending(DirTmp, "errors."+b.ID, 1<<20); err != nil {
				return fmt.Errorf("finish batch %s: %w", b.ID, err)
			}
		}
		if _, err := errs.Write(enc.Bytes()); err != nil {
			return fmt.Errorf("finish batch %s: %w", b.ID, err)
		}
	}
	b.Output = DirDone + "/" + b.ID + ".jsonl"
	if err := out.commit(DirDone, b.ID+".jsonl", s.opts.Fsync, true); err != nil {
		return fmt.Errorf("finish batch %s: %w", b.ID, err)
	}
	if errs != nil {
		b.ErrorsFile = DirFailed + "/" + b.ID + ".errors.jsonl"
		if err := errs.commit(DirFailed, b.ID+".errors.jsonl", s.opts.Fsync, true); err != nil {
			return fmt.Errorf("finish batch %s: %w", b.ID, err)
		}
	}
	b.Done, b.Failed = done, failed
	end := s.now().UTC()
	if canceled {
		b.State, b.CancelledAt = BatchCancelled, &end
		if b.CancellingAt == nil {
			b.CancellingAt = &end
		}
	} else {
		b.State, b.CompletedAt = BatchCompleted, &end
	}
	if recorded != nil {
		recorded()
	}
	if err := s.WriteBatch(b, true); err != nil {
		return err
	}
	_ = s.root.Remove(DirBatches + "/" + b.ID + ".cancel")
	return nil
}

// encodeLine appends v as one line of JSON, leaving <, > and & as they are.
func encodeLine(buf *bytes.Buffer, v any) error { return jsonfmt.NewEncoder(buf).Encode(v) }

// ActiveBatches returns the batches the runner has claimed and not ended:
// those whose input is in batches/. An input without a record (a crash
// came between the two) is returned as validating.
func (s *Spool) ActiveBatches() ([]*Batch, error) {
	entries, err := fs.ReadDir(s.root.FS(), DirBatches)
	if err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	var out []*Batch
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".jsonl")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := s.readBatch(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			b = &Batch{ID: name, State: BatchValidating, CreatedAt: s.changeTime(DirBatches, e.Name()).UTC()}
		case err != nil:
			errs = append(errs, err) // the others are taken up all the same
			continue
		}
		if !b.State.Terminal() {
			b.Input = DirBatches + "/" + e.Name()
			out = append(out, b)
		}
	}
	// A batch under way whose input was removed by hand ends all the same
	// (a validating one without input is FailAbandonedBatches' to end).
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") || s.exists(DirBatches, name+".jsonl") {
			continue
		}
		if b, err := s.readBatch(name); err == nil && !b.State.Terminal() && b.State != BatchValidating {
			b.Input = DirBatches + "/" + name + ".jsonl"
			out = append(out, b)
		}
	}
	return out, errors.Join(errs...)
}

// openBatches returns the names of the batches that have not ended, whose
// lines' records their output will be written from.
func (s *Spool) openBatches() map[string]bool {
	open := map[string]bool{}
	entries, _ := fs.ReadDir(s.root.FS(), DirBatches)
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".jsonl")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		if b, err := s.readBatch(name); err != nil || !b.State.Terminal() {
			open[name] = true // no record yet, or one being written: not ended
		}
	}
	return open
}

// ended is when the batch ended, or the zero time if it has not.
func (b *Batch) ended() time.Time {
	if !b.State.Terminal() {
		return time.Time{}
	}
	for _, t := range []*time.Time{b.CompletedAt, b.CancelledAt, b.FailedAt} {
		if t != nil {
			return *t
		}
	}
	return time.Time{}
}

// pruneBatches removes the batches that ended before cutoff: output and
// errors files and input first, the record last, so a crash between leaves
// the record for the next prune. It returns how many it removed.
func (s *Spool) pruneBatches(cutoff time.Time) (int, error) {
	entries, err := fs.ReadDir(s.root.FS(), DirBatches)
	if err != nil {
		return 0, fmt.Errorf("prune batches/: %w", err)
	}
	n := 0
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := s.readBatch(name)
		if err != nil {
			continue // not a record hopper can read: left for a person
		}
		end := b.ended()
		if end.IsZero() || !end.Before(cutoff) {
			continue
		}
		for _, f := range []string{DirDone + "/" + name + ".jsonl", DirFailed + "/" + name + ".errors.jsonl",
			DirBatches + "/" + name + ".jsonl", DirBatches + "/" + name + ".cancel"} {
			if err := s.root.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, fmt.Errorf("prune batch %s: %w", name, err)
			}
		}
		if err := s.root.Remove(DirBatches + "/" + e.Name()); err != nil {
			return n, fmt.Errorf("prune batch %s: %w", name, err)
		}
		n++
	}
	return n, nil
}

// CopySucceeded copies the lines of a batch output (done/NAME.jsonl) that
// succeeded from r to w: OpenAI's output file, whose other lines are in its
// error file. It returns the bytes written.
func CopySucceeded(w io.Writer, r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	for {
		line, err := br.ReadBytes('\n')
		var l BatchOutputLine
		if len(line) > 0 && json.Unmarshal(line, &l) == nil && !l.Failed() {
			m, werr := w.Write(line)
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// ErrBatchRunning means a batch has not ended, so its files stay.
var ErrBatchRunning = errors.New("the batch has not ended")

// DeleteBatchFile removes one of batch name's own files, path (relative to
// the spool: its input, output or errors file), once the batch has ended;
// the record stops naming an output or errors file it no longer has.
func (s *Spool) DeleteBatchFile(name, path string) error {
	b, err := s.GetBatch(name)
	if err != nil {
		return err
	}
	if !b.State.Terminal() {
		return fmt.Errorf("delete %s: %w (%s)", path, ErrBatchRunning, b.State)
	}
	if err := s.root.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return notFoundf("no file %s", path)
		}
		return fmt.Errorf("delete %s: %w", path, err)
	}
	switch path {
	case b.Output:
		b.Output = ""
	case b.ErrorsFile:
		b.ErrorsFile = ""
	default:
		return nil
	}
	return s.WriteBatch(b, true)
}
