package runner_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/batchtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// waitBatch waits until batch name has ended and returns its record.
func (h *harness) waitBatch(name string) *batch.Record {
	h.t.Helper()
	var b *batch.Record
	eventually(h.t, "batch "+name+" to end", func() bool {
		var err error
		b, err = batch.New(h.s).Get(name)
		return err == nil && b.State.Terminal()
	})
	return b
}

func TestBatchFileBecomesOutputInInputOrder(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	body, ids := batchtest.Mixed(60, 7, 11)
	batchtest.Drop(h.t, h.s.Path(), "tickets", body)
	b := h.waitBatch("tickets")
	if b.State != batch.Completed || b.Total != 60 || b.Done != 58 || b.Failed != 2 {
		t.Fatalf("batch: %+v", b)
	}
	out := batchtest.Read(t, h.path(b.Output))
	batchtest.CheckMixed(t, out, "tickets", ids, 7, 11)
	errs := batchtest.Read(t, h.path(b.ErrorsFile))
	if len(errs) != 2 || errs[0].ID != "tickets~000007" || errs[1].ID != "tickets~000011" {
		t.Errorf("errors file: %+v", errs)
	}
	// Every line is a job with its own record.
	r, err := h.s.Get("tickets~000002")
	if err != nil || r.State != spool.StateDone || r.Priority != 0 {
		t.Errorf("line 2 record: %+v %v", r, err)
	}
}

func TestBatchDuplicateCustomIDsRefuseTheBatch(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	batchtest.Drop(h.t, h.s.Path(), "dups", `{"custom_id": "a", "model": "m1", "prompt": "x"}`+"\n"+`{"custom_id": "a", "model": "m1", "prompt": "y"}`+"\n")
	b := h.waitBatch("dups")
	if b.State != batch.Failed || len(b.Errors) != 1 || b.Errors[0].Code != "duplicate_custom_id" || b.Errors[0].Line != 2 {
		t.Fatalf("batch: %+v", b)
	}
	if _, err := h.s.Find("dups~000001"); err == nil {
		t.Error("a line of a refused batch was queued")
	}
}

// A record left validating with no input (its submitter was killed between
// the two) is failed when the runner starts, not left validating forever.
func TestAbandonedBatchRecordFailsAtStart(t *testing.T) {
	h := newHarness(t, nil)
	orphan := &batch.Record{ID: "orphan", State: batch.Validating, CreatedAt: time.Now().Add(-2 * batch.AbandonedAfter)}
	if err := batch.New(h.s).Write(orphan, false); err != nil {
		t.Fatal(err)
	}
	h.start()
	b := h.waitBatch("orphan")
	if b.State != batch.Failed || len(b.Errors) != 1 || b.Errors[0].Code != "input_missing" {
		t.Fatalf("batch: %+v", b)
	}
}

