package httpfront_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/httpfront"
	wire "github.com/hopper-dev/hopper/internal/openai"
	"github.com/hopper-dev/hopper/spool"
)

// chatLine is one OpenAI batch line asking for a chat completion.
func chatLine(customID, text string) string {
	return fmt.Sprintf(`{"custom_id":%q,"method":"POST","url":"/v1/chat/completions","body":{"model":"llama3.2","messages":[{"role":"user","content":%q}]}}`, customID, text)
}

func jsonl(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// batchFront starts a front on a new spool, with an OpenAI client of it.
func batchFront(t *testing.T) (*spool.Spool, *front, openai.Client) {
	t.Helper()
	sp := newSpool(t)
	f := startFront(t, sp)
	return sp, f, openaiClient(f.URL)
}

// upload stores content with the official client and returns its file.
func upload(t *testing.T, c openai.Client, content string) *openai.FileObject {
	t.Helper()
	f, err := c.Files.New(context.Background(), openai.FileNewParams{
		File:    openai.File(strings.NewReader(content), "requests.jsonl", "application/jsonl"),
		Purpose: openai.FilePurposeBatch,
	})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return f
}

func newBatch(t *testing.T, c openai.Client, fileID string) *openai.Batch {
	t.Helper()
	b, err := c.Batches.New(context.Background(), openai.BatchNewParams{
		InputFileID:      fileID,
		Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
	})
	if err != nil {
		t.Fatalf("create batch: %v", err)
	}
	return b
}

// runBatch plays the runner's part for the batch file new/NAME.jsonl with
// the spool's own batch functions: it claims and checks the batch, queues
// its lines, hands each claimed line to answer to finish, and writes the
// output.
func runBatch(t *testing.T, sp *spool.Spool, name string, answer func(line int, j *fakeJob)) *batch.Record {
	t.Helper()
	b, err := batch.New(sp).Claim(spool.Entry{Dir: spool.DirNew, Name: name + ".jsonl", Arrived: time.Now()})
	if err != nil {
		t.Fatalf("claim batch: %v", err)
	}
	if b.State != batch.InProgress {
		t.Fatalf("claimed batch is %s, want in_progress (errors %v)", b.State, b.Errors)
	}
	var queued []spool.Entry
	if _, err := batch.New(sp).Expand(b, b.Total, false, func(e spool.Entry) { queued = append(queued, e) }, func(int) {}); err != nil {
		t.Fatalf("expand batch: %v", err)
	}
	for _, e := range queued {
		c, err := sp.Claim(e)
		if err != nil {
			t.Fatalf("claim line: %v", err)
		}
		_, line, _ := spool.LineOf(c.Record.ID)
		answer(line, &fakeJob{t: t, sp: sp, c: c, rec: c.Record})
	}
	if err := batch.New(sp).Finish(b, nil); err != nil {
		t.Fatalf("finish batch: %v", err)
	}
	return b
}

// outputLines reads a batch output file.
func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func outputLines(t *testing.T, r io.Reader) []wire.BatchOutputLine {
	t.Helper()
	var out []wire.BatchOutputLine
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out = append(out, decode[wire.BatchOutputLine](t, sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// apiError unwraps the official client's error.
func apiError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v, want an API error", err)
	}
	return e
}

func TestOpenAIBatchRunsFromUploadToOutput(t *testing.T) {
	sp, _, c := batchFront(t)
	ctx := context.Background()
	input := jsonl(chatLine("a", "hello"), chatLine("b", "fail me"))

	file := upload(t, c, input)
	if !strings.HasPrefix(file.ID, "file-") || file.Bytes != int64(len(input)) || file.Filename != "requests.jsonl" ||
		file.Purpose != "batch" || file.Object != "file" || !strings.Contains(file.RawJSON(), `"status":"processed"`) {
		t.Fatalf("uploaded file = %s", file.RawJSON())
	}
	if got, err := c.Files.Get(ctx, file.ID); err != nil || got.ID != file.ID || got.Bytes != file.Bytes {
		t.Fatalf("get file = %v, %v", got, err)
	}

	b, err := c.Batches.New(ctx, openai.BatchNewParams{
		InputFileID:      file.ID,
		Endpoint:         openai.BatchNewParamsEndpointV1ChatCompletions,
		CompletionWindow: openai.BatchNewParamsCompletionWindow24h,
		Metadata:         shared.Metadata{"run": "nightly"},
	})
	if err != nil {
		t.Fatalf("create batch: %v", err)
	}
	if !strings.HasPrefix(b.ID, "batch_") || b.Object != "batch" || b.Status != openai.BatchStatusValidating ||
		b.InputFileID != file.ID || b.Endpoint != "/v1/chat/completions" || b.CompletionWindow != "24h" ||
		b.Metadata["run"] != "nightly" || b.CreatedAt == 0 || b.OutputFileID != "" {
		t.Fatalf("created batch = %s", b.RawJSON())
	}
	// Every field of OpenAI's object is there, null until it applies.
	raw := decode[map[string]json.RawMessage](t, []byte(b.RawJSON()))
	for _, k := range []string{"errors", "output_file_id", "error_file_id", "in_progress_at", "expires_at", "finalizing_at",
		"completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at"} {
		if v, ok := raw[k]; !ok || string(v) != "null" {
			t.Errorf("%s = %s, want null", k, v)
		}
	}
	if got := string(raw["request_counts"]); got != `{"total":0,"completed":0,"failed":0}` {
		t.Errorf("request_counts = %s", got)
	}

	runBatch(t, sp, b.ID, func(line int, j *fakeJob) {
		if line == 2 {
			j.fail(spool.KindTarget, "model is overloaded", 503)
			return
		}
		j.done(`{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"hi"}}]}`)
	})

	b, err = c.Batches.Get(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != openai.BatchStatusCompleted || b.RequestCounts.Total != 2 || b.RequestCounts.Completed != 1 || b.RequestCounts.Failed != 1 ||
		b.OutputFileID != "file-out-"+b.ID || b.ErrorFileID != "file-err-"+b.ID ||
		b.InProgressAt == 0 || b.FinalizingAt == 0 || b.CompletedAt == 0 || b.InputFileID != file.ID {
		t.Fatalf("finished batch = %s", b.RawJSON())
	}

	resp, err := c.Files.Content(ctx, b.OutputFileID)
	if err != nil {
		t.Fatal(err)
	}
	// As OpenAI's: the output file holds the lines that succeeded, the
	// error file the others (done/NAME.jsonl on disk holds both).
	content, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out := outputLines(t, bytes.NewReader(content))
	if len(out) != 1 || *out[0].CustomID != "a" {
		t.Fatalf("output = %+v", out)
	}
	if out[0].Response == nil || out[0].Response.StatusCode != 200 || !bytes.Contains(out[0].Response.Body, []byte(`"content":"hi"`)) {
		t.Errorf("line 1 = %+v", out[0])
	}
	if all := outputLines(t, bytes.NewReader(mustRead(t, filepath.Join(sp.Path(), "done", b.ID+".jsonl")))); len(all) != 2 {
		t.Errorf("done/%s.jsonl holds %d lines, want both", b.ID, len(all))
	}

	resp, err = c.Files.Content(ctx, b.ErrorFileID)
	if err != nil {
		t.Fatal(err)
	}
	errs := outputLines(t, resp.Body)
	resp.Body.Close()
	if len(errs) != 1 || *errs[0].CustomID != "b" || errs[0].Response == nil || errs[0].Response.StatusCode != 503 {
		t.Errorf("errors file = %+v", errs)
	}

	of, err := c.Files.Get(ctx, b.OutputFileID)
	if err != nil {
		t.Fatal(err)
	}
	if of.Purpose != "batch_output" || of.Filename != b.ID+"_output.jsonl" || of.Bytes != int64(len(content)) {
		t.Errorf("output file = %s, want bytes %d", of.RawJSON(), len(content))
	}

	page, err := c.Batches.List(ctx, openai.BatchListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != b.ID || page.HasMore {
		t.Errorf("batches = %s", page.RawJSON())
	}

	t.Run("CancelOfACompletedBatchIsAConflict", func(t *testing.T) {
		_, err := c.Batches.Cancel(ctx, b.ID)
		e := apiError(t, err)
		if e.StatusCode != http.StatusConflict || e.Type != "invalid_request_error" || !strings.Contains(e.Message, "'completed'") {
			t.Errorf("got %d %s %q", e.StatusCode, e.Type, e.Message)
		}
		// The SDKs retry a 409 unless told not to.
		if got := e.Response.Header.Get("X-Should-Retry"); got != "false" {
			t.Errorf("X-Should-Retry: %q, want false", got)
		}
	})
}

func TestCancelBatchAsksTheRunner(t *testing.T) {
	sp, _, c := batchFront(t)
	ctx := context.Background()
	b := newBatch(t, c, upload(t, c, jsonl(chatLine("a", "x"), chatLine("b", "y"))).ID)

	got, err := c.Batches.Cancel(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != openai.BatchStatusCancelling || got.CancellingAt == 0 || !batch.New(sp).CancelRequested(b.ID) {
		t.Fatalf("canceled batch = %s", got.RawJSON())
	}
	// Asking again is no error while the batch is still being canceled.
	if got, err = c.Batches.Cancel(ctx, b.ID); err != nil || got.Status != openai.BatchStatusCancelling {
		t.Fatalf("second cancel = %v, %v", got, err)
	}
	if got, err = c.Batches.Get(ctx, b.ID); err != nil || got.Status != openai.BatchStatusCancelling {
		t.Fatalf("get = %v, %v", got, err)
	}
}

func TestBatchListIsNewestFirstAndPages(t *testing.T) {
	_, _, c := batchFront(t)
	ctx := context.Background()
	file := upload(t, c, jsonl(chatLine("a", "x")))
	var ids []string
	for range 3 {
		ids = append([]string{newBatch(t, c, file.ID).ID}, ids...)
	}

	page, err := c.Batches.List(ctx, openai.BatchListParams{Limit: openai.Int(2)})
	if err != nil {
		t.Fatal(err)
	}
	raw := decode[map[string]json.RawMessage](t, []byte(page.RawJSON()))
	if len(page.Data) != 2 || page.Data[0].ID != ids[0] || page.Data[1].ID != ids[1] || !page.HasMore ||
		string(raw["object"]) != `"list"` || string(raw["first_id"]) != `"`+ids[0]+`"` || string(raw["last_id"]) != `"`+ids[1]+`"` {
		t.Fatalf("first page = %s", page.RawJSON())
	}
	var all []string
	iter := c.Batches.ListAutoPaging(ctx, openai.BatchListParams{Limit: openai.Int(2)})
	for iter.Next() {
		all = append(all, iter.Current().ID)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(all, " ") != strings.Join(ids, " ") {
		t.Errorf("all pages = %v, want %v", all, ids)
	}
}

func TestDroppedBatchIsServedWithItsFiles(t *testing.T) {
	sp, f, c := batchFront(t)
	ctx := context.Background()
	input := jsonl(chatLine("a", "x"))
	if err := os.WriteFile(filepath.Join(sp.Path(), spool.DirNew, "nightly.jsonl"), []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}

	b, err := c.Batches.Get(ctx, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != openai.BatchStatusValidating || b.InputFileID != "file-in-nightly" || b.Endpoint != "/v1/chat/completions" {
		t.Fatalf("queued dropped batch = %s", b.RawJSON())
	}
	resp, data := call(t, "GET", f.URL+"/v1/files/file-in-nightly/content", "")
	if resp.StatusCode != http.StatusOK || string(data) != input {
		t.Fatalf("input content = %d %q", resp.StatusCode, data)
	}
	_, err = c.Files.Get(ctx, "file-out-nightly")
	if e := apiError(t, err); e.StatusCode != http.StatusNotFound {
		t.Fatalf("output before it is written: %d", e.StatusCode)
	}

	runBatch(t, sp, "nightly", func(_ int, j *fakeJob) { j.done(`{"ok":true}`) })

	b, err = c.Batches.Get(ctx, "nightly")
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != openai.BatchStatusCompleted || b.OutputFileID != "file-out-nightly" || b.ErrorFileID != "" {
		t.Fatalf("finished dropped batch = %s", b.RawJSON())
	}
	resp2, err := c.Files.Content(ctx, b.OutputFileID)
	if err != nil {
		t.Fatal(err)
	}
	out := outputLines(t, resp2.Body)
	resp2.Body.Close()
	if len(out) != 1 || string(out[0].Response.Body) != `{"ok":true}` {
		t.Errorf("output = %+v", out)
	}
	if ct := resp2.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("content type %q", ct)
	}

	files, err := c.Files.List(ctx, openai.FileListParams{Purpose: openai.String("batch_output")})
	if err != nil {
		t.Fatal(err)
	}
	if len(files.Data) != 1 || files.Data[0].ID != "file-out-nightly" {
		t.Errorf("batch_output files = %s", files.RawJSON())
	}
	files, err = c.Files.List(ctx, openai.FileListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(files.Data) != 2 {
		t.Errorf("files = %s", files.RawJSON())
	}
}

func TestDeleteFile(t *testing.T) {
	sp, f, c := batchFront(t)
	ctx := context.Background()
	file := upload(t, c, jsonl(chatLine("a", "x")))
	b := newBatch(t, c, file.ID)

	del, err := c.Files.Delete(ctx, file.ID)
	if err != nil {
		t.Fatal(err)
	}
	if del.ID != file.ID || !del.Deleted || del.Object != "file" {
		t.Errorf("deleted = %s", del.RawJSON())
	}
	_, err = c.Files.Get(ctx, file.ID)
	if e := apiError(t, err); e.StatusCode != http.StatusNotFound {
		t.Errorf("get deleted: %d", e.StatusCode)
	}
	// The batch keeps its input.
	resp, data := call(t, "GET", f.URL+"/v1/files/file-in-"+b.ID+"/content", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), `"custom_id":"a"`) {
		t.Errorf("batch input after the upload was deleted: %d %s", resp.StatusCode, data)
	}
	// A batch under way keeps its own files.
	_, err = c.Files.Delete(ctx, "file-in-"+b.ID)
	if e := apiError(t, err); e.StatusCode != http.StatusBadRequest || !strings.Contains(e.Message, "has not ended") {
		t.Errorf("delete a running batch's own file: %d %q", e.StatusCode, e.Message)
	}

	// Once it ended, every file GET /v1/files lists can be deleted, as a
	// cleanup loop over files.list expects; the batch stops naming them.
	runBatch(t, sp, b.ID, func(line int, j *fakeJob) {
		j.start().fail(spool.KindTarget, "no", 503)
	})
	done := upload(t, c, jsonl(chatLine("ok", "x"), chatLine("bad", "y")))
	b2 := newBatch(t, c, done.ID)
	runBatch(t, sp, b2.ID, func(line int, j *fakeJob) {
		if line == 1 {
			j.start().done(`{"object":"chat.completion"}`)
			return
		}
		j.start().fail(spool.KindTarget, "no", 503)
	})
	iter := c.Files.ListAutoPaging(ctx, openai.FileListParams{})
	var listed []string
	for iter.Next() {
		listed = append(listed, iter.Current().ID)
	}
	if err := iter.Err(); err != nil || len(listed) != 4 { // the first batch's input and errors, the second's output and errors
		t.Errorf("listed %v, %v", listed, err)
	}
	for _, id := range listed {
		if _, err := c.Files.Delete(ctx, id); err != nil {
			t.Errorf("delete listed %s: %v", id, err)
		}
	}
	if page, err := c.Files.List(ctx, openai.FileListParams{}); err != nil || len(page.Data) != 0 {
		t.Errorf("files after deleting every listed one: %v %v", page, err)
	}
	got, err := c.Batches.Get(ctx, b2.ID)
	if err != nil || got.Status != openai.BatchStatusCompleted || got.OutputFileID != "" || got.ErrorFileID != "" {
		t.Errorf("batch after its files were deleted: %v %v", got, err)
	}
	for _, p := range []string{"done/" + b2.ID + ".jsonl", "failed/" + b2.ID + ".errors.jsonl"} {
		if _, err := os.Stat(filepath.Join(sp.Path(), p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after its file was deleted: %v", p, err)
		}
	}
}

// multipartBody builds a form from name, value pairs; the field "file"
// is sent as a file.
func multipartBody(t *testing.T, fields ...string) (body, contentType string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		var w io.Writer
		var err error
		if fields[i] == "file" {
			w, err = mw.CreateFormFile("file", "in.jsonl")
		} else {
			w, err = mw.CreateFormField(fields[i])
		}
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, fields[i+1])
	}
	mw.Close()
	return buf.String(), mw.FormDataContentType()
}

func TestBatchEndpointsRefuseBadInput(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) { c.MaxUpload = 1024 })
	c := openaiClient(f.URL)
	good := upload(t, c, jsonl(chatLine("a", "x")))
	dup := upload(t, c, jsonl(chatLine("a", "x"), chatLine("a", "y")))
	empty := upload(t, c, "\n")
	noPurpose, noPurposeType := multipartBody(t, "file", "{}\n")
	noFile, noFileType := multipartBody(t, "purpose", "batch")
	badPurpose, badPurposeType := multipartBody(t, "purpose", "fine-tune", "file", "{}\n")

	batchBody := func(fileID, endpoint, window string) string {
		return fmt.Sprintf(`{"input_file_id":%q,"endpoint":%q,"completion_window":%q}`, fileID, endpoint, window)
	}
	tests := []struct {
		name        string
		method, url string
		body, ctype string
		status      int
		code        string // OpenAI's error code, when there is one
		says        string
	}{
		{"UploadThatIsNotAForm", "POST", "/v1/files", `{"purpose":"batch"}`, "application/json", http.StatusUnsupportedMediaType, "", "multipart/form-data"},
		{"UploadWithoutAPurpose", "POST", "/v1/files", noPurpose, noPurposeType, http.StatusBadRequest, "", "purpose"},
		{"UploadWithoutAFile", "POST", "/v1/files", noFile, noFileType, http.StatusBadRequest, "", "file"},
		{"UploadForAnotherPurpose", "POST", "/v1/files", badPurpose, badPurposeType, http.StatusBadRequest, "", `"fine-tune"`},
		{"BatchOfAnUnknownFile", "POST", "/v1/batches", batchBody("file-nope", "/v1/chat/completions", "24h"), "application/json", http.StatusNotFound, "", "No such File object: file-nope"},
		{"BatchWithDuplicateCustomIDs", "POST", "/v1/batches", batchBody(dup.ID, "/v1/chat/completions", "24h"), "application/json", http.StatusBadRequest, "duplicate_custom_id", "custom_id"},
		{"BatchOfAnEmptyFile", "POST", "/v1/batches", batchBody(empty.ID, "/v1/chat/completions", "24h"), "application/json", http.StatusBadRequest, "empty_file", "no lines"},
		{"BatchForAnEndpointNotServed", "POST", "/v1/batches", batchBody(good.ID, "/v1/responses", "24h"), "application/json", http.StatusBadRequest, "", "'endpoint'"},
		{"BatchWithAnotherWindow", "POST", "/v1/batches", batchBody(good.ID, "/v1/chat/completions", "1h"), "application/json", http.StatusBadRequest, "", "'completion_window'"},
		{"BatchWithoutAFile", "POST", "/v1/batches", `{"endpoint":"/v1/chat/completions","completion_window":"24h"}`, "application/json", http.StatusBadRequest, "", "'input_file_id'"},
		{"BatchWithMetadataThatIsNotStrings", "POST", "/v1/batches", `{"input_file_id":"` + good.ID + `","endpoint":"/v1/embeddings","completion_window":"24h","metadata":{"n":1}}`, "application/json", http.StatusBadRequest, "", "'metadata'"},
		{"BatchThatIsNotJSON", "POST", "/v1/batches", `{"input_file_id":`, "application/json", http.StatusBadRequest, "", "JSON"},
		{"UnknownBatch", "GET", "/v1/batches/batch_nope", "", "", http.StatusNotFound, "", "No such Batch object: batch_nope"},
		{"CancelOfAnUnknownBatch", "POST", "/v1/batches/batch_nope/cancel", "", "", http.StatusNotFound, "", "No such Batch object"},
		{"UnknownFile", "GET", "/v1/files/file-nope", "", "", http.StatusNotFound, "", "No such File object"},
		{"ContentOfAnUnknownFile", "GET", "/v1/files/file-nope/content", "", "", http.StatusNotFound, "", "No such File object"},
		{"OutputOfAnUnknownBatch", "GET", "/v1/files/file-out-nope/content", "", "", http.StatusNotFound, "", "No such File object"},
		{"FileIDThatIsAPath", "GET", "/v1/files/file-..%2f..%2fetc%2fpasswd", "", "", http.StatusNotFound, "", "No such File object"},
		{"ListAfterAnUnknownBatch", "GET", "/v1/batches?after=batch_nope", "", "", http.StatusBadRequest, "", "after"},
		{"ListWithABadLimit", "GET", "/v1/batches?limit=0", "", "", http.StatusBadRequest, "", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.ctype != "" {
				header = []string{"Content-Type", tt.ctype}
			}
			resp, data := call(t, tt.method, f.URL+tt.url, tt.body, header...)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, data, tt.status)
			}
			e := decode[openaiError](t, data)
			if e.Error.Type != "invalid_request_error" || string(e.Error.Param) != "null" {
				t.Errorf("error = %s", data)
			}
			if code := string(e.Error.Code); tt.code != "" && code != `"`+tt.code+`"` || tt.code == "" && code != "null" {
				t.Errorf("code = %s, want %q", code, tt.code)
			}
			if !strings.Contains(e.Error.Message, tt.says) {
				t.Errorf("message %q does not say %q", e.Error.Message, tt.says)
			}
		})
	}

	t.Run("UploadOverMaxUpload", func(t *testing.T) {
		_, err := c.Files.New(context.Background(), openai.FileNewParams{
			File:    openai.File(strings.NewReader(strings.Repeat("x", 4096)), "big.jsonl", "application/jsonl"),
			Purpose: openai.FilePurposeBatch,
		})
		if e := apiError(t, err); e.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(e.Message, "1024") {
			t.Errorf("got %d %q", e.StatusCode, e.Message)
		}
	})
	t.Run("RefusedUploadsAreNotKept", func(t *testing.T) {
		// openai-go sends the file before the purpose: the file is
		// stored, then removed once the purpose is refused.
		_, err := c.Files.New(context.Background(), openai.FileNewParams{
			File:    openai.File(strings.NewReader("{}\n"), "in.jsonl", "application/jsonl"),
			Purpose: openai.FilePurposeFineTune,
		})
		if e := apiError(t, err); e.StatusCode != http.StatusBadRequest {
			t.Errorf("got %d %q", e.StatusCode, e.Message)
		}
		files, err := batch.New(sp).ListFiles()
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != 3 {
			t.Errorf("%d files kept, want the 3 good uploads", len(files))
		}
	})
}

