package spool

import (
	"bufio"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// WriteFileAtomic writes data to path, a file beside the spool rather
// than in it (hopper.yaml, a sample hook, a test's model file), the way
// the spool writes its own: a temporary file in the same directory,
// fsynced, renamed over path. A reader sees the old file or the whole new
// one, never a part. The directory is made with mode 0750 if missing.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	return WriteAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteAtomic is WriteFileAtomic for content written by write, which gets
// a buffered writer on the temporary file; path is left as it was when
// write fails.
func WriteAtomic(path string, perm fs.FileMode, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := renameio.NewPendingFile(path, renameio.WithPermissions(perm))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	w := bufio.NewWriter(f)
	if err := write(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.CloseAtomicallyReplace()
}
