package runner

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// BatchEmitter receives a batch's batch.done event; *hooks.Hooks is one.
// A Config.Hooks that implements it gets batch events too.
type BatchEmitter interface {
	EmitBatch(b *spool.Batch) error
}

// batchChunk is how many lines of a batch are queued at a time: the first
// line can run as soon as the first chunk is written, and a crash costs at
// most one chunk's existence checks.
const batchChunk = 1000

// batchTick is how often cancel requests and progress are looked at.
const batchTick = 500 * time.Millisecond

// reconcileEvery is how often the lines of unfinished batches that are
// not queued are looked for in done/ and failed/, for those that ended
// without the runner (hopper cancel ID, DELETE /jobs/ID).
const reconcileEvery = 5 * time.Second

// batches carries the spool's batches alongside the runner, in a goroutine
// of its own: it claims batch files, queues their lines a chunk at a time
// (each job straight into the queue index, so a batch of 100,000 lines
// needs no fsnotify event to start), counts lines as they end, carries out
// cancel requests and writes each batch's output once its last line ended.
// Its records are written by this goroutine only.
type batches struct {
	s    *spool.Spool
	q    *spool.Queue
	log  *slog.Logger
	emit func(*spool.Batch)

	mu     sync.Mutex
	active map[string]*tracked
	wake   chan struct{}

	lastReconcile time.Time
}

// tracked is one batch in progress.
type tracked struct {
	b      *spool.Batch
	ended  []bool // by line, from 1
	count  int
	done   int
	failed int
	dirty  bool
	// check makes the first chunk after a start look for jobs written
	// before a crash.
	check     bool
	canceled  bool // queued lines dropped already
	lastWrite time.Time
}

func newBatches(s *spool.Spool, q *spool.Queue, log *slog.Logger, emit func(*spool.Batch)) *batches {
	return &batches{s: s, q: q, log: log, emit: emit, active: map[string]*tracked{}, wake: make(chan struct{}, 1)}
}

// open takes up the batches a previous run left: validating ones are
// checked, the rest counted from the records their lines left.
func (bs *batches) open() error {
	list, err := bs.s.ActiveBatches()
	for _, b := range list {
		bs.take(b, true)
	}
	bs.mu.Lock()
	for _, t := range bs.active {
		bs.reconcile(t)
	}
	bs.mu.Unlock()
	bs.lastReconcile = time.Now()
	return err
}

// take starts tracking a claimed batch, checking it first if it is still
// validating. A batch refused as a whole ends there, with its event.
func (bs *batches) take(b *spool.Batch, check bool) {
	if b.State == spool.BatchValidating {
		if err := bs.s.ValidateBatch(b); err != nil {
			bs.log.Error("cannot check the batch", "batch", b.ID, "err", err)
			return
		}
	}
	if b.State == spool.BatchFailed {
		bs.log.Warn("batch refused", "batch", b.ID, "why", b.Errors[0].Message)
		bs.emit(b)
		return
	}
	if b.State.Terminal() {
		return
	}
	bs.log.Info("batch taken", "batch", b.ID, "lines", b.Total, "expanded", b.Expanded)
	bs.mu.Lock()
	bs.active[b.ID] = &tracked{b: b, ended: make([]bool, b.Total+1), check: check}
	bs.mu.Unlock()
}

// Ended counts a line whose job has just ended, done or failed.
func (bs *batches) Ended(rec *spool.Record) {
	name, line, ok := spool.LineOf(rec.ID)
	if !ok {
		return
	}
	bs.mu.Lock()
	t := bs.active[name]
	if t != nil && rec.ID == t.b.LineID(line) {
		t.mark(line, rec.State == spool.StateDone)
	}
	bs.mu.Unlock()
	select {
	case bs.wake <- struct{}{}:
	default:
	}
}

// mark counts line i as ended (once). The caller holds bs.mu.
func (t *tracked) mark(i int, done bool) {
	if i <= 0 || i >= len(t.ended) || t.ended[i] {
		return
	}
	t.ended[i] = true
	t.count++
	if done {
		t.done++
	} else {
		t.failed++
	}
	t.dirty = true
}

// reconcile counts lines that ended without this runner seeing it (a
// person canceled one, or they ended before a crash). Lines still in the
// queue index are skipped without a look at the disk. The caller holds
// bs.mu.
func (bs *batches) reconcile(t *tracked) {
	for i := 1; i <= t.b.Expanded && i < len(t.ended); i++ {
		if t.ended[i] {
			continue
		}
		id := t.b.LineID(i)
		if bs.q.Has(spool.DirNew, id+".json") || bs.q.Has(spool.DirDeferred, id+".json") {
			continue
		}
		if ended, done := bs.s.LineEnded(id); ended {
			t.mark(i, done)
		}
	}
}

