package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/batchtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// batch reads batches/NAME.json; nil if it is not there yet.
func (w *world) batch(name string) *batch.Record {
	data, err := os.ReadFile(filepath.Join(w.spool, "batches", name+".json"))
	if err != nil {
		return nil
	}
	var b batch.Record
	if err := json.Unmarshal(data, &b); err != nil {
		return nil
	}
	return &b
}

// waitBatch waits until batch name has ended.
func (w *world) waitBatch(name string) *batch.Record {
	w.t.Helper()
	var b *batch.Record
	waitFor(w.t, "batch "+name+" to end", func() bool {
		b = w.batch(name)
		return b != nil && b.State.Terminal()
	})
	return b
}

func TestBatchFileDrop1000MixedLines(t *testing.T) {
	w := newWorld(t)
	w.serve()
	body, ids := batchtest.Mixed(1000, 500, 777)
	batchtest.Drop(w.t, w.spool, "tickets", body)
	b := w.waitBatch("tickets")
	if b.State != batch.Completed || b.Total != 1000 || b.Done != 998 || b.Failed != 2 {
		t.Fatalf("batch record: %+v", b)
	}
	out := batchtest.Read(t, filepath.Join(w.spool, "done", "tickets.jsonl"))
	batchtest.CheckMixed(t, out, "tickets", ids, 500, 777)
	errs := batchtest.Read(t, filepath.Join(w.spool, "failed", "tickets.errors.jsonl"))
	if len(errs) != 2 || errs[0].ID != "tickets~000500" || errs[1].ID != "tickets~000777" {
		t.Errorf("errors file: %+v", errs)
	}
	// The malformed line's record says why, in words, with its bytes.
	r := w.record("failed", "tickets~000500")
	if r.Error.Kind != spool.KindBadInput || !strings.Contains(r.Error.Message, "request 500 of batch tickets: the job is not valid JSON") || r.JobRaw == nil || !strings.Contains(*r.JobRaw, `"custom_id": "broken"`) {
		t.Errorf("malformed line record: %+v, raw %v", r.Error, r.JobRaw)
	}
	ls := w.hopper("batch", "ls")
	if !strings.Contains(ls, "tickets") || !strings.Contains(ls, "completed") || !strings.Contains(ls, "998") {
		t.Errorf("hopper batch ls:\n%s", ls)
	}
	show := w.hopper("batch", "show", "tickets")
	if !strings.Contains(show, "1000/1000 ended (998 done, 2 failed)") || !strings.Contains(show, "tickets.jsonl") {
		t.Errorf("hopper batch show:\n%s", show)
	}
	if n := w.count("new") + w.count("cur"); n != 0 {
		t.Errorf("%d jobs left in new/ and cur/", n)
	}
}