func TestBatchCancel(t *testing.T) {
	h := newHarness(t, nil, ollamatest.WithTokenDelay(20*time.Millisecond), ollamatest.WithTokens(5))
	h.start()
	body, _ := batchtest.Mixed(200, 0, 0)
	batchtest.Drop(h.t, h.s.Path(), "big", body)
	eventually(t, "some lines to finish", func() bool {
		b, err := batch.New(h.s).Get("big")
		return err == nil && b.Expanded == 200 && b.Done >= 2
	})
	b, err := batch.New(h.s).Cancel("big")
	if err != nil || b.State != batch.Cancelling {
		t.Fatalf("CancelBatch: %+v %v", b, err)
	}
	b = h.waitBatch("big")
	if b.State != batch.Cancelled || b.Done+b.Failed != 200 || b.Failed < 1 {
		t.Fatalf("batch: %+v", b)
	}
	out := batchtest.Read(t, h.path(b.Output))
	if len(out) != 200 {
		t.Fatalf("%d output lines", len(out))
	}
	canceled := 0
	for _, l := range out {
		if l.Error != nil && l.Error.Code == "batch_cancelled" {
			canceled++
		}
	}
	if canceled != b.Failed {
		t.Errorf("%d lines say batch_cancelled, %d failed", canceled, b.Failed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range out {
		if l.Error == nil {
			continue
		}
		// Dropped lines have no record; the others failed as canceled.
		if r, err := h.s.Get(l.ID); err == nil && (r.State != spool.StateFailed || r.Error.Kind != spool.KindCanceled) {
			t.Errorf("%s: %s %+v", l.ID, r.State, r.Error)
		}
		_ = ctx
	}
	if _, err := batch.New(h.s).Cancel("big"); err == nil {
		t.Error("canceling an ended batch succeeded")
	}
}

// A line canceled by a person (hopper cancel ID: the runner never sees it
// end) still lets its batch complete, while other work keeps the queue
// busy.
// A record left cancelling whose .cancel file is gone (a person removed
// it, or the runner restarted after recording the request) still ends.
func TestBatchCancellingWithoutItsRequestFileEnds(t *testing.T) {
	h := newHarness(t, nil)
	b := h.prepared("cx", prompts(2))
	now := time.Now().UTC()
	b.State, b.CancellingAt = batch.Cancelling, &now
	if err := batch.New(h.s).Write(b, false); err != nil {
		t.Fatal(err)
	}
	h.start()
	if b := h.waitBatch("cx"); b.State != batch.Cancelled || b.Ended() != 2 {
		t.Fatalf("batch: %+v", b)
	}
}

// A nightly batch whose name is free again (the batch pruned with done's
// retention) while a failed line of it is kept must not be answered with
// that old line: the new batch gets a name of its own.
func TestBatchNameWithLinesLeftIsNotReused(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	batchtest.Drop(t, h.s.Path(), "nightly", `{"custom_id":"a","model":"m1","prompt":"1"}`+"\n"+`{"custom_id":"b","model":"nosuchmodel","prompt":"2"}`+"\n")
	if b := h.waitBatch("nightly"); b.State != batch.Completed || b.Failed != 1 {
		t.Fatalf("first night: %+v", b)
	}
	if p, err := batch.New(h.s).Prune(time.Now().Add(time.Hour), spool.StateDone); err != nil || p.Batches != 1 {
		t.Fatalf("prune: %+v, %v", p, err)
	}
	batchtest.Drop(t, h.s.Path(), "nightly", `{"custom_id":"a","model":"m1","prompt":"1"}`+"\n"+`{"custom_id":"b","model":"m1","prompt":"2"}`+"\n")
	var second *batch.Record
	eventually(t, "the second night's batch to end", func() bool {
		list, _ := batch.New(h.s).List()
		for _, b := range list {
			if b.Source == "nightly.jsonl" && b.State.Terminal() {
				second = b
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(second.ID, "nightly.") || second.State != batch.Completed || second.Done != 2 || second.Failed != 0 {
		t.Errorf("second night: %+v, want its own name and both lines done", second)
	}
}

// A batch whose input a person removed still ends: the lines queued
// before run and are answered (custom_ids from their records), the rest
// never run and the record says why.
func TestBatchWhoseInputWasRemovedStillEnds(t *testing.T) {
	body := `{"custom_id": "a", "model": "m1", "prompt": "1"}` + "\n" + `{"custom_id": "b", "model": "m1", "prompt": "2"}` + "\n" + `{"custom_id": "c", "model": "m1", "prompt": "3"}` + "\n"
	h := newHarness(t, nil)
	b := h.runPreparedWithout("rm", body, spool.DirBatches, "rm.jsonl") // all three lines queued
	if b.State != batch.Completed || b.Total != 3 || b.Done != 3 {
		t.Fatalf("batch: %+v", b)
	}
	out := batchtest.Read(t, h.path(b.Output))
	for i, want := range []string{"a", "b", "c"} {
		if out[i].CustomID == nil || *out[i].CustomID != want || out[i].Failed() {
			t.Errorf("line %d: %+v, want custom_id %q answered", i+1, out[i], want)
		}
	}

	// Removed before any line was queued: the batch ends with none, and says so.
	h2 := newHarness(t, nil)
	batchtest.Drop(t, h2.s.Path(), "early", body)
	if _, err := batch.New(h2.s).Claim(spool.Entry{Dir: spool.DirNew, Name: "early.jsonl"}); err != nil {
		t.Fatal(err)
	}
	h2.remove(spool.DirBatches, "early.jsonl")
	h2.start()
	b = h2.waitBatch("early")
	if b.State != batch.Completed || b.Total != 0 || len(b.Errors) != 1 || b.Errors[0].Code != "input_missing" ||
		!strings.Contains(b.Errors[0].Message, "0 of its 3 lines were queued") {
		t.Errorf("batch: %+v", b)
	}
}

func TestBatchCompletesWhenALineEndsOutsideTheRunner(t *testing.T) {
	h := newHarness(t, nil, ollamatest.WithTokenDelay(20*time.Millisecond), ollamatest.WithTokens(5))
	for i := range 60 {
		h.drop(fmt.Sprintf("later%02d", i), `{"model": "m2", "prompt": "later", "priority": -1}`)
	}
	h.start()
	batchtest.Drop(t, h.s.Path(), "b", prompts(3))
	eventually(t, "the batch's lines to be queued", func() bool {
		b, err := batch.New(h.s).Get("b")
		return err == nil && b.Expanded == 3
	})
	if _, err := h.s.Cancel("b~000003", "not this one"); err != nil {
		t.Fatal(err)
	}
	b := h.waitBatch("b")
	if b.State != batch.Completed || b.Done != 2 || b.Failed != 1 {
		t.Errorf("batch: %+v", b)
	}
	if n, _ := os.ReadDir(h.path(spool.DirNew)); len(n) == 0 {
		t.Log("the other jobs drained before the batch ended; the test proved less than it meant to")
	}
}

// runPreparedWithout prepares batch name from body, removes the spool's
// file at elem, runs the runner and returns the batch once it has ended.
func (h *harness) runPreparedWithout(name, body string, elem ...string) *batch.Record {
	h.t.Helper()
	h.prepared(name, body)
	h.remove(elem...)
	h.start()
	return h.waitBatch(name)
}

// prompts is a batch of n hopper jobs for m1, prompts "1" to "n".
func prompts(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"model": "m1", "prompt": "%d"}`+"\n", i)
	}
	return b.String()
}

// remove deletes a file of the spool, as a person would.
func (h *harness) remove(elem ...string) {
	h.t.Helper()
	if err := os.Remove(h.path(elem...)); err != nil {
		h.t.Fatal(err)
	}
}

// prepared claims and queues batch name as a runner that then stopped
// would have left it.
func (h *harness) prepared(name, body string) *batch.Record {
	h.t.Helper()
	batchtest.Drop(h.t, h.s.Path(), name, body)
	b, err := batch.New(h.s).Claim(spool.Entry{Dir: spool.DirNew, Name: name + ".jsonl"})
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := batch.New(h.s).Expand(b, 1000, false, func(spool.Entry) {}, func(int) {}); err != nil {
		h.t.Fatal(err)
	}
	return b
}

// A line whose job is gone (pruned, removed by hand) counts as failed:
// the batch still ends, and its output says so.
func TestBatchWithALineGoneStillEnds(t *testing.T) {
	h := newHarness(t, nil)
	b := h.runPreparedWithout("gone", prompts(3), spool.DirNew, "gone~000002.json")
	if b.State != batch.Completed || b.Done != 2 || b.Failed != 1 {
		t.Fatalf("batch: %+v", b)
	}
	out := batchtest.Read(t, h.path(b.Output))
	if out[1].Error == nil || out[1].Error.Code != "missing" {
		t.Errorf("line 2: %+v", out[1])
	}
}

// A cancel asked for after a crash that came between queueing lines and
// recording how far it got still catches those lines: none runs.
func TestBatchCancelAfterACrashMidChunkCancelsTheUnrecordedLines(t *testing.T) {
	h := newHarness(t, nil)
	b := h.prepared("crash", prompts(3))
	b.Expanded, b.Offset = 0, 0 // the record as it was before the chunk
	if err := batch.New(h.s).Write(b, true); err != nil {
		t.Fatal(err)
	}
	if _, err := batch.New(h.s).Cancel("crash"); err != nil {
		t.Fatal(err)
	}
	h.start()
	b = h.waitBatch("crash")
	if b.State != batch.Cancelled || b.Done != 0 || b.Failed != 3 {
		t.Fatalf("batch: %+v", b)
	}
	for _, req := range h.fake.Requests() {
		if req.Path != "/api/ps" && req.Path != "/api/tags" {
			t.Errorf("a request reached the target for a canceled batch: %s %s", req.Path, req.Body)
		}
	}
	for i := 1; i <= 3; i++ {
		r, err := h.s.Get(b.LineID(i))
		if err != nil || r.State != spool.StateFailed || r.Error.Kind != spool.KindCanceled {
			t.Errorf("line %d: %+v, %v", i, r, err)
		}
	}
}

// The lines of a batch that came over HTTP carry its origin, so their
// webhooks are guarded as any HTTP job's.
func TestBatchLinesCarryTheBatchOrigin(t *testing.T) {
	h := newHarness(t, nil)
	sub, err := batch.New(h.s).Submit(strings.NewReader(`{"model": "m1", "prompt": "1", "webhook": "http://169.254.169.254/"}`+"\n"), batch.Options{Name: "web", Origin: spool.OriginHTTP})
	if err != nil {
		t.Fatal(err)
	}
	b, err := batch.New(h.s).Claim(spool.Entry{Dir: spool.DirNew, Name: sub.ID + ".jsonl"})
	if err != nil {
		t.Fatal(err)
	}
	var put []spool.Entry
	if _, err := batch.New(h.s).Expand(b, 10, false, func(e spool.Entry) { put = append(put, e) }, func(int) {}); err != nil || len(put) != 1 {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(h.path(spool.DirNew, put[0].Name))
	j, err := spool.ParseJob(data, 0)
	if err != nil || j.Origin != spool.OriginHTTP || j.Webhook == "" {
		t.Errorf("line job %s: %+v, %v", data, j, err)
	}
}
