package runner

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/spool"
)

// BatchEmitter receives a batch's batch.done event; *hooks.Hooks is one.
// A Config.Hooks that implements it gets batch events too.
type BatchEmitter interface {
	EmitBatch(b *batch.Record) error
}

// batchChunk is how many lines of a batch are queued at a time: the first
// line can run as soon as the first chunk is written, and a crash costs at
// most one chunk's existence checks.
const batchChunk = 1000

// batchTick is how often cancel requests and progress are looked at.
const batchTick = 500 * time.Millisecond

// reconcileEvery is how often the lines of unfinished batches that are
// not queued are looked for on disk, for those that ended without the
// runner (hopper cancel ID, DELETE /jobs/ID, a crash, a prune).
const reconcileEvery = 5 * time.Second

// abandonedEvery is how often batch records whose input never arrived are
// looked for, and stale cancel requests removed (spool.FailAbandonedBatches).
const abandonedEvery = time.Minute

// batches carries the spool's batches alongside the runner, in a goroutine
// of its own: it claims batch files, queues their lines a chunk at a time
// (each job straight into the queue index, so a batch of 100,000 lines
// needs no fsnotify event to start), counts lines as they end, carries out
// cancel requests and writes each batch's output once its last line ended.
// Its records are written by this goroutine only.
type batches struct {
	s    *spool.Spool
	st   *batch.Store
	q    *spool.Queue
	log  *slog.Logger
	emit func(*batch.Record)

	active map[string]*tracked // the goroutine's own

	// ended holds the lines the runner saw end, for the goroutine to
	// count: the runner never waits on the goroutine's file work.
	endedMu sync.Mutex
	ended   []*spool.Record
	wake    chan struct{}

	lastReconcile time.Time
	lastAbandoned time.Time
}

// Line states, as tracked.
const (
	lineOpen uint8 = iota
	lineDone
	lineFailed
)

// tracked is one batch in progress.
type tracked struct {
	b      *batch.Record
	lines  []uint8 // by line, from 1
	count  int     // lines ended
	done   int
	failed int
	dirty  bool
	// check makes the first chunk after a start look for jobs written
	// before a crash.
	check     bool
	canceled  bool // the cancel request was carried out
	lastWrite time.Time
}

func newBatches(s *spool.Spool, q *spool.Queue, log *slog.Logger, emit func(*batch.Record)) *batches {
	return &batches{s: s, st: batch.New(s), q: q, log: log, emit: emit, active: map[string]*tracked{}, wake: make(chan struct{}, 1)}
}

// open takes up the batches a previous run left: validating ones are
// checked, the rest counted from the records their lines left. The queue
// index must be filled first.
func (bs *batches) open() error {
	list, err := bs.st.Active()
	for _, b := range list {
		bs.take(b, true)
	}
	for _, t := range bs.active {
		bs.reconcile(t)
	}
	bs.lastReconcile = time.Now()
	bs.failAbandoned()
	return err
}

// failAbandoned fails the batch records whose input never arrived, with
// their events.
func (bs *batches) failAbandoned() {
	bs.lastAbandoned = time.Now()
	list, err := bs.st.FailAbandoned(time.Now().Add(-batch.AbandonedAfter))
	for _, b := range list {
		bs.log.Warn("batch failed", "batch", b.ID, "why", b.Errors[0].Message)
		bs.emit(b)
	}
	if err != nil {
		bs.log.Error("cannot look for batches whose input never arrived", "err", err)
	}
}

// take starts tracking a claimed batch, checking it first if it is still
// validating. A batch refused as a whole ends there, with its event.
func (bs *batches) take(b *batch.Record, check bool) {
	if b.State == batch.Validating {
		if err := bs.st.Validate(b); err != nil {
			bs.log.Error("cannot check the batch", "batch", b.ID, "err", err)
			return
		}
	}
	if b.State == batch.Failed {
		bs.log.Warn("batch refused", "batch", b.ID, "why", b.Errors[0].Message)
		bs.emit(b)
		return
	}
	if b.State.Terminal() {
		return
	}
	bs.log.Info("batch taken", "batch", b.ID, "lines", b.Total, "expanded", b.Expanded)
	bs.active[b.ID] = &tracked{b: b, lines: make([]uint8, b.Total+1), check: check}
}

