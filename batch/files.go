package batch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/spool"
)

// File describes a file uploaded for batches (OpenAI's /v1/files):
// files/ID.json beside its bytes, files/ID.jsonl.
type File struct {
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
func (s *Store) PutFile(r io.Reader, filename, purpose string, limit int64) (*File, error) {
	meta := &File{ID: FilePrefix + s.sp.NewID(), Filename: filename, Purpose: purpose, CreatedAt: s.now().UTC()}
	t, err := s.sp.NewPending("upload", 1<<20)
	if err != nil {
		return nil, fmt.Errorf("store file: %w", err)
	}
	defer t.Discard()
	n, err := io.Copy(t, io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("store file: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("the file is over the limit of %d bytes: %w", limit, ErrTooLarge)
	}
	meta.Bytes = n
	if err := t.Commit(spool.DirFiles, meta.ID+".jsonl", true, true); err != nil {
		return nil, fmt.Errorf("store file: %w", err)
	}
	data, err := jsonfmt.MarshalIndent(meta)
	if err != nil {
		return nil, err
	}
	if err := s.sp.CreateFile(spool.DirFiles, meta.ID+".json", data, true); err != nil {
		_ = s.sp.Remove(spool.DirFiles + "/" + meta.ID + ".jsonl")
		return nil, fmt.Errorf("store file: %w", err)
	}
	return meta, nil
}

// File returns an uploaded file's description, or an error wrapping
// ErrNotFound.
func (s *Store) File(id string) (*File, error) {
	if !strings.HasPrefix(id, FilePrefix) || !spool.ValidID(id) {
		return nil, spool.NotFound("no file %q (uploaded files are named file-…)", id)
	}
	data, err := s.sp.ReadFile(spool.DirFiles + "/" + id + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, spool.NotFound("no file %s", id)
	}
	if err != nil {
		return nil, err
	}
	var m File
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("files/%s.json: %w", id, err)
	}
	m.ID = id
	return &m, nil
}

// FilePath is the path, relative to the spool, of an uploaded file's bytes.
func FilePath(id string) string { return spool.DirFiles + "/" + id + ".jsonl" }

// ListFiles returns every uploaded file, oldest first.
func (s *Store) ListFiles() ([]*File, error) {
	entries, err := s.sp.ReadDir(spool.DirFiles)
	if err != nil {
		return nil, fmt.Errorf("list files: %w", err)
	}
	var out []*File
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
func (s *Store) DeleteFile(id string) error {
	if _, err := s.File(id); err != nil {
		return err
	}
	if err := s.sp.Remove(spool.DirFiles + "/" + id + ".json"); err != nil {
		return fmt.Errorf("delete file %s: %w", id, err)
	}
	_ = s.sp.Remove(spool.DirFiles + "/" + id + ".jsonl")
	return nil
}
