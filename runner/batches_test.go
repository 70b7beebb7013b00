package runner_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// mixedBatch returns n lines: OpenAI chat and embeddings lines, hopper
// job lines, with line bad (from 1) malformed and line unknown naming a
// model the target lacks. It returns the custom_id of every line ("" for
// the malformed one).
func mixedBatch(n, bad, unknown int) (string, []string) {
	var b strings.Builder
	ids := make([]string, n)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("req-%d", i)
		ids[i-1] = id
		model := []string{"m1", "m2"}[i%2]
		if i == unknown {
			model = "nosuchmodel"
		}
		switch {
		case i == bad:
			ids[i-1] = ""
			b.WriteString(`{"custom_id": "broken", "url": "/v1/chat/completions", "body": {` + "\n")
		case i%3 == 0:
			fmt.Fprintf(&b, `{"custom_id": %q, "method": "POST", "url": "/v1/embeddings", "body": {"model": %q, "input": "line %d"}}`+"\n", id, model, i)
		case i%3 == 1:
			fmt.Fprintf(&b, `{"custom_id": %q, "method": "POST", "url": "/v1/chat/completions", "body": {"model": %q, "messages": [{"role": "user", "content": "line %d"}]}}`+"\n", id, model, i)
		default:
			fmt.Fprintf(&b, `{"custom_id": %q, "model": %q, "messages": [{"role": "user", "content": "line %d"}]}`+"\n", id, model, i)
		}
	}
	return b.String(), ids
}

// dropBatch writes new/NAME.jsonl as rsync does.
func (h *harness) dropBatch(name, body string) {
	h.t.Helper()
	dir := filepath.Join(h.s.Path(), spool.DirNew)
	tmp := filepath.Join(dir, "."+name+".XXXXXX")
	if err := os.WriteFile(tmp, []byte(body), 0o640); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name+".jsonl")); err != nil {
		h.t.Fatal(err)
	}
}

// waitBatch waits until batch name has ended and returns its record.
func (h *harness) waitBatch(name string) *spool.Batch {
	h.t.Helper()
	var b *spool.Batch
	eventually(h.t, "batch "+name+" to end", func() bool {
		var err error
		b, err = h.s.GetBatch(name)
		return err == nil && b.State.Terminal()
	})
	return b
}

// readOutput parses a batch output file.
func readOutput(t *testing.T, path string) []spool.BatchOutputLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []spool.BatchOutputLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l spool.BatchOutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func TestBatchFileBecomesOutputInInputOrder(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	body, ids := mixedBatch(60, 7, 11)
	h.dropBatch("tickets", body)
	b := h.waitBatch("tickets")
	if b.State != spool.BatchCompleted || b.Total != 60 || b.Done != 58 || b.Failed != 2 {
		t.Fatalf("batch: %+v", b)
	}
	out := readOutput(t, filepath.Join(h.s.Path(), b.Output))
	if len(out) != 60 {
		t.Fatalf("%d output lines, want 60", len(out))
	}
	for i, l := range out {
		if want := fmt.Sprintf("tickets.%06d", i+1); l.ID != want {
			t.Errorf("line %d: id %s, want %s", i+1, l.ID, want)
		}
		switch i + 1 {
		case 7:
			if l.CustomID != nil || l.Response == nil || l.Response.StatusCode != 400 {
				t.Errorf("malformed line: %+v %+v", l, l.Response)
			}
			continue
		case 11:
			if l.Response == nil || l.Response.StatusCode != 404 || !bytes.Contains(l.Response.Body, []byte("nosuchmodel")) {
				t.Errorf("unknown model line: %+v", l.Response)
			}
		default:
			if l.Response == nil || l.Response.StatusCode != 200 || l.Error != nil {
				t.Errorf("line %d: %+v %+v", i+1, l.Response, l.Error)
			}
		}
		if l.CustomID == nil || *l.CustomID != ids[i] {
			t.Errorf("line %d: custom_id %v, want %s", i+1, l.CustomID, ids[i])
		}
	}
	// The OpenAI lines answer in OpenAI's shape; hopper lines in Ollama's.
	var chat struct {
		Object string `json:"object"`
	}
	_ = json.Unmarshal(out[0].Response.Body, &chat)
	if chat.Object != "chat.completion" {
		t.Errorf("line 1 body: %s", out[0].Response.Body)
	}
	var emb struct {
		Object string `json:"object"`
	}
	_ = json.Unmarshal(out[2].Response.Body, &emb)
	if emb.Object != "list" {
		t.Errorf("line 3 body: %s", out[2].Response.Body)
	}
	if !bytes.Contains(out[1].Response.Body, []byte(`"message"`)) {
		t.Errorf("line 2 body: %s", out[1].Response.Body)
	}
	errs := readOutput(t, filepath.Join(h.s.Path(), b.ErrorsFile))
	if len(errs) != 2 || errs[0].ID != "tickets.000007" || errs[1].ID != "tickets.000011" {
		t.Errorf("errors file: %+v", errs)
	}
	// Every line is a job with its own record.
	r, err := h.s.Get("tickets.000002")
	if err != nil || r.State != spool.StateDone || r.Priority != 0 {
		t.Errorf("line 2 record: %+v %v", r, err)
	}
}

func TestBatchDuplicateCustomIDsRefuseTheBatch(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.dropBatch("dups", `{"custom_id": "a", "model": "m1", "prompt": "x"}`+"\n"+`{"custom_id": "a", "model": "m1", "prompt": "y"}`+"\n")
	b := h.waitBatch("dups")
	if b.State != spool.BatchFailed || len(b.Errors) != 1 || b.Errors[0].Code != "duplicate_custom_id" || b.Errors[0].Line != 2 {
		t.Fatalf("batch: %+v", b)
	}
	if _, err := h.s.Find("dups.000001"); err == nil {
		t.Error("a line of a refused batch was queued")
	}
}

func TestBatchCancel(t *testing.T) {
	h := newHarness(t, nil, ollamatest.WithTokenDelay(20*time.Millisecond), ollamatest.WithTokens(5))
	h.start()
	body, _ := mixedBatch(200, 0, 0)
	h.dropBatch("big", body)
	eventually(t, "some lines to finish", func() bool {
		b, err := h.s.GetBatch("big")
		return err == nil && b.Expanded == 200 && b.Done >= 2
	})
	b, err := h.s.CancelBatch("big")
	if err != nil || b.State != spool.BatchCancelling {
		t.Fatalf("CancelBatch: %+v %v", b, err)
	}
	b = h.waitBatch("big")
	if b.State != spool.BatchCancelled || b.Done+b.Failed != 200 || b.Failed < 150 {
		t.Fatalf("batch: %+v", b)
	}
	out := readOutput(t, filepath.Join(h.s.Path(), b.Output))
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
	if _, err := h.s.CancelBatch("big"); err == nil {
		t.Error("canceling an ended batch succeeded")
	}
}
