package httpfront

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/spool"
)

// OpenAI's /v1/files and /v1/batches (DESIGN §10): uploads are kept in the
// spool's files/, and a batch made from one is linked into new/ for the
// runner, which alone moves it on. These handlers only read what the
// runner writes: batches/NAME.json, done/NAME.jsonl and
// failed/NAME.errors.jsonl.

// Limits and defaults of the batch endpoints.
const (
	// DefaultMaxUpload caps the bytes of a file uploaded to POST /v1/files.
	DefaultMaxUpload = 512 << 20
	// multipartSlack is room for the multipart envelope around the file.
	multipartSlack = 1 << 20

	defaultBatchLimit = 20    // GET /v1/batches, as OpenAI
	maxBatchLimit     = 100   // as OpenAI
	maxFileLimit      = 10000 // GET /v1/files: OpenAI's default and maximum

	// completionWindow is the only window OpenAI accepts. hopper has no
	// deadline for a batch; the window is kept and shown, not enforced.
	completionWindow = "24h"
	// defaultBatchEndpoint is shown for a batch dropped as a file, which
	// names no endpoint of its own (its lines may even mix endpoints, or
	// be hopper jobs): OpenAI's object needs one, and chat is what most
	// batches are.
	defaultBatchEndpoint = "/v1/chat/completions"

	purposeBatch       = "batch"
	purposeBatchOutput = "batch_output"

	// OpenAI's limits on metadata.
	maxMetadataPairs = 16
	maxMetadataKey   = 64
	maxMetadataValue = 512
)

// A batch's own files are served under /v1/files with these IDs, so that
// output_file_id also works for batches dropped as files: file-in-NAME is
// the input (batches/NAME.jsonl), file-out-NAME the output
// (done/NAME.jsonl), file-err-NAME the failed lines
// (failed/NAME.errors.jsonl). Uploaded files are batch.FilePrefix and a
// generated ID, which starts with a digit, so the two never collide.
const (
	fileInPrefix  = batch.FilePrefix + "in-"
	fileOutPrefix = batch.FilePrefix + "out-"
	fileErrPrefix = batch.FilePrefix + "err-"
)

// oaError is an error in OpenAI's words: its client errors are
// "invalid_request_error" whatever the status, 404 included.
func oaError(status int, code, format string, args ...any) *httpError {
	e := errorf(status, format, args...)
	e.code = code
	if status < 500 {
		e.oaType = "invalid_request_error"
	}
	return e
}

func noSuchFile(id string) *httpError {
	return oaError(http.StatusNotFound, "", "No such File object: %s", id)
}

func noSuchBatch(id string) *httpError {
	return oaError(http.StatusNotFound, "", "No such Batch object: %s", id)
}

// objectError answers err from reading or changing the file or batch id:
// notFound(id) (noSuchFile or noSuchBatch) when the spool has no such
// thing, a storage error naming op otherwise, nil for nil.
func (s *Server) objectError(err error, notFound func(id string) *httpError, id, op string) *httpError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, spool.ErrNotFound):
		return notFound(id)
	}
	return s.storageError(op, err)
}

// writeObject answers 200 with v as JSON.
func writeObject(w http.ResponseWriter, r *http.Request, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, "encode: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, append(data, '\n'))
}

// unix is t in Unix seconds, or nil.
func unix(t *time.Time) *int64 {
	if t == nil || t.IsZero() {
		return nil
	}
	s := t.Unix()
	return &s
}

