package e2ereal_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// coldLoad is less than any load takes: starting a runner for a tiny model
// takes 30ms when it answers Ollama's first health check and about 300ms
// when it answers the second, 250ms later. A request to a loaded model
// reports a load_duration of a few milliseconds, but under heavy CPU
// contention that may grow, so load_duration alone does not count loads.
const coldLoad = 10 * time.Millisecond

// batch is what one run of the interleaved jobs did.
type batch struct {
	records  []*spool.Record // in the order they started
	loads    int             // loads the server logged during the run
	makespan time.Duration   // from the first job dropped to the last answer
}

// interleaved names and writes the 30 jobs: models m1, m2, m3, m1, … in
// arrival order. Names sort in arrival order, so arrival ties (file ctimes
// are coarse) break the same way.
func interleaved() (names []string, jobs []map[string]any) {
	for i := range 30 {
		names = append(names, fmt.Sprintf("job-%02d", i))
		jobs = append(jobs, chatJob(models[i%len(models)], fmt.Sprintf("question %d: why is the sky blue", i)))
	}
	return names, jobs
}

// runHopper drops the interleaved jobs into a fresh spool, with no model
// loaded, and runs them with the given schedule.
func (w *world) runHopper(tb testing.TB, schedule string) batch {
	tb.Helper()
	w.unloadAll(tb)
	h := w.hopper(tb, func(c *runner.Config) { c.Policy.Schedule = schedule })
	names, jobs := interleaved()
	before := w.loads(tb)
	start := time.Now()
	for i, name := range names {
		h.drop(name, jobs[i])
	}
	h.start()
	var b batch
	var last time.Time
	for _, name := range names {
		r := h.wait(name)
		b.records = append(b.records, r)
		if r.FinishedAt != nil && r.FinishedAt.After(last) {
			last = *r.FinishedAt
		}
	}
	b.makespan = last.Sub(start)
	h.stop()
	b.loads = w.loads(tb) - before
	slices.SortFunc(b.records, func(x, y *spool.Record) int { return x.StartedAt.Compare(*y.StartedAt) })
	return b
}

// runDirect sends the interleaved jobs straight to Ollama, one at a time in
// arrival order, with no model loaded at the start.
func (w *world) runDirect(tb testing.TB) batch {
	tb.Helper()
	w.unloadAll(tb)
	_, jobs := interleaved()
	before := w.loads(tb)
	start := time.Now()
	for _, job := range jobs {
		job["stream"] = false
		if code, body := w.call(tb, "/api/chat", job); code != http.StatusOK {
			tb.Fatalf("POST /api/chat: %d %s", code, body)
		}
	}
	return batch{makespan: time.Since(start), loads: w.loads(tb) - before}
}

// modelChanges counts the runs of one model in the start order, the first
// included: the loads a server holding one model at a time must make.
func modelChanges(recs []*spool.Record) int {
	n, prev := 0, ""
	for _, r := range recs {
		if r.Model != prev {
			n++
			prev = r.Model
		}
	}
	return n
}

// checkLoads checks the batch's loads: the server's log and the records'
// model_loaded (from /api/ps before each job) must both count want, and
// every job that paid for a load must show it in its load_duration.
func checkLoads(t *testing.T, b batch, want int) {
	t.Helper()
	var loaded, slow int
	var order []string
	var busy time.Duration
	for _, r := range b.records {
		if r.State != spool.StateDone {
			t.Fatalf("%s, want done", describe(r))
		}
		resp := decodeResponse(t, r)
		if resp.LoadDuration >= coldLoad {
			slow++
		}
		if r.ModelLoaded {
			loaded++
			if resp.LoadDuration < coldLoad {
				t.Errorf("%s on %s paid for a load, but its load_duration is %v", r.ID, r.Model, resp.LoadDuration)
			}
		}
		busy += r.FinishedAt.Sub(*r.StartedAt)
		order = append(order, r.Model)
	}
	t.Logf("order %v", order)
	t.Logf("makespan %v, of which jobs ran %v; load_duration ≥ %v in %d answers",
		b.makespan.Round(time.Millisecond), busy.Round(time.Millisecond), coldLoad, slow)
	if b.loads != want || loaded != want {
		t.Errorf("loads: server log %d, records' model_loaded %d; want %d", b.loads, loaded, want)
	}
}