// complete reports whether every line that will ever run has ended.
func (t *tracked) complete() bool {
	if t.b.State == spool.BatchFinalizing {
		return true // it was writing its output when hopper stopped
	}
	if t.b.State == spool.BatchCancelling {
		return t.count >= t.b.Expanded
	}
	return t.b.Expanded >= t.b.Total && t.count >= t.b.Total
}

// run works the batches until ctx ends. paused says whether the spool is
// paused: then no batch is taken up and no line queued, while cancels and
// outputs go on.
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
			bs.flush(true)
			return
		case <-bs.q.BatchChanged():
		case <-bs.wake:
		case <-tick.C:
		}
	}
}

// step does one round of work and reports whether more is waiting.
func (bs *batches) step() bool {
	paused := bs.s.Paused()
	more := false
	if !paused {
		if e, ok := bs.q.NextBatch(); ok {
			bs.q.Remove(e.Dir, e.Name)
			b, err := bs.s.ClaimBatch(e)
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
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for _, t := range bs.active {
		if bs.s.BatchCancelRequested(t.b.ID) {
			bs.cancel(t)
		}
		if !paused && t.b.State == spool.BatchInProgress && t.b.Expanded < t.b.Total {
			check := t.check
			t.check = false
			t.b.Done, t.b.Failed = t.done, t.failed // the chunk's record write carries them
			_, err := bs.s.ExpandBatch(t.b, batchChunk, check, bs.q.Put, func(i int) { t.mark(i, false) })
			if err != nil {
				bs.log.Error("cannot queue the batch's lines", "batch", t.b.ID, "err", err)
			} else {
				t.lastWrite = time.Now()
				more = more || t.b.Expanded < t.b.Total
			}
			if len(t.ended) < t.b.Total+1 { // never grows; Total may shrink
				t.ended = t.ended[:t.b.Total+1]
			}
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
	for name, t := range bs.active {
		if !t.complete() {
			continue
		}
		t.b.Done, t.b.Failed = t.done, t.failed
		b := t.b
		if err := bs.s.FinishBatch(b, func() { bs.emit(b) }); err != nil {
			bs.log.Error("cannot write the batch's output", "batch", name, "err", err)
			continue
		}
		delete(bs.active, name)
		bs.log.Info("batch "+string(b.State), "batch", name, "done", b.Done, "failed", b.Failed, "output", b.Output)
	}
	bs.flushLocked(false)
	return more
}

// cancel carries out a cancel request: no more lines are queued, queued
// lines are dropped (the output says they were canceled), and held,
// deferred and running ones are canceled as hopper cancel does. The caller
// holds bs.mu.
func (bs *batches) cancel(t *tracked) {
	if t.canceled {
		return
	}
	t.canceled = true
	if t.b.State != spool.BatchCancelling {
		now := time.Now().UTC()
		t.b.State, t.b.CancellingAt = spool.BatchCancelling, &now
		t.dirty = true
	}
	dropped, asked := 0, 0
	for i := 1; i <= t.b.Expanded && i < len(t.ended); i++ {
		if t.ended[i] {
			continue
		}
		id := t.b.LineID(i)
		if bs.s.DropQueuedLine(id) {
			bs.q.Remove(spool.DirNew, id+".json")
			t.mark(i, false)
			dropped++
			continue
		}
		running, err := bs.s.Cancel(id, "the batch was canceled")
		switch {
		case err == nil && !running:
			t.mark(i, false)
		case err == nil:
			asked++
		}
	}
	bs.reconcile(t)
	bs.log.Info("batch canceling", "batch", t.b.ID, "dropped", dropped, "aborting", asked)
}

// flush writes the records of batches whose counts changed, at most once a
// second each unless now is set.
func (bs *batches) flush(now bool) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	bs.flushLocked(now)
}

func (bs *batches) flushLocked(now bool) {
	for _, t := range bs.active {
		if !t.dirty || (!now && time.Since(t.lastWrite) < time.Second) {
			continue
		}
		t.b.Done, t.b.Failed = t.done, t.failed
		if err := bs.s.WriteBatch(t.b, false); err != nil {
			bs.log.Error("cannot write the batch record", "batch", t.b.ID, "err", err)
			continue
		}
		t.dirty, t.lastWrite = false, time.Now()
	}
}