// list is OpenAI's paginated list.
type list[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

// paginate cuts items, in the order they are shown, to the limit items
// after the one whose ID is after (OpenAI's cursor).
func paginate[T any](r *http.Request, items []T, id func(T) string, def, max int) (list[T], *httpError) {
	q := r.URL.Query()
	limit := def
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return list[T]{}, oaError(http.StatusBadRequest, "", "invalid limit %q: give a number from 1 to %d", v, max)
		}
		limit = min(n, max)
	}
	if after := q.Get("after"); after != "" {
		i := slices.IndexFunc(items, func(x T) bool { return id(x) == after })
		if i < 0 {
			return list[T]{}, oaError(http.StatusBadRequest, "", "invalid after %q: no such object in this list (was it deleted?)", after)
		}
		items = items[i+1:]
	}
	l := list[T]{Object: "list", Data: items, HasMore: len(items) > limit}
	if l.HasMore {
		l.Data = items[:limit]
	}
	if l.Data == nil {
		l.Data = []T{}
	}
	if n := len(l.Data); n > 0 {
		first, last := id(l.Data[0]), id(l.Data[n-1])
		l.FirstID, l.LastID = &first, &last
	}
	return l, nil
}

// fileObject is OpenAI's file object.
type fileObject struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Bytes         int64   `json:"bytes"`
	CreatedAt     int64   `json:"created_at"`
	ExpiresAt     *int64  `json:"expires_at"` // hopper never expires a file
	Filename      string  `json:"filename"`
	Purpose       string  `json:"purpose"`
	Status        string  `json:"status"`
	StatusDetails *string `json:"status_details"`
}

func uploadObject(m *batch.File) fileObject {
	return fileObject{ID: m.ID, Object: "file", Bytes: m.Bytes, CreatedAt: m.CreatedAt.Unix(),
		Filename: m.Filename, Purpose: m.Purpose, Status: "processed"}
}

// served is a file the /v1/files endpoints can serve.
type served struct {
	obj    fileObject
	path   string // relative to the spool
	upload bool   // uploaded, rather than one of a batch's own
	// succeeded serves only the lines of path that succeeded: OpenAI's
	// output file, whose failed lines are in the error file (done/NAME.jsonl
	// holds them all).
	succeeded bool
}

// batchFileID splits a batch's own file ID into its prefix and the batch.
func batchFileID(id string) (prefix, name string, ok bool) {
	for _, p := range []string{fileInPrefix, fileOutPrefix, fileErrPrefix} {
		if name, ok := strings.CutPrefix(id, p); ok {
			return p, name, true
		}
	}
	return "", "", false
}

// lookupFile finds file id: an upload, or one of a batch's own files
// once it exists.
func (s *Server) lookupFile(id string) (*served, *httpError) {
	prefix, name, ok := batchFileID(id)
	if !ok {
		m, err := s.batches.File(id)
		if e := s.objectError(err, noSuchFile, id, "read file"); e != nil {
			return nil, e
		}
		return &served{obj: uploadObject(m), path: batch.FilePath(m.ID), upload: true}, nil
	}
	b, err := s.batches.Get(name)
	if e := s.objectError(err, noSuchFile, id, "read batch"); e != nil {
		return nil, e
	}
	f, err := s.batchFile(b, prefix)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, noSuchFile(id)
	}
	if err != nil {
		return nil, s.storageError("read file", err)
	}
	return f, nil
}

// pathFile finds the file r's path names ({id}), or answers r with why it
// cannot and returns a nil file.
func (s *Server) pathFile(w http.ResponseWriter, r *http.Request) (string, *served) {
	id := r.PathValue("id")
	f, e := s.lookupFile(id)
	if e != nil {
		writeError(w, r, e)
	}
	return id, f
}