func TestBatchSubmitWaitRefuseAndCancel(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(4), ollamatest.WithTokenDelay(10*time.Millisecond))
	w.serve()
	small := filepath.Join(w.dir, "small.jsonl")
	body, _ := batchtest.Mixed(5, 0, 0)
	writeFile(t, small, body, 0o600)
	out := w.hopper("batch", "submit", small, "--wait")
	if !strings.HasPrefix(out, "small\ncompleted: 5 done, 0 failed\n") || !strings.Contains(out, filepath.Join("done", "small.jsonl")) {
		t.Errorf("hopper batch submit --wait:\n%s", out)
	}
	// Same name again: a unique suffix, not an overwrite.
	again := strings.TrimSpace(w.hopper("batch", "submit", small))
	if !strings.HasPrefix(again, "small.") {
		t.Errorf("second submit of small.jsonl named %q", again)
	}
	w.waitBatch(again)

	dups := filepath.Join(w.dir, "dups.jsonl")
	writeFile(t, dups, `{"custom_id":"a","model":"m1","prompt":"x"}`+"\n"+`{"custom_id":"a","model":"m1","prompt":"y"}`+"\n", 0o600)
	msg, err := w.hopperErr("batch", "submit", dups)
	if err == nil || !strings.Contains(msg, `line 2 repeats the custom_id "a" of line 1`) || !strings.Contains(msg, "nothing was queued") {
		t.Errorf("duplicate custom_ids: err %v, output %s", err, msg)
	}
	if w.batch("dups") != nil {
		t.Error("a refused batch left a record")
	}

	big, _ := batchtest.Mixed(300, 0, 0)
	batchtest.Drop(w.t, w.spool, "big", big)
	waitFor(t, "some lines of big to end", func() bool {
		b := w.batch("big")
		return b != nil && b.Done >= 3
	})
	if out := w.hopper("batch", "cancel", "big"); !strings.HasPrefix(out, "cancelling:") {
		t.Errorf("hopper batch cancel: %s", out)
	}
	b := w.waitBatch("big")
	if b.State != batch.Cancelled || b.Done+b.Failed != 300 || b.Done < 3 || b.Failed < 1 {
		t.Fatalf("canceled batch: %+v", b)
	}
	lines := batchtest.Read(t, filepath.Join(w.spool, "done", "big.jsonl"))
	cancelled := 0
	for _, l := range lines {
		if l.Error != nil && l.Error.Code == "batch_cancelled" {
			cancelled++
		} else if l.Response == nil || l.Response.StatusCode != 200 {
			t.Errorf("%s: neither an answer nor canceled: %+v %+v", l.ID, l.Response, l.Error)
		}
	}
	if len(lines) != 300 || cancelled != b.Failed {
		t.Errorf("%d output lines, %d canceled, record says %d failed", len(lines), cancelled, b.Failed)
	}
	if n := w.count("new"); n != 0 {
		t.Errorf("%d lines left queued after the cancel", n)
	}
	if _, err := w.hopperErr("batch", "cancel", "big"); err == nil {
		t.Error("canceling an ended batch succeeded")
	}
}

func TestBatchSIGKILLMidBatchThenRestartAnswersEveryLineOnce(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(3), ollamatest.WithTokenDelay(5*time.Millisecond))
	s := w.serve()
	body, ids := batchtest.Mixed(1500, 0, 0)
	batchtest.Drop(w.t, w.spool, "night", body)
	// Kill it while it queues the lines, then three times while they run.
	kills := 0
	for _, done := range []int{-1, 100, 250, 400} {
		waitFor(t, fmt.Sprintf("%d lines of the batch to end", done), func() bool {
			b := w.batch("night")
			return b != nil && b.State == batch.InProgress && b.Done >= done
		})
		s.kill(t)
		kills++
		s = w.serve()
	}
	b := w.waitBatch("night")
	if b.State != batch.Completed || b.Done != 1500 || b.Failed != 0 {
		t.Fatalf("batch after the restart: %+v", b)
	}
	out := batchtest.Read(t, filepath.Join(w.spool, "done", "night.jsonl"))
	batchtest.CheckMixed(t, out, "night", ids, 0, 0)
	seen := map[string]int{}
	for _, l := range out {
		seen[*l.CustomID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("custom_id %s answered %d times", id, seen[id])
		}
	}
	// Each line ran once, but those running at a kill: at-least-once.
	reran := 0
	for i := 1; i <= 1500; i++ {
		if r := w.record("done", fmt.Sprintf("night~%06d", i)); r.Attempts > 1 {
			reran++
		}
	}
	if reran > kills {
		t.Errorf("%d lines ran more than once; only the %d running at a kill may", reran, kills)
	}
	if n := w.count("new") + w.count("cur") + w.count("failed"); n != 0 {
		t.Errorf("%d jobs left in new/, cur/ or failed/", n)
	}
}