// Ended hands the batches goroutine a line whose job has just ended, done
// or failed. It never blocks on the goroutine's work.
func (bs *batches) Ended(rec *spool.Record) {
	if _, _, ok := spool.LineOf(rec.ID); !ok {
		return
	}
	bs.endedMu.Lock()
	bs.ended = append(bs.ended, rec)
	bs.endedMu.Unlock()
	poke(bs.wake)
}

// countEnded counts the lines the runner handed over.
func (bs *batches) countEnded() {
	bs.endedMu.Lock()
	recs := bs.ended
	bs.ended = nil
	bs.endedMu.Unlock()
	for _, rec := range recs {
		name, line, _ := spool.LineOf(rec.ID)
		if t := bs.active[name]; t != nil && rec.ID == t.b.LineID(line) {
			t.mark(line, rec.State == spool.StateDone)
		}
	}
}

// mark counts line i as ended (once).
func (t *tracked) mark(i int, done bool) {
	if i <= 0 || i >= len(t.lines) || t.lines[i] != lineOpen {
		return
	}
	t.lines[i] = lineFailed
	t.count++
	if done {
		t.lines[i] = lineDone
		t.done++
	} else {
		t.failed++
	}
	t.dirty = true
}

// reopen uncounts line i: it was retried and is live again.
func (t *tracked) reopen(i int) {
	switch t.lines[i] {
	case lineDone:
		t.done--
	case lineFailed:
		t.failed--
	default:
		return
	}
	t.lines[i] = lineOpen
	t.count--
	t.dirty = true
}

// reconcile counts lines that ended without this runner seeing it.
// Lines still in the queue index are skipped without a look at the disk;
// a line whose job is nowhere (pruned, or moved away by hand) will never
// end and counts as failed.
func (bs *batches) reconcile(t *tracked) {
	for i := 1; i <= t.b.Expanded && i < len(t.lines); i++ {
		if t.lines[i] != lineOpen {
			continue
		}
		id := t.b.LineID(i)
		if bs.q.Has(spool.DirNew, id+".json") || bs.q.Has(spool.DirDeferred, id+".json") {
			continue
		}
		switch bs.st.LineEnded(id) {
		case batch.LineDone:
			t.mark(i, true)
		case batch.LineFailed:
			t.mark(i, false)
		case batch.LineGone:
			bs.log.Warn("a batch line's job is gone from the spool; it counts as failed", "job", id)
			t.mark(i, false)
		}
	}
}

// settled checks, before a batch's output is written, that no line is
// live again (hopper retry moved one back to new/): those are uncounted
// and the batch waits for them.
func (bs *batches) settled(t *tracked) bool {
	ok := true
	for i := 1; i <= t.b.Expanded && i < len(t.lines); i++ {
		if bs.st.LineLive(t.b.LineID(i)) {
			t.reopen(i)
			ok = false
		}
	}
	return ok
}

// complete reports whether every line that will ever run has ended.
func (t *tracked) complete() bool {
	if t.b.State == batch.Finalizing {
		return true // it was writing its output when hopper stopped
	}
	if t.b.State == batch.Cancelling {
		return t.canceled && t.count >= t.b.Expanded
	}
	return t.b.Expanded >= t.b.Total && t.count >= t.b.Total
}

// run works the batches until ctx ends.
func (bs *batches) run(ctx context.Context) {
	tick := time.NewTicker(batchTick)
	defer tick.Stop()
	for {
		more := bs.step()
		if more && ctx.Err() == nil {
			continue
		}
		select {
		case <-ctx.Done():
			bs.countEnded()
			bs.flush(true)
			return
		case <-bs.q.BatchChanged():
		case <-bs.wake:
		case <-tick.C:
		}
	}
}