// batchFile describes one of batch b's own files; an error wrapping
// fs.ErrNotExist means it is not there (yet).
func (s *Server) batchFile(b *batch.Record, prefix string) (*served, error) {
	f := &served{obj: fileObject{ID: prefix + b.ID, Object: "file", Status: "processed", Purpose: purposeBatchOutput}}
	var paths []string
	switch prefix {
	case fileInPrefix:
		// Queued, the input waits in new/; claimed, it is in batches/.
		paths = []string{spool.DirBatches + "/" + b.ID + ".jsonl", spool.DirNew + "/" + b.ID + ".jsonl"}
		f.obj.Purpose, f.obj.Filename = purposeBatch, b.ID+".jsonl"
		if b.Source != "" {
			f.obj.Filename = b.Source
		}
	case fileOutPrefix:
		if b.Done == 0 {
			return nil, fmt.Errorf("%s%s: no line succeeded: %w", prefix, b.ID, fs.ErrNotExist)
		}
		paths = []string{spool.DirDone + "/" + b.ID + ".jsonl"}
		f.obj.Filename, f.succeeded = b.ID+"_output.jsonl", true
	case fileErrPrefix:
		paths = []string{spool.DirFailed + "/" + b.ID + ".errors.jsonl"}
		f.obj.Filename = b.ID + "_error.jsonl"
	}
	for _, p := range paths {
		fi, err := s.sp.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file: %w", p, fs.ErrNotExist)
		}
		f.path, f.obj.Bytes, f.obj.CreatedAt = p, fi.Size(), fi.ModTime().Unix()
		if f.succeeded {
			if f.obj.Bytes, err = s.succeeded.size(s.sp, p, fi); err != nil {
				return nil, err
			}
		}
		if prefix == fileInPrefix {
			f.obj.CreatedAt = b.CreatedAt.Unix()
		}
		return f, nil
	}
	return nil, fmt.Errorf("%s%s: %w", prefix, b.ID, fs.ErrNotExist)
}

// uploadFile serves POST /v1/files: a multipart form with the file and its
// purpose, which must be "batch". The file may be up to MaxUpload bytes
// (not MaxBody); it is streamed to the spool, never held in memory. The
// form may give the purpose after the file (openai-go does): the file is
// then stored first and removed again if the purpose is refused.
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		writeError(w, r, oaError(http.StatusUnsupportedMediaType, "",
			"send the file as multipart/form-data with the fields file and purpose (got Content-Type %q)", r.Header.Get("Content-Type")))
		return
	}
	limit := s.cfg.MaxUpload + multipartSlack
	if r.ContentLength > limit {
		writeError(w, r, s.uploadTooLarge())
		return
	}
	rc := http.NewResponseController(w)
	defer rc.SetReadDeadline(time.Time{})
	conn := &stallReader{r: http.MaxBytesReader(w, r.Body, limit), rc: rc, timeout: s.cfg.ReadTimeout}

	var meta *batch.File
	purpose, gotPurpose, ok := "", false, false
	defer func() {
		if meta != nil && !ok {
			if err := s.batches.DeleteFile(meta.ID); err != nil {
				s.log.Warn("cannot remove a refused upload", "file", meta.ID, "err", err)
			}
		}
	}()
	mr := multipart.NewReader(conn, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeError(w, r, s.uploadError(conn.err, true, err))
			return
		}
		in := &errReader{r: part}
		switch part.FormName() {
		case "purpose":
			v, err := io.ReadAll(io.LimitReader(in, 256))
			if err != nil {
				writeError(w, r, s.uploadError(conn.err, true, err))
				return
			}
			purpose, gotPurpose = strings.TrimSpace(string(v)), true
			if purpose != purposeBatch {
				writeError(w, r, oaError(http.StatusBadRequest, "",
					"hopper stores files for batches only: purpose must be %q, got %q", purposeBatch, purpose))
				return
			}
		case "file":
			if meta != nil {
				writeError(w, r, oaError(http.StatusBadRequest, "", "the form has more than one file: upload one at a time"))
				return
			}
			name := part.FileName()
			if name == "" {
				name = "upload.jsonl"
			}
			meta, err = s.batches.PutFile(in, name, purposeBatch, s.cfg.MaxUpload)
			if err != nil {
				writeError(w, r, s.uploadError(conn.err, in.err != nil, err))
				return
			}
		default:
			// Fields hopper does not use (expires_after) are read past.
			if _, err := io.Copy(io.Discard, in); err != nil {
				writeError(w, r, s.uploadError(conn.err, true, err))
				return
			}
		}
		part.Close()
	}
	switch {
	case meta == nil:
		writeError(w, r, oaError(http.StatusBadRequest, "", "missing required parameter: 'file'"))
		return
	case !gotPurpose:
		writeError(w, r, oaError(http.StatusBadRequest, "", "missing required parameter: 'purpose' (hopper takes %q)", purposeBatch))
		return
	}
	ok = true
	s.log.Info("file uploaded", "file", meta.ID, "bytes", meta.Bytes, "remote", r.RemoteAddr)
	writeObject(w, r, uploadObject(meta))
}

