package batch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"time"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/internal/openai"
	"github.com/hopper-dev/hopper/spool"
)

// outputLine describes line id of a batch from its record (nil when it has
// none: never queued, or dropped when the batch was canceled).
func outputLine(id string, custom *string, rec *spool.Record, where string, canceled bool) *openai.BatchOutputLine {
	l := &openai.BatchOutputLine{ID: id, CustomID: custom}
	switch {
	case rec == nil && canceled:
		l.Error = &openai.BatchOutputError{Code: "batch_cancelled", Message: "the batch was canceled before this line ran"}
	case rec == nil:
		l.Error = &openai.BatchOutputError{Code: "missing", Message: fmt.Sprintf("no record of %s in done/ or failed/ (%s)", id, where)}
	case rec.State == spool.StateDone:
		body := rec.Response
		if len(body) == 0 {
			body = json.RawMessage("null")
		}
		if rec.Function != "" {
			if b, err := json.Marshal(spool.FunctionAnswer{ID: id, Output: rec.Output, Response: body}); err == nil {
				body = b
			}
		}
		l.Response = &openai.BatchOutputResponse{StatusCode: 200, RequestID: id, Body: body}
	case rec.Error == nil:
		l.Error = &openai.BatchOutputError{Code: "failed", Message: "the job failed without saying why"}
	case rec.Error.Kind == spool.KindCanceled && canceled:
		l.Error = &openai.BatchOutputError{Code: "batch_cancelled", Message: rec.Error.Message}
	case rec.Error.Kind == spool.KindCanceled:
		l.Error = &openai.BatchOutputError{Code: "cancelled", Message: rec.Error.Message}
	case rec.Error.Kind == spool.KindExpired:
		l.Error = &openai.BatchOutputError{Code: "batch_expired", Message: rec.Error.Message}
	default:
		status := rec.Error.HTTPStatus()
		typ := "api_error"
		if status >= 400 && status < 500 {
			typ = "invalid_request_error"
		}
		code := string(rec.Error.Kind)
		body, _ := json.Marshal(openai.ErrorBody{Error: openai.Error{Message: rec.Error.Message, Type: typ, Code: &code}})
		l.Response = &openai.BatchOutputResponse{StatusCode: status, RequestID: id, Body: body}
	}
	return l
}

// lineRecord finds the final record of a batch line in done/ or failed/,
// and otherwise says where the job is.
func (s *Store) lineRecord(id string) (*spool.Record, string) {
	if r, err := s.sp.Finished(id); err == nil && r != nil {
		return r, ""
	}
	if dir, err := s.sp.Find(id); err == nil {
		return nil, "it is in " + dir + "/"
	}
	return nil, "pruned or moved by hand?"
}

// Finish writes the output of a batch whose lines have all ended:
// done/NAME.jsonl with one line per input line in input order, and
// failed/NAME.errors.jsonl with the lines that failed (when any did). Both
// are streamed, one record at a time, so the answers are never all in
// memory. The batch becomes completed (cancelled when a cancel was asked
// for), with its counts taken from what was written. recorded is called
// once the output files are durable, before the final record is written: a
// crash before the record leaves the batch finalizing, and the next start
// writes the output again and calls recorded again.
func (s *Store) Finish(b *Record, recorded func()) error {
	canceled := b.State == Cancelling || s.CancelRequested(b.ID)
	now := s.now().UTC()
	if b.State != Finalizing {
		b.State, b.FinalizingAt = Finalizing, &now
		if err := s.Write(b, false); err != nil {
			return err
		}
	}
	// Without its input (removed by hand) the output is written all the
	// same, each line's custom_id taken from its record.
	var lr *lineReader
	in, err := s.sp.OpenRegular(b.Input)
	switch {
	case err == nil:
		defer in.Close()
		lr = newLineReader(in, s.sp.Options().MaxJobSize, 0)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("finish batch %s: %w", b.ID, err)
	}
	out, err := s.sp.NewPending("output."+b.ID, 1<<20)
	if err != nil {
		return fmt.Errorf("finish batch %s: %w", b.ID, err)
	}
	defer out.Discard()
	var errs *spool.Pending
	defer func() {
		if errs != nil {
			errs.Discard()
		}
	}()

	done, failed := 0, 0
	var enc bytes.Buffer
	for i := 1; i <= b.Total; i++ {
		id := b.LineID(i)
		var rec *spool.Record
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
			if c, ok := jobCustomID(rec.Job); ok {
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
			if errs, err = s.sp.NewPending("errors."+b.ID, 1<<20); err != nil {
				return fmt.Errorf("finish batch %s: %w", b.ID, err)
			}
		}
		if _, err := errs.Write(enc.Bytes()); err != nil {
			return fmt.Errorf("finish batch %s: %w", b.ID, err)
		}
	}
	b.Output = spool.DirDone + "/" + b.ID + ".jsonl"
	if err := out.Commit(spool.DirDone, b.ID+".jsonl", true, true); err != nil {
		return fmt.Errorf("finish batch %s: %w", b.ID, err)
	}
	if errs != nil {
		b.ErrorsFile = spool.DirFailed + "/" + b.ID + ".errors.jsonl"
		if err := errs.Commit(spool.DirFailed, b.ID+".errors.jsonl", true, true); err != nil {
			return fmt.Errorf("finish batch %s: %w", b.ID, err)
		}
	}
	b.Done, b.Failed = done, failed
	end := s.now().UTC()
	if canceled {
		b.State, b.CancelledAt = Cancelled, &end
		if b.CancellingAt == nil {
			b.CancellingAt = &end
		}
	} else {
		b.State, b.CompletedAt = Completed, &end
	}
	if recorded != nil {
		recorded()
	}
	if err := s.Write(b, true); err != nil {
		return err
	}
	_ = s.sp.Remove(spool.DirBatches + "/" + b.ID + ".cancel")
	return nil
}

