package batchtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sdk "github.com/openai/openai-go/v3"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/openai"
	"github.com/hopper-dev/hopper/spool"
)

// Mixed returns an n-line batch over models: line i (from 1) is an OpenAI
// embeddings line when i%3 == 0, an OpenAI chat line when i%3 == 1 and a
// hopper chat job otherwise; line bad (0: none) is malformed JSON and line
// unknown (0: none) names the model "nosuchmodel". It returns the file and
// every line's custom_id ("" for the malformed one).
func Mixed(n, bad, unknown int, models ...string) (string, []string) {
	if len(models) == 0 {
		models = []string{"m1", "m2"}
	}
	var b strings.Builder
	ids := make([]string, n)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("req-%d", i)
		ids[i-1] = id
		model := models[i%len(models)]
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

// Parse parses a batch output file's bytes, one line each.
func Parse(t testing.TB, data []byte) []openai.BatchOutputLine {
	t.Helper()
	return parse(t, bytes.NewReader(data))
}

// parse reads a batch output file from r, one line each.
func parse(t testing.TB, r io.Reader) []openai.BatchOutputLine {
	t.Helper()
	var out []openai.BatchOutputLine
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l openai.BatchOutputLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the output: %v", err)
	}
	return out
}

// Create uploads body as the file name through the OpenAI SDK and creates
// a chat completions batch of it with metadata (nil: none).
func Create(t testing.TB, ctx context.Context, oc *sdk.Client, name, body string, metadata map[string]string) *sdk.Batch {
	t.Helper()
	f, err := oc.Files.New(ctx, sdk.FileNewParams{
		File:    sdk.File(strings.NewReader(body), name, "application/jsonl"),
		Purpose: sdk.FilePurposeBatch,
	})
	if err != nil || f.Bytes != int64(len(body)) {
		t.Fatalf("Files.New: %+v, %v; want %d bytes", f, err, len(body))
	}
	b, err := oc.Batches.New(ctx, sdk.BatchNewParams{
		InputFileID:      f.ID,
		Endpoint:         sdk.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: sdk.BatchNewParamsCompletionWindow24h,
		Metadata:         metadata,
	})
	if err != nil {
		t.Fatalf("Batches.New: %v", err)
	}
	return b
}

// Content downloads file id through the OpenAI SDK and parses it as a
// batch output file.
func Content(t testing.TB, ctx context.Context, oc *sdk.Client, id string) []openai.BatchOutputLine {
	t.Helper()
	resp, err := oc.Files.Content(ctx, id)
	if err != nil {
		t.Fatalf("Files.Content(%s): %v", id, err)
	}
	defer resp.Body.Close()
	return parse(t, resp.Body)
}

// Read parses the batch output file at path.
func Read(t testing.TB, path string) []openai.BatchOutputLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(t, data)
}

// CheckMixed checks the output of Mixed(n, bad, unknown) written as batch
// name: one line per input line in input order, each with its custom_id,
// 200 for the good lines, 400 for the malformed one and 404 naming the
// model for the unknown one.
func CheckMixed(t testing.TB, out []openai.BatchOutputLine, name string, ids []string, bad, unknown int) {
	t.Helper()
	if len(out) != len(ids) {
		t.Fatalf("%d output lines, want %d", len(out), len(ids))
	}
	b := &batch.Record{ID: name, Total: len(ids)}
	for i, l := range out {
		n := i + 1
		if want := b.LineID(n); l.ID != want {
			t.Errorf("line %d: id %s, want %s", n, l.ID, want)
		}
		switch {
		case n == bad:
			if l.CustomID != nil || l.Response == nil || l.Response.StatusCode != 400 {
				t.Errorf("malformed line %d: %+v %+v", n, l.CustomID, l.Response)
			}
			continue
		case n == unknown:
			if l.Response == nil || l.Response.StatusCode != 404 || !bytes.Contains(l.Response.Body, []byte("nosuchmodel")) {
				t.Errorf("unknown-model line %d: %+v", n, l.Response)
			}
		default:
			if l.Response == nil || l.Response.StatusCode != 200 || l.Error != nil {
				t.Errorf("line %d: response %+v, error %+v", n, l.Response, l.Error)
				continue
			}
			var body struct {
				Object  string          `json:"object"`
				Message json.RawMessage `json:"message"`
			}
			_ = json.Unmarshal(l.Response.Body, &body)
			want := map[int]string{0: "list", 1: "chat.completion", 2: ""}[n%3]
			if body.Object != want || (want == "" && body.Message == nil) {
				t.Errorf("line %d: body %s, want object %q", n, l.Response.Body, want)
			}
		}
		if l.CustomID == nil || *l.CustomID != ids[i] {
			t.Errorf("line %d: custom_id %v, want %s", n, l.CustomID, ids[i])
		}
	}
}

// Drop writes spoolDir/new/NAME.jsonl the way rsync does: a dot-named temp
// file, then a rename.
func Drop(t testing.TB, spoolDir, name, body string) {
	t.Helper()
	dir := filepath.Join(spoolDir, spool.DirNew)
	tmp := filepath.Join(dir, "."+name+".jsonl.Xa1b2c")
	if err := os.WriteFile(tmp, []byte(body), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name+".jsonl")); err != nil {
		t.Fatal(err)
	}
}

// CheckOpenAIFiles checks a Mixed batch's output and error files as the
// OpenAI API serves them: the output file holds the lines that succeeded,
// the error file the others, and together, in line order, they are what
// CheckMixed wants.
func CheckOpenAIFiles(t testing.TB, out, errs []openai.BatchOutputLine, name string, ids []string, bad, unknown int) {
	t.Helper()
	for _, l := range out {
		if l.Failed() {
			t.Errorf("the output file holds line %s, which failed", l.ID)
		}
	}
	for _, l := range errs {
		if !l.Failed() {
			t.Errorf("the error file holds line %s, which succeeded", l.ID)
		}
	}
	all := append(slices.Clone(out), errs...)
	slices.SortFunc(all, func(a, b openai.BatchOutputLine) int { return strings.Compare(a.ID, b.ID) })
	CheckMixed(t, all, name, ids, bad, unknown)
}