// stallReader reads an upload, moving the connection's read deadline on
// before each read: an upload may take as long as it needs, while a
// client that stops sending is cut off after timeout. It keeps the first
// error, to tell why an upload failed.
type stallReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
	err     error
}

func (s *stallReader) Read(p []byte) (int, error) {
	_ = s.rc.SetReadDeadline(time.Now().Add(s.timeout))
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return n, err
}

// errReader keeps the first error of reading a part of the form, to tell
// a malformed upload from a failure to store it.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}

func (s *Server) uploadTooLarge() *httpError {
	return oaError(http.StatusRequestEntityTooLarge, "", "the file is larger than the limit of %d bytes (max_upload)", s.cfg.MaxUpload)
}

// uploadError answers an upload that failed with err: conn is the first
// error reading the request, if any, and reading whether err came from
// reading the form rather than storing it.
func (s *Server) uploadError(conn error, reading bool, err error) *httpError {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, batch.ErrTooLarge), errors.As(conn, &mbe):
		return s.uploadTooLarge()
	case errors.Is(conn, os.ErrDeadlineExceeded):
		return oaError(http.StatusRequestTimeout, "", "the upload stalled for longer than %s", s.cfg.ReadTimeout)
	case conn != nil:
		return oaError(http.StatusBadRequest, "", "reading the upload: %v", conn)
	case reading:
		return oaError(http.StatusBadRequest, "", "malformed multipart form: %v", err)
	}
	return s.storageError("store file", err)
}

// listFiles serves GET /v1/files?purpose=&order=desc&after=&limit=: the
// uploads and the batches' own files, newest first unless order=asc.
func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		writeError(w, r, oaError(http.StatusBadRequest, "", "invalid order %q: use asc or desc", order))
		return
	}
	files, err := s.allFiles()
	if err != nil {
		writeError(w, r, s.storageError("list files", err))
		return
	}
	if p := q.Get("purpose"); p != "" {
		files = slices.DeleteFunc(files, func(f fileObject) bool { return f.Purpose != p })
	}
	slices.SortStableFunc(files, func(a, b fileObject) int {
		return cmp.Or(cmp.Compare(b.CreatedAt, a.CreatedAt), strings.Compare(b.ID, a.ID))
	})
	if order == "asc" {
		slices.Reverse(files)
	}
	l, e := paginate(r, files, func(f fileObject) string { return f.ID }, maxFileLimit, maxFileLimit)
	if e != nil {
		writeError(w, r, e)
		return
	}
	writeObject(w, r, l)
}

// allFiles lists the uploads and every batch's own files that exist: the
// input of a batch dropped as a file (an uploaded one is listed as
// uploaded), the output and the failed lines.
func (s *Server) allFiles() ([]fileObject, error) {
	uploads, err := s.batches.ListFiles()
	if err != nil {
		return nil, err
	}
	files := make([]fileObject, 0, len(uploads))
	for _, m := range uploads {
		files = append(files, uploadObject(m))
	}
	batches, err := s.batches.List()
	if err != nil && batches == nil {
		return nil, err
	}
	if err != nil {
		s.log.Warn("some batch records cannot be read; their files are left out of the list", "err", err)
	}
	for _, b := range batches {
		var prefixes []string
		if b.InputFileID == "" {
			prefixes = append(prefixes, fileInPrefix)
		}
		if b.Output != "" && b.Done > 0 {
			prefixes = append(prefixes, fileOutPrefix)
		}
		if b.ErrorsFile != "" {
			prefixes = append(prefixes, fileErrPrefix)
		}
		for _, p := range prefixes {
			if f, err := s.batchFile(b, p); err == nil {
				files = append(files, f.obj)
			}
		}
	}
	return files, nil
}