// encodeLine appends v as one line of JSON, leaving <, > and & as they are.
func encodeLine(buf *bytes.Buffer, v any) error { return jsonfmt.NewEncoder(buf).Encode(v) }

// Active returns the batches the runner has claimed and not ended:
// those whose input is in batches/. An input without a record (a crash
// came between the two) is returned as validating.
func (s *Store) Active() ([]*Record, error) {
	entries, err := s.sp.ReadDir(spool.DirBatches)
	if err != nil {
		return nil, fmt.Errorf("batches: %w", err)
	}
	var out []*Record
	var errs []error
	for name, e := range batchFiles(entries, ".jsonl") {
		b, err := s.read(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			b = &Record{ID: name, State: Validating, CreatedAt: s.sp.ChangeTime(spool.DirBatches, e.Name()).UTC()}
		case err != nil:
			errs = append(errs, err) // the others are taken up all the same
			continue
		}
		if !b.State.Terminal() {
			b.Input = spool.DirBatches + "/" + e.Name()
			out = append(out, b)
		}
	}
	// A batch under way whose input was removed by hand ends all the same
	// (a validating one without input is FailAbandoned' to end).
	for name := range batchFiles(entries, ".json") {
		if s.sp.Exists(spool.DirBatches, name+".jsonl") {
			continue
		}
		if b, err := s.read(name); err == nil && !b.State.Terminal() && b.State != Validating {
			b.Input = spool.DirBatches + "/" + name + ".jsonl"
			out = append(out, b)
		}
	}
	return out, errors.Join(errs...)
}

// openNames returns the names of the batches that have not ended, whose
// lines' records their output will be written from.
func (s *Store) openNames() map[string]bool {
	open := map[string]bool{}
	entries, _ := s.sp.ReadDir(spool.DirBatches)
	for name := range batchFiles(entries, ".jsonl") {
		if b, err := s.read(name); err != nil || !b.State.Terminal() {
			open[name] = true // no record yet, or one being written: not ended
		}
	}
	return open
}

// ended is when the batch ended, or the zero time if it has not.
func (b *Record) ended() time.Time {
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

// pruneEnded removes the batches that ended before cutoff: output and
// errors files and input first, the record last, so a crash between leaves
// the record for the next prune. It returns how many it removed.
func (s *Store) pruneEnded(cutoff time.Time) (int, error) {
	entries, err := s.sp.ReadDir(spool.DirBatches)
	if err != nil {
		return 0, fmt.Errorf("prune batches/: %w", err)
	}
	n := 0
	for name, e := range batchFiles(entries, ".json") {
		b, err := s.read(name)
		if err != nil {
			continue // not a record hopper can read: left for a person
		}
		end := b.ended()
		if end.IsZero() || !end.Before(cutoff) {
			continue
		}
		for _, f := range []string{spool.DirDone + "/" + name + ".jsonl", spool.DirFailed + "/" + name + ".errors.jsonl",
			spool.DirBatches + "/" + name + ".jsonl", spool.DirBatches + "/" + name + ".cancel"} {
			if err := s.sp.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return n, fmt.Errorf("prune batch %s: %w", name, err)
			}
		}
		if err := s.sp.Remove(spool.DirBatches + "/" + e.Name()); err != nil {
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
		var l openai.BatchOutputLine
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

// ErrRunning means a batch has not ended, so its files stay.
var ErrRunning = errors.New("the batch has not ended")

// DeleteFileOf removes one of batch name's own files, path (relative to
// the spool: its input, output or errors file), once the batch has ended;
// the record stops naming an output or errors file it no longer has.
func (s *Store) DeleteFileOf(name, path string) error {
	b, err := s.Get(name)
	if err != nil {
		return err
	}
	if !b.State.Terminal() {
		return fmt.Errorf("delete %s: %w (%s)", path, ErrRunning, b.State)
	}
	if err := s.sp.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return spool.NotFound("no file %s", path)
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
	return s.Write(b, true)
}

// Pruned is what Prune removed.
type Pruned struct {
	Records int // job records, with their .raw siblings
	Batches int // ended batches, with their input, output and errors files
}

// Prune removes records in done/ and failed/ (as asked; both when none is)
// last written before cutoff, as spool.Prune does, but the records of a
// batch's lines stay while the batch has not ended: its output is written
// from them. Pruning done/ also removes the batches that ended before
// cutoff: batches/NAME.json and NAME.jsonl, done/NAME.jsonl and
// failed/NAME.errors.jsonl (an upload in files/ stays until it is
// deleted, as OpenAI's files do).
func (s *Store) Prune(cutoff time.Time, states ...spool.State) (Pruned, error) {
	open := s.openNames()
	keep := func(id string) bool {
		name, _, ok := spool.LineOf(id)
		if !ok {
			name, _, ok = spool.LegacyLineOf(id)
		}
		return ok && open[name]
	}
	var p Pruned
	var err error
	if p.Records, err = s.sp.Prune(cutoff, keep, states...); err != nil {
		return p, err
	}
	if len(states) == 0 || slices.Contains(states, spool.StateDone) {
		p.Batches, err = s.pruneEnded(cutoff)
	}
	return p, err
}
