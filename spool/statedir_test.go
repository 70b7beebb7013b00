package spool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestStateDir(t *testing.T) {
	s := newSpool(t, func(o *Options) { o.Fsync = true })
	d := s.StateDir("outbox/pending")

	t.Run("ReadsOfADirectoryNotMadeFindNothing", func(t *testing.T) {
		if names, err := d.Names(); names != nil || err != nil {
			t.Errorf("Names: got %q, %v; want nothing", names, err)
		}
		if _, err := d.ReadFile("a.json"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadFile: got %v, want fs.ErrNotExist", err)
		}
	})
	if err := d.Make(); err != nil {
		t.Fatal(err)
	}
	if got, want := d.Path(), filepath.Join(s.Path(), ".hopper", "outbox", "pending"); got != want {
		t.Errorf("Path: got %s, want %s", got, want)
	}
	t.Run("WriteFileReplacesAndCreateDoesNot", func(t *testing.T) {
		for _, data := range []string{"one\n", "two\n"} {
			if err := d.WriteFile("a.json", []byte(data), true); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.Create("a.json", []byte("three\n"), true); !errors.Is(err, fs.ErrExist) {
			t.Errorf("Create over a file: got %v, want fs.ErrExist", err)
		}
		if err := d.Create("b.json", []byte("bee\n"), true); err != nil {
			t.Errorf("Create: %v", err)
		}
		if err := d.Sync(); err != nil {
			t.Error(err)
		}
		if got, err := d.ReadFile("a.json"); string(got) != "two\n" || err != nil {
			t.Errorf("a.json: got %q, %v; want the second write", got, err)
		}
		fi, err := d.Stat("a.json")
		if err != nil || fi.Mode().Perm() != s.opts.FileMode {
			t.Errorf("Stat: got %v, %v; want mode %v", fi, err, s.opts.FileMode)
		}
	})
	t.Run("NamesLeaveOutTemporaryFiles", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(d.Path(), ".a.json.tmp"), nil, 0o640); err != nil {
			t.Fatal(err)
		}
		if names, err := d.Names(); !slices.Equal(names, []string{"a.json", "b.json"}) || err != nil {
			t.Errorf("Names: got %q, %v; want a.json, b.json", names, err)
		}
	})
	t.Run("MoveAndRemove", func(t *testing.T) {
		failed := s.StateDir("outbox/failed")
		if err := failed.Make(); err != nil {
			t.Fatal(err)
		}
		if err := d.Move("b.json", failed, "b.json"); err != nil {
			t.Fatal(err)
		}
		if err := d.Move("b.json", failed, "b.json"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Move of a file gone: got %v, want fs.ErrNotExist", err)
		}
		if err := failed.Remove("b.json"); err != nil {
			t.Error(err)
		}
		if err := failed.Remove("b.json"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Remove of a file gone: got %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("RemoveStaleRemovesOldTemporaryFilesOnly", func(t *testing.T) {
		old := time.Now().Add(-2 * time.Hour)
		for _, name := range []string{".a.json.tmp", "a.json"} {
			if err := os.Chtimes(filepath.Join(d.Path(), name), old, old); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d.Path(), ".fresh"), nil, 0o640); err != nil {
			t.Fatal(err)
		}
		if n, err := d.RemoveStale(time.Now().Add(-time.Hour)); n != 1 || err != nil {
			t.Errorf("RemoveStale: got %d, %v; want 1", n, err)
		}
		entries, _ := os.ReadDir(d.Path())
		var left []string
		for _, e := range entries {
			left = append(left, e.Name())
		}
		if !slices.Equal(left, []string{".fresh", "a.json"}) {
			t.Errorf("left: got %q, want .fresh and a.json", left)
		}
	})
	t.Run("NamesAreFileNamesOnly", func(t *testing.T) {
		for _, name := range []string{"../../new/x.json", "a/b", "..", ""} {
			if err := d.WriteFile(name, []byte("x"), false); err == nil {
				t.Errorf("WriteFile(%q): no error", name)
			}
			if _, err := d.ReadFile(name); err == nil {
				t.Errorf("ReadFile(%q): no error", name)
			}
			if err := d.Remove(name); err == nil {
				t.Errorf("Remove(%q): no error", name)
			}
		}
		if err := s.StateDir("../new").Make(); err == nil {
			t.Error("StateDir(../new).Make: no error")
		}
	})
}