// getFile serves GET /v1/files/{id}.
func (s *Server) getFile(w http.ResponseWriter, r *http.Request) {
	if _, f := s.pathFile(w, r); f != nil {
		writeObject(w, r, f.obj)
	}
}

// deleteFile serves DELETE /v1/files/{id}: an upload (a batch made from
// it keeps its input), or one of an ended batch's own files, which the
// batch then no longer names. A batch under way keeps its files.
func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request) {
	id, f := s.pathFile(w, r)
	if f == nil {
		return
	}
	var err error
	if f.upload {
		err = s.batches.DeleteFile(id)
	} else {
		_, name, _ := batchFileID(id)
		err = s.batches.DeleteFileOf(name, f.path)
		if errors.Is(err, batch.ErrRunning) {
			writeError(w, r, oaError(http.StatusBadRequest, "",
				"%s belongs to batch %s, which has not ended; cancel it or wait, then delete the file", id, name))
			return
		}
	}
	if e := s.objectError(err, noSuchFile, id, "delete file"); e != nil {
		writeError(w, r, e)
		return
	}
	s.log.Info("file deleted", "file", id, "remote", r.RemoteAddr)
	writeObject(w, r, struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Deleted bool   `json:"deleted"`
	}{id, "file", true})
}

// fileContent serves GET /v1/files/{id}/content: the file's bytes as
// stored, with Range support.
func (s *Server) fileContent(w http.ResponseWriter, r *http.Request) {
	id, f := s.pathFile(w, r)
	if f == nil {
		return
	}
	file, err := s.sp.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, r, noSuchFile(id)) // deleted meanwhile
		return
	}
	if err != nil {
		writeError(w, r, s.storageError("open file", err))
		return
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		writeError(w, r, s.storageError("open file", err))
		return
	}
	if !fi.Mode().IsRegular() {
		writeError(w, r, noSuchFile(id))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if cd := mime.FormatMediaType("attachment", map[string]string{"filename": f.obj.Filename}); cd != "" {
		w.Header().Set("Content-Disposition", cd)
	}
	if f.succeeded {
		w.Header().Set("Content-Length", strconv.FormatInt(f.obj.Bytes, 10))
		if _, err := batch.CopySucceeded(w, file); err != nil {
			s.log.Warn("output file cut short", "file", id, "err", err)
		}
		return
	}
	http.ServeContent(w, r, "", fi.ModTime(), file)
}

// succeededSizes remembers the size of the succeeded lines of each batch
// output served, by the output's size and time, so listing files does not
// read every output each time.
type succeededSizes struct {
	mu sync.Mutex
	m  map[string]succeededSize
}

type succeededSize struct {
	size, succeeded int64
	mod             time.Time
}

// size returns how many bytes the succeeded lines of the output at path
// (whose FileInfo is fi) take.
func (c *succeededSizes) size(sp *spool.Spool, path string, fi fs.FileInfo) (int64, error) {
	c.mu.Lock()
	e, ok := c.m[path]
	c.mu.Unlock()
	if ok && e.size == fi.Size() && e.mod.Equal(fi.ModTime()) {
		return e.succeeded, nil
	}
	f, err := sp.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := batch.CopySucceeded(io.Discard, f)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]succeededSize{}
	}
	c.m[path] = succeededSize{size: fi.Size(), succeeded: n, mod: fi.ModTime()}
	c.mu.Unlock()
	return n, nil
}