// step does one round of work and reports whether more is waiting. While
// the spool is paused no batch is taken up and no line queued; counting,
// cancels and outputs go on.
func (bs *batches) step() bool {
	paused := bs.s.Paused()
	more := false
	if !paused {
		if e, ok := bs.q.NextBatch(); ok {
			bs.q.Remove(e.Dir, e.Name)
			b, err := bs.st.Claim(e)
			switch {
			case errors.Is(err, spool.ErrGone):
			case err != nil:
				bs.log.Error("cannot take the batch", "file", "new/"+e.Name, "err", err)
			default:
				bs.take(b, false)
			}
			more = true
		}
	}
	bs.countEnded()
	for _, t := range bs.active {
		// A record that says cancelling carries its request on: the
		// .cancel file may be gone (removed by a person, or the request
		// was recorded before a restart).
		if t.b.State == batch.Cancelling || bs.st.CancelRequested(t.b.ID) {
			bs.cancel(t)
		}
		if paused || t.b.State != batch.InProgress || t.b.Expanded >= t.b.Total {
			continue
		}
		t.b.Done, t.b.Failed = t.done, t.failed // the chunk's record write carries them
		if _, err := bs.st.Expand(t.b, batchChunk, t.check, bs.q.Put, func(i int) { t.mark(i, false) }); err != nil {
			bs.log.Error("cannot queue the batch's lines", "batch", t.b.ID, "err", err)
			continue
		}
		t.check = false
		t.lastWrite = time.Now()
		more = more || t.b.Expanded < t.b.Total
		if len(t.lines) > t.b.Total+1 { // the input lost lines since it was counted
			t.lines = t.lines[:t.b.Total+1]
		}
	}
	if time.Since(bs.lastReconcile) > reconcileEvery {
		bs.lastReconcile = time.Now()
		for _, t := range bs.active {
			if !t.complete() {
				bs.reconcile(t)
			}
		}
	}
	if time.Since(bs.lastAbandoned) > abandonedEvery {
		bs.failAbandoned()
	}
	for name, t := range bs.active {
		if !t.complete() || (t.b.State != batch.Finalizing && !bs.settled(t)) {
			continue
		}
		t.b.Done, t.b.Failed = t.done, t.failed
		b := t.b
		if err := bs.st.Finish(b, func() { bs.emit(b) }); err != nil {
			bs.log.Error("cannot write the batch's output", "batch", name, "err", err)
			continue
		}
		delete(bs.active, name)
		bs.log.Info("batch "+string(b.State), "batch", name, "done", b.Done, "failed", b.Failed, "output", b.Output)
	}
	bs.flush(false)
	return more
}

// cancel carries out a cancel request: no more lines are queued, queued
// lines fail as canceled, and held, deferred and running ones are
// canceled as hopper cancel does. Lines the runner claims meanwhile fail
// at claim (run looks for the request too).
func (bs *batches) cancel(t *tracked) {
	if t.canceled {
		return
	}
	if t.b.State != batch.Cancelling {
		now := time.Now().UTC()
		t.b.State, t.b.CancellingAt = batch.Cancelling, &now
		t.dirty = true
	}
	if t.check {
		// A crash may have come after lines past the recorded position
		// were queued: they are part of the batch too.
		for t.b.Expanded < t.b.Total && bs.st.LineEnded(t.b.LineID(t.b.Expanded+1)) != batch.LineGone {
			t.b.Expanded++
		}
		t.check = false
	}
	const why = "the batch was canceled"
	var queued []string
	for i := 1; i <= t.b.Expanded && i < len(t.lines); i++ {
		if t.lines[i] == lineOpen {
			queued = append(queued, t.b.LineID(i))
		}
	}
	canceled, err := bs.s.CancelQueued(queued, why)
	if err != nil {
		bs.log.Error("cannot cancel every queued line", "batch", t.b.ID, "err", err)
	}
	for _, id := range canceled {
		bs.q.Remove(spool.DirNew, id+".json")
		_, i, _ := spool.LineOf(id)
		t.mark(i, false)
	}
	asked := 0
	for i := 1; i <= t.b.Expanded && i < len(t.lines); i++ {
		if t.lines[i] != lineOpen {
			continue
		}
		running, err := bs.s.Cancel(t.b.LineID(i), why)
		switch {
		case err == nil && !running:
			t.mark(i, false)
		case err == nil:
			asked++
		}
	}
	bs.reconcile(t)
	t.canceled = true
	bs.log.Info("batch canceling", "batch", t.b.ID, "canceled", len(canceled), "aborting", asked)
}

// flush writes the records of batches whose counts changed, at most once a
// second each unless now is set.
func (bs *batches) flush(now bool) {
	for _, t := range bs.active {
		if !t.dirty || (!now && time.Since(t.lastWrite) < time.Second) {
			continue
		}
		t.b.Done, t.b.Failed = t.done, t.failed
		if err := bs.st.Write(t.b, false); err != nil {
			bs.log.Error("cannot write the batch record", "batch", t.b.ID, "err", err)
			continue
		}
		t.dirty, t.lastWrite = false, time.Now()
	}
}
