package spool_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hopper-dev/hopper/spool"
)

func TestWriteFileAtomicBesideTheSpool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conf", "hopper.yaml")
	if err := spool.WriteFileAtomic(path, []byte("a: 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := spool.WriteFileAtomic(path, []byte("a: 2\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "a: 2\n" {
		t.Fatalf("read %q, %v; want the second write", data, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, %v; want 0640", fi.Mode(), err)
	}
	boom := errors.New("boom")
	err := spool.WriteAtomic(path, 0o640, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the writer's error", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "a: 2\n" {
		t.Fatalf("a failed write left %q", data)
	}
	if names, _ := os.ReadDir(filepath.Dir(path)); len(names) != 1 {
		t.Fatalf("a failed write left %d files, want 1", len(names))
	}
}