// batchObject is OpenAI's batch object.
type batchObject struct {
	ID               string       `json:"id"`
	Object           string       `json:"object"`
	Endpoint         string       `json:"endpoint"`
	Errors           *batchErrors `json:"errors"`
	InputFileID      string       `json:"input_file_id"`
	CompletionWindow string       `json:"completion_window"`
	Status           batch.State  `json:"status"`
	OutputFileID     *string      `json:"output_file_id"`
	ErrorFileID      *string      `json:"error_file_id"`
	CreatedAt        int64        `json:"created_at"`
	InProgressAt     *int64       `json:"in_progress_at"`
	ExpiresAt        *int64       `json:"expires_at"` // hopper never expires a batch
	FinalizingAt     *int64       `json:"finalizing_at"`
	CompletedAt      *int64       `json:"completed_at"`
	FailedAt         *int64       `json:"failed_at"`
	ExpiredAt        *int64       `json:"expired_at"`
	CancellingAt     *int64       `json:"cancelling_at"`
	CancelledAt      *int64       `json:"cancelled_at"`
	RequestCounts    struct {
		Total     int `json:"total"`
		Completed int `json:"completed"`
		Failed    int `json:"failed"`
	} `json:"request_counts"`
	Metadata json.RawMessage `json:"metadata"` // null when none
}

// batchErrors is why a batch was refused as a whole.
type batchErrors struct {
	Object string       `json:"object"`
	Data   []batchError `json:"data"`
}