func TestRunnerOnRealOllama(t *testing.T) {
	w := newWorld(t)

	t.Run("DrainByModelLoadsEachModelOnce", func(t *testing.T) {
		b := w.runHopper(t, runner.ScheduleDrain)
		checkLoads(t, b, len(models))
		if n := modelChanges(b.records); n != len(models) {
			t.Errorf("the jobs ran in %d runs of one model, want %d", n, len(models))
		}
		if got, want := w.resident(t), []string{b.records[len(b.records)-1].Model + ":latest"}; !slices.Equal(got, want) {
			t.Errorf("/api/ps after the batch: %v, want %v (the last model, kept with keep_alive -1)", got, want)
		}
	})

	t.Run("FIFOLoadsAtEveryModelChange", func(t *testing.T) {
		b := w.runHopper(t, runner.ScheduleFIFO)
		changes := modelChanges(b.records)
		if changes != len(b.records) {
			t.Errorf("FIFO ran the interleaved jobs in %d runs, want %d (arrival order)", changes, len(b.records))
		}
		checkLoads(t, b, changes)
	})

	t.Run("CancelMidGeneration", func(t *testing.T) {
		h := w.hopper(t, nil)
		h.start()
		var canceled *spool.Record
		for i, prompt := range longPrompts {
			id := fmt.Sprintf("long-%d", i)
			h.drop(id, map[string]any{"model": "m1", "prompt": prompt, "options": map[string]any{"num_predict": 2000}})
			eventually(t, "output in cur/"+id+".out", func() bool {
				dir, _ := h.spool.Find(id)
				return h.spool.OutputLines(id) > 0 || dir == spool.DirDone || dir == spool.DirFailed
			})
			asked := time.Now()
			if _, err := h.spool.Cancel(id, "test"); err != nil {
				t.Logf("cancel %s: %v", id, err)
			}
			r := h.wait(id)
			if r.State == spool.StateDone {
				t.Logf("prompt %q: the generation ended (%s) before the cancel; trying another", prompt, decodeResponse(t, r).DoneReason)
				continue
			}
			t.Logf("%s %v after the cancel request", describe(r), time.Since(asked).Round(time.Millisecond))
			canceled = r
			break
		}
		if canceled == nil {
			t.Fatalf("every prompt of %q ended before it could be canceled", longPrompts)
		}
		if canceled.State != spool.StateFailed || canceled.Error == nil || canceled.Error.Kind != spool.KindCanceled {
			t.Errorf("got %s, want failed canceled", describe(canceled))
		}
		sent := w.proxy.requests("/api/generate")
		if len(sent) == 0 {
			t.Fatal("no generate request reached the server")
		}
		var body struct {
			Stream  bool `json:"stream"`
			Options struct {
				NumPredict int `json:"num_predict"`
			} `json:"options"`
		}
		if last := sent[len(sent)-1].Body; json.Unmarshal(last, &body) != nil || !body.Stream || body.Options.NumPredict != 2000 {
			t.Errorf("the request hopper sent: %s, want a streamed generate with num_predict 2000", last)
		}
		serverAnswersNext(t, w, h, "after-cancel")
	})

	t.Run("TimeoutFailsTheJob", func(t *testing.T) {
		h := w.hopper(t, nil)
		h.start()
		h.drop("slow", map[string]any{"model": "m1", "prompt": longPrompts[0], "timeout": "50ms",
			"options": map[string]any{"num_predict": 2000}})
		r := h.wait("slow")
		if r.State != spool.StateFailed || r.Error == nil || r.Error.Kind != spool.KindTimeout || r.Attempts != 1 {
			t.Errorf("got %s after %d attempts, want failed timeout after 1", describe(r), r.Attempts)
		}
		serverAnswersNext(t, w, h, "after-timeout")
	})

	t.Run("StructuredOutputPassesTheSchemaThrough", func(t *testing.T) {
		h := w.hopper(t, nil)
		h.start()
		schema := json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"]}`)
		h.drop("structured", chatJob("m1", "hi", "format", schema, "options", map[string]any{"num_predict": 200}))
		r := h.wait("structured")
		if r.State != spool.StateDone {
			t.Fatalf("got %s, want done", describe(r))
		}
		var sent struct {
			Format json.RawMessage `json:"format"`
		}
		chats := w.proxy.requests("/api/chat")
		if len(chats) == 0 || json.Unmarshal(chats[len(chats)-1].Body, &sent) != nil {
			t.Fatalf("no chat request reached the server")
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, sent.Format)
		if compact.String() != string(schema) {
			t.Errorf("the server got format %s, want the job's schema %s", sent.Format, schema)
		}
		// Ollama constrains sampling to the schema, so even a model of
		// random weights answers with JSON that fits it, once it stops by
		// itself rather than at num_predict.
		resp := decodeResponse(t, r)
		t.Logf("answer %q (%s)", resp.Message.Content, resp.DoneReason)
		var answer struct {
			OK *bool `json:"ok"`
		}
		if resp.DoneReason == "stop" {
			if err := json.Unmarshal([]byte(resp.Message.Content), &answer); err != nil || answer.OK == nil {
				t.Errorf("content %q does not fit the schema: %v", resp.Message.Content, err)
			}
		}
	})

	t.Run("StructuredOutputFunction", func(t *testing.T) {
		// A function with a JSON schema: hopper sends the schema as format,
		// checks the answer against it, and parses it into the record's
		// output.
		fns, err := functions.NewRegistry(map[string]any{
			"yesno": map[string]any{
				"model":    "m1",
				"messages": []any{map[string]any{"role": "user", "content": "{{.text}}"}},
				"vars":     map[string]any{"text": map[string]any{"required": true}},
				"options":  map[string]any{"num_predict": 200},
				"format": map[string]any{"type": "object", "required": []any{"ok"},
					"properties": map[string]any{"ok": map[string]any{"type": "boolean"}}},
			},
		}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		h := w.hopper(t, func(c *runner.Config) { c.Functions = fns })
		h.start()
		h.drop("fn", map[string]any{"function": "yesno", "vars": map[string]any{"text": "hi"}})
		r := h.wait("fn")
		if r.State != spool.StateDone {
			t.Fatalf("got %s, want done", describe(r))
		}
		var out struct {
			OK *bool `json:"ok"`
		}
		if err := json.Unmarshal(r.Output, &out); err != nil || out.OK == nil {
			t.Errorf("output %s (%v), want {\"ok\": a boolean}", r.Output, err)
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, r.Output)
		t.Logf("output %s after %d attempt(s)", compact.Bytes(), r.Attempts)
		var sent struct {
			Format map[string]any `json:"format"`
		}
		chats := w.proxy.requests("/api/chat")
		if len(chats) == 0 || json.Unmarshal(chats[len(chats)-1].Body, &sent) != nil || sent.Format["type"] != "object" {
			t.Errorf("the server did not get the function's schema as format")
		}
	})
}

// serverAnswersNext checks that after an aborted request the server still
// answers: a job through hopper and a request straight to the server.
func serverAnswersNext(t *testing.T, w *world, h *hopper, id string) {
	t.Helper()
	start := time.Now()
	h.drop(id, chatJob("m1", "are you still there"))
	if r := h.wait(id); r.State != spool.StateDone {
		t.Errorf("the next job: %s, want done", describe(r))
	}
	if code, body := w.call(t, "/api/generate", map[string]any{"model": "m1", "prompt": "hello", "stream": false}); code != http.StatusOK {
		t.Errorf("the next request: %d %s", code, body)
	}
	t.Logf("the server answered the next job and request in %v", time.Since(start).Round(time.Millisecond))
}