func TestBatchDoneEventReachesWebhookAndHookScript(t *testing.T) {
	rc, srv := newReceiver(t)
	w := newWorld(t)
	hookDir, hookRan := w.logHook("batch.done", 21)
	failures, failSrv := newReceiver(t)
	w.config(fmt.Sprintf("hooks:\n  dir: %s\n  secret: %s\n  webhooks:\n    - url: %s/batches\n      events: [batch.done]\n    - url: %s/failures\n      events: [job.failed]\n",
		hookDir, testSecret, srv.URL, failSrv.URL))
	w.serve()
	body, _ := batchtest.Mixed(5, 2, 4)
	batchtest.Drop(w.t, w.spool, "evening", body)
	waitFor(t, "the batch.done webhook", func() bool { return len(rc.of("evening")) == 1 })
	if ev := rc.of("evening"); ev[0] != "batch.done" {
		t.Errorf("events for the batch: %v", ev)
	}
	if ev := rc.of("evening~000001"); len(ev) != 0 {
		t.Errorf("a webhook filtered on batch.done got the lines' events: %v", ev)
	}
	// Lines are jobs: the one refused at expansion (malformed) and the one
	// the target refused (unknown model) both send job.failed.
	waitFor(t, "job.failed for lines 2 and 4", func() bool {
		return len(failures.of("evening~000002")) == 1 && len(failures.of("evening~000004")) == 1
	})
	for _, id := range []string{"evening~000002", "evening~000004"} {
		if ev := failures.of(id); ev[0] != "job.failed" {
			t.Errorf("%s: events %v, want job.failed", id, ev)
		}
	}
	data := hookRan(1)
	want := "evening completed " + filepath.Join(w.spool, "batches", "evening.json") + ` {"type":"batch.done"`
	if !strings.HasPrefix(data, want) {
		t.Errorf("hook log %q, want it to start %q", data, want)
	}
}

// The OpenAI Go SDK's batch calls against the front and a runner in
// separate processes: upload, create, poll, download, list, cancel.
func TestBatchThroughOpenAISDK(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(3), ollamatest.WithTokenDelay(2*time.Millisecond))
	base := frontAndRunner(t, w)
	oc := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	body, ids := batchtest.Mixed(1000, 321, 654)
	b := batchtest.Create(t, ctx, &oc, "tickets.jsonl", body, map[string]string{"job": "nightly"})
	if b.Status != openai.BatchStatusValidating && b.Status != openai.BatchStatusInProgress {
		t.Errorf("new batch status %q", b.Status)
	}
	ended := []openai.BatchStatus{openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusCancelled}
	poll := func(what string, id string, until func(*openai.Batch) bool) *openai.Batch {
		t.Helper()
		var got *openai.Batch
		waitFor(t, what, func() bool {
			var err error
			if got, err = oc.Batches.Get(ctx, id); err != nil {
				t.Fatalf("Batches.Get: %v", err)
			}
			return until(got)
		})
		return got
	}
	b = poll("the batch to end", b.ID, func(b *openai.Batch) bool { return slices.Contains(ended, b.Status) })
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Total != 1000 || b.RequestCounts.Completed != 998 || b.RequestCounts.Failed != 2 || b.Metadata["job"] != "nightly" {
		t.Fatalf("finished batch: %+v", b)
	}
	out, errs := batchtest.Content(t, ctx, &oc, b.OutputFileID), batchtest.Content(t, ctx, &oc, b.ErrorFileID)
	if len(out) != 998 || len(errs) != 2 {
		t.Errorf("output file has %d lines, error file %d; want 998 and 2", len(out), len(errs))
	}
	batchtest.CheckOpenAIFiles(t, out, errs, b.ID, ids, 321, 654)
	batchtest.CheckMixed(t, batchtest.Read(t, filepath.Join(w.spool, "done", b.ID+".jsonl")), b.ID, ids, 321, 654)
	page, err := oc.Batches.List(ctx, openai.BatchListParams{})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != b.ID {
		t.Errorf("Batches.List: %+v, %v", page, err)
	}

	// A second batch, canceled while it runs.
	big, _ := batchtest.Mixed(300, 0, 0)
	b2 := batchtest.Create(t, ctx, &oc, "big.jsonl", big, nil)
	poll("three lines of the second batch to be answered", b2.ID, func(b *openai.Batch) bool { return b.RequestCounts.Completed >= 3 })
	if b2, err = oc.Batches.Cancel(ctx, b2.ID); err != nil || b2.Status != openai.BatchStatusCancelling {
		t.Fatalf("Batches.Cancel: %+v, %v", b2, err)
	}
	b2 = poll("the second batch to be cancelled", b2.ID, func(b *openai.Batch) bool { return b.Status != openai.BatchStatusCancelling })
	if b2.Status != openai.BatchStatusCancelled || b2.RequestCounts.Completed+b2.RequestCounts.Failed != 300 || b2.RequestCounts.Failed < 1 {
		t.Errorf("canceled batch: %+v", b2.RequestCounts)
	}
}