// batchError is one entry of a batch object's errors.
type batchError struct {
	Code    string  `json:"code"`
	Line    *int    `json:"line"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
}

func toBatchObject(b *batch.Record) *batchObject {
	o := &batchObject{
		ID: b.ID, Object: "batch", Endpoint: b.Endpoint, InputFileID: b.InputFileID,
		CompletionWindow: b.CompletionWindow, Status: b.State,
		InProgressAt: unix(b.InProgressAt), FinalizingAt: unix(b.FinalizingAt), CompletedAt: unix(b.CompletedAt),
		FailedAt: unix(b.FailedAt), CancellingAt: unix(b.CancellingAt), CancelledAt: unix(b.CancelledAt),
		Metadata: b.Metadata,
	}
	if created := unix(&b.CreatedAt); created != nil {
		o.CreatedAt = *created
	}
	if o.Endpoint == "" {
		o.Endpoint = defaultBatchEndpoint
	}
	if o.CompletionWindow == "" {
		o.CompletionWindow = completionWindow
	}
	if o.InputFileID == "" {
		o.InputFileID = fileInPrefix + b.ID
	}
	if b.Output != "" && b.Done > 0 {
		id := fileOutPrefix + b.ID
		o.OutputFileID = &id
	}
	if b.ErrorsFile != "" {
		id := fileErrPrefix + b.ID
		o.ErrorFileID = &id
	}
	if len(b.Errors) > 0 {
		o.Errors = &batchErrors{Object: "list"}
		for _, be := range b.Errors {
			e := batchError{Code: be.Code, Message: be.Message}
			if be.Line > 0 {
				e.Line = &be.Line
			}
			o.Errors.Data = append(o.Errors.Data, e)
		}
	}
	o.RequestCounts.Total, o.RequestCounts.Completed, o.RequestCounts.Failed = b.Total, b.Done, b.Failed
	return o
}

// batchRequest is the body of POST /v1/batches.
type batchRequest struct {
	InputFileID      *string         `json:"input_file_id"`
	Endpoint         *string         `json:"endpoint"`
	CompletionWindow *string         `json:"completion_window"`
	Metadata         json.RawMessage `json:"metadata"`
}

// createBatch serves POST /v1/batches: it checks the uploaded file and
// queues it as batch batch_ID, answering the batch object (validating).
// The endpoint must be one hopper serves; lines may still name others of
// those (hopper does not require every line's url to match it).
func (s *Server) createBatch(w http.ResponseWriter, r *http.Request) {
	rb, e := s.readBody(w, r, 0)
	if e != nil {
		if e.status < 500 {
			e.oaType = "invalid_request_error"
		}
		writeError(w, r, e)
		return
	}
	defer rb.release()
	body := rb.data
	req, e := parseBatchRequest(body)
	if e != nil {
		writeError(w, r, e)
		return
	}
	meta, err := s.batches.File(*req.InputFileID)
	if e := s.objectError(err, noSuchFile, *req.InputFileID, "read file"); e != nil {
		writeError(w, r, e)
		return
	}
	if meta.Purpose != purposeBatch {
		writeError(w, r, oaError(http.StatusBadRequest, "", "file %s has purpose %q; a batch needs a file uploaded with purpose %q", meta.ID, meta.Purpose, purposeBatch))
		return
	}
	if e := s.checkBatchWebhooks(meta.ID); e != nil {
		writeError(w, r, e)
		return
	}
	var b *batch.Record
	submit := func(name string) *httpError {
		var err error
		b, err = s.batches.SubmitFile(meta.ID, batch.Options{
			Name:             name,
			Origin:           spool.OriginHTTP,
			Endpoint:         *req.Endpoint,
			CompletionWindow: *req.CompletionWindow,
			Metadata:         req.Metadata,
		})
		var refused *batch.RefusedError
		switch {
		case errors.As(err, &refused):
			return refusedBatch(refused)
		case errors.Is(err, spool.ErrNotFound):
			return noSuchFile(meta.ID) // deleted meanwhile
		case err != nil:
			return s.storageError("submit batch", err)
		}
		return nil
	}
	newName := func() string { return "batch_" + s.sp.NewID() }
	// The SDKs send an Idempotency-Key and retry a create whose answer was
	// lost: the retry gets the batch the first request made.
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if len(key) > MaxKeyLen {
			writeError(w, r, oaError(http.StatusBadRequest, "", "the idempotency key is %d bytes; at most %d are allowed", len(key), MaxKeyLen))
			return
		}
		_, replayed, e := s.idempotent("POST /v1/batches\x00"+key, bodyHash(body), "batch", newName, submit,
			func(id string) (bool, error) {
				var err error
				b, err = s.batches.Get(id)
				if errors.Is(err, spool.ErrNotFound) {
					return false, nil
				}
				return err == nil, err
			})
		if e != nil {
			if e.oaType == "" && e.status < 500 {
				e.oaType = "invalid_request_error"
			}
			writeError(w, r, e)
			return
		}
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
			writeObject(w, r, toBatchObject(b))
			return
		}
	} else if e := submit(newName()); e != nil {
		writeError(w, r, e)
		return
	}
	s.log.Info("batch queued", "batch", b.ID, "file", meta.ID, "remote", r.RemoteAddr)
	writeObject(w, r, toBatchObject(b))
}

// parseBatchRequest decodes and checks the body of POST /v1/batches, in
// the order OpenAI checks it.
func parseBatchRequest(body []byte) (*batchRequest, *httpError) {
	var req batchRequest
	if err := json.Unmarshal(body, &req); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return nil, oaError(http.StatusBadRequest, "", "invalid type for '%s': expected %s, got %s", ute.Field, ute.Type, ute.Value)
		}
		return nil, oaError(http.StatusBadRequest, "", "the request body is not a JSON object: %v", err)
	}
	missing := func(field string) *httpError {
		return oaError(http.StatusBadRequest, "", "missing required parameter: '%s'", field)
	}
	switch {
	case req.InputFileID == nil || *req.InputFileID == "":
		return nil, missing("input_file_id")
	case req.Endpoint == nil || *req.Endpoint == "":
		return nil, missing("endpoint")
	case req.CompletionWindow == nil || *req.CompletionWindow == "":
		return nil, missing("completion_window")
	case !slices.Contains(batch.URLs(), *req.Endpoint):
		return nil, oaError(http.StatusBadRequest, "", "invalid value for 'endpoint': %q is not served; use one of %s",
			*req.Endpoint, strings.Join(batch.URLs(), ", "))
	case *req.CompletionWindow != completionWindow:
		return nil, oaError(http.StatusBadRequest, "", "invalid value for 'completion_window': %q; the only window is %q",
			*req.CompletionWindow, completionWindow)
	}
	md, e := checkMetadata(req.Metadata)
	if e != nil {
		return nil, e
	}
	req.Metadata = md
	return &req, nil
}

// checkMetadata checks metadata as OpenAI does (at most 16 pairs of
// strings, keys up to 64 characters, values up to 512) and returns it
// compacted, or nil for none.
func checkMetadata(raw json.RawMessage) (json.RawMessage, *httpError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, oaError(http.StatusBadRequest, "", "invalid value for 'metadata': give an object of string values")
	}
	if len(m) > maxMetadataPairs {
		return nil, oaError(http.StatusBadRequest, "", "invalid value for 'metadata': %d pairs, at most %d are allowed", len(m), maxMetadataPairs)
	}
	for k, v := range m {
		if utf8.RuneCountInString(k) > maxMetadataKey || utf8.RuneCountInString(v) > maxMetadataValue {
			return nil, oaError(http.StatusBadRequest, "", "invalid value for 'metadata': keys may have up to %d characters and values up to %d (key %q)",
				maxMetadataKey, maxMetadataValue, k)
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, oaError(http.StatusBadRequest, "", "invalid value for 'metadata': %v", err)
	}
	return data, nil
}

// refusedBatch answers a batch file the spool refused (a custom_id used
// twice, or no lines), with the code of the first problem.
func refusedBatch(refused *batch.RefusedError) *httpError {
	return oaError(http.StatusBadRequest, refused.Errors[0].Code, "%s", refused.Error())
}

// getBatch serves GET /v1/batches/{id}.
func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, err := s.batches.Get(id)
	if e := s.objectError(err, noSuchBatch, id, "read batch"); e != nil {
		writeError(w, r, e)
		return
	}
	writeObject(w, r, toBatchObject(b))
}

// listBatches serves GET /v1/batches?after=&limit=20: every batch, newest
// first, HTTP and dropped alike.
func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) {
	batches, err := s.batches.List()
	if err != nil && batches == nil {
		writeError(w, r, s.storageError("list batches", err))
		return
	}
	if err != nil {
		s.log.Warn("some batch records cannot be read; they are left out of the list", "err", err)
	}
	slices.Reverse(batches)
	objs := make([]*batchObject, len(batches))
	for i, b := range batches {
		objs[i] = toBatchObject(b)
	}
	l, e := paginate(r, objs, func(o *batchObject) string { return o.ID }, defaultBatchLimit, maxBatchLimit)
	if e != nil {
		writeError(w, r, e)
		return
	}
	writeObject(w, r, l)
}

// cancelBatch serves POST /v1/batches/{id}/cancel: the runner is asked to
// cancel the batch, which is answered as cancelling (cancelled once the
// runner has written what had ended). A batch that already ended is 409,
// as OpenAI answers.
func (s *Server) cancelBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, err := s.batches.Cancel(id)
	switch {
	case errors.Is(err, spool.ErrNotFound):
		writeError(w, r, noSuchBatch(id))
		return
	case errors.Is(err, batch.ErrEnded):
		e := oaError(http.StatusConflict, "", "Cannot cancel a batch with status '%s'.", b.State)
		// The official SDKs retry 409 unless told it will not change.
		e.header = http.Header{"X-Should-Retry": {"false"}}
		writeError(w, r, e)
		return
	case err != nil:
		writeError(w, r, s.storageError("cancel batch", err))
		return
	}
	s.log.Info("batch cancel requested", "batch", b.ID, "remote", r.RemoteAddr)
	writeObject(w, r, toBatchObject(b))
}