func TestUploadsAreNotBoundByMaxBody(t *testing.T) {
	f := startFront(t, newSpool(t), func(c *httpfront.Config) { c.MaxBody = 1024 })
	c := openaiClient(f.URL)
	content := jsonl(chatLine("a", strings.Repeat("x", 8192)))
	file := upload(t, c, content)
	resp, err := c.Files.Content(context.Background(), file.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if string(data) != content {
		t.Errorf("content is %d bytes, want %d", len(data), len(content))
	}
}

func TestBatchEndpointsNeedTheToken(t *testing.T) {
	f := startFront(t, newSpool(t), func(c *httpfront.Config) { c.Tokens = []string{"sesame"} })
	resp, data := call(t, "GET", f.URL+"/v1/batches", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %d %s", resp.StatusCode, data)
	}
	c := openai.NewClient(option.WithBaseURL(f.URL+"/v1/"), option.WithAPIKey("sesame"), option.WithMaxRetries(0))
	file := upload(t, c, jsonl(chatLine("a", "x")))
	b := newBatch(t, c, file.ID)
	if _, err := c.Batches.Get(context.Background(), b.ID); err != nil {
		t.Fatal(err)
	}
}

func TestRefusedBatchShowsItsErrors(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp)
	input := jsonl(chatLine("a", "x"), chatLine("a", "y"))
	if err := os.WriteFile(filepath.Join(sp.Path(), spool.DirNew, "dups.jsonl"), []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := batch.New(sp).Claim(spool.Entry{Dir: spool.DirNew, Name: "dups.jsonl"}); err != nil {
		t.Fatal(err)
	}
	c := openaiClient(f.URL)
	b, err := c.Batches.Get(context.Background(), "dups")
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != openai.BatchStatusFailed || b.FailedAt == 0 || b.Errors.Object != "list" || len(b.Errors.Data) != 1 {
		t.Fatalf("refused batch = %s", b.RawJSON())
	}
	if e := b.Errors.Data[0]; e.Code != "duplicate_custom_id" || e.Line != 2 || !strings.Contains(e.Message, "custom_id") {
		t.Errorf("error = %s", e.RawJSON())
	}
}

// An SDK retrying POST /v1/batches after losing the answer sends the same
// Idempotency-Key: it gets the batch the first request made, not a second.
func TestCreateBatchHonoursIdempotencyKey(t *testing.T) {
	sp, f, c := batchFront(t)
	file := upload(t, c, jsonl(chatLine("a", "x")))
	body := `{"input_file_id":"` + file.ID + `","endpoint":"/v1/chat/completions","completion_window":"24h"}`
	resp, first := call(t, "POST", f.URL+"/v1/batches", body, "Idempotency-Key", "stainless-retry-1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first: %d %s", resp.StatusCode, first)
	}
	id := decode[map[string]any](t, first)["id"]
	resp, again := call(t, "POST", f.URL+"/v1/batches", body, "Idempotency-Key", "stainless-retry-1")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotent-Replayed") != "true" || decode[map[string]any](t, again)["id"] != id {
		t.Errorf("retry: %d %s, want batch %v replayed", resp.StatusCode, again, id)
	}
	if list, err := batch.New(sp).List(); err != nil || len(list) != 1 {
		t.Errorf("batches: %d, %v; want 1", len(list), err)
	}
	other := `{"input_file_id":"` + file.ID + `","endpoint":"/v1/chat/completions","completion_window":"24h","metadata":{"x":"y"}}`
	resp, data := call(t, "POST", f.URL+"/v1/batches", other, "Idempotency-Key", "stainless-retry-1")
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(data), "different request body") ||
		!strings.Contains(string(data), `"type":"invalid_request_error"`) {
		t.Errorf("same key, other body: %d %s", resp.StatusCode, data)
	}
	// Without a key, each create is a batch of its own.
	if resp, data := call(t, "POST", f.URL+"/v1/batches", body); resp.StatusCode != http.StatusOK || decode[map[string]any](t, data)["id"] == id {
		t.Errorf("without a key: %d %s", resp.StatusCode, data)
	}
}
