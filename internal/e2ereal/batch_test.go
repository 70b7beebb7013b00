package e2ereal_test

import (
	"slices"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/hopper-dev/hopper/internal/batchtest"
)

// A mixed batch through the OpenAI SDK's batch calls, run against the real
// server: chat and embeddings lines answer in the real server's OpenAI
// shapes, the unknown model with its 404, the malformed line with 400.
func TestOpenAIBatchThroughHopper(t *testing.T) {
	h := startHopper(t)
	oc, ctx := h.openAI(), patient(t)
	body, ids := batchtest.Mixed(12, 5, 9, "m1", "m2")
	b := batchtest.Create(t, ctx, &oc, "mixed.jsonl", body, nil)
	ended := []openai.BatchStatus{openai.BatchStatusCompleted, openai.BatchStatusFailed, openai.BatchStatusCancelled}
	eventually(t, "the batch to end", func() bool {
		var err error
		if b, err = oc.Batches.Get(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		return slices.Contains(ended, b.Status)
	})
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Completed != 10 || b.RequestCounts.Failed != 2 {
		t.Fatalf("batch: status %s, counts %+v", b.Status, b.RequestCounts)
	}
	out, errs := batchtest.Content(t, ctx, &oc, b.OutputFileID), batchtest.Content(t, ctx, &oc, b.ErrorFileID)
	batchtest.CheckOpenAIFiles(t, out, errs, b.ID, ids, 5, 9)
}
