package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"
)

// FileMeta describes a file uploaded for batches (OpenAI's /v1/files):
// files/ID.json beside its bytes, files/ID.jsonl.
type FileMeta struct {
	ID        string    `json:"id"`
	Filename  string    `json:"filename"`
	Purpose   string    `json:"purpose"`
	Bytes     int64     `json:"bytes"`
	CreatedAt time.Time `json:"created_at"`
}

// FilePrefix starts the ID of every uploaded file, as OpenAI's do.
const FilePrefix = "file-"

// ErrTooLarge means an upload is over its size limit.
var ErrTooLarge = errors.New("too large")

// PutFile stores an upload: its bytes (at most limit) in files/ID.jsonl and
// its description in files/ID.json, each written in tmp/ and renamed into
// place, the bytes first.
func (s *Spool) PutFile(r io.Reader, filename, purpose string, limit int64) (*FileMeta, error) {
	meta := &FileMeta{ID: FilePrefix + s.NewID(), Filename: filename, Purpose: purpose, CreatedAt: s.now().UTC()}
	t, err := s.createPending(DirTmp, "upload", 1<<20)
	if err != nil {
		return nil, fmt.Errorf("store file: %w", err)
	}
	defer t.discard()
	n, err := io.Copy(t, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("store file: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("the file is over the limit of %d bytes: %w", limit, ErrTooLarge)
	}
	meta.Bytes = n
	if err := t.commit(DirFiles, meta.ID+".jsonl", s.opts.Fsync, true); err != nil {
		return nil, fmt.Errorf("store file: %w", err)
	}
	data, err := marshalDoc(meta)
	if err != nil {
		return nil, err
	}
	if err := s.writeFile(DirFiles, meta.ID+".json", data, s.opts.Fsync, false); err != nil {
		_ = s.root.Remove(DirFiles + "/" + meta.ID + ".jsonl")
		return nil, fmt.Errorf("store file: %w", err)
	}
	return meta, nil
}

// File returns an uploaded file's description, or an error wrapping
// ErrNotFound.
func (s *Spool) File(id string) (*FileMeta, error) {
	if !strings.HasPrefix(id, FilePrefix) || !ValidID(id) {
		return nil, notFoundf("no file %q (uploaded files are named file-…)", id)
	}
	data, err := s.root.ReadFile(DirFiles + "/" + id + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFoundf("no file %s", id)
	}
	if err != nil {
		return nil, err
	}
	var m FileMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("files/%s.json: %w", id, err)
	}
	m.ID = id
	return &m, nil
}

// FilePath is the path, relative to the spool, of an uploaded file's bytes.
func FilePath(id string) string { return DirFiles + "/" + id + ".jsonl" }

// ListFiles returns every uploaded file, oldest first.
func (s *Spool) ListFiles() ([]*FileMeta, error) {
	entries, err := fs.ReadDir(s.root.FS(), DirFiles)
	if err != nil {
		return nil, fmt.Errorf("list files: %w", err)
	}
	var out []*FileMeta
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			if m, err := s.File(id); err == nil {
				out = append(out, m)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteFile removes an uploaded file. A batch made from it keeps its own
// link to the bytes.
func (s *Spool) DeleteFile(id string) error {
	if _, err := s.File(id); err != nil {
		return err
	}
	if err := s.root.Remove(DirFiles + "/" + id + ".json"); err != nil {
		return fmt.Errorf("delete file %s: %w", id, err)
	}
	_ = s.root.Remove(DirFiles + "/" + id + ".jsonl")
	return nil
}
