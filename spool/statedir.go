package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
)

// StateDir is a directory under .hopper/ where another package keeps state
// the spool knows nothing of (the hook outbox, the front's idempotency
// keys), with the spool's durable write and none of its own path handling:
// names are single file names, never followed through a symlink, and files
// get exactly Options.FileMode. Its methods are safe for concurrent use.
type StateDir struct {
	s   *Spool
	dir string // relative to the spool: .hopper/NAME
}

// StateDir returns the state directory .hopper/name (name may have several
// elements, as "outbox/pending"). It does no I/O: Make creates it; reads of
// a directory not made yet find nothing.
func (s *Spool) StateDir(name string) *StateDir {
	return &StateDir{s: s, dir: DirState + "/" + name}
}

// Path is the directory's absolute path, for a watcher.
func (d *StateDir) Path() string { return d.s.path + "/" + d.dir }

// Make creates the directory and its parents (with Options.DirMode) if
// missing. With Options.Fsync the parents are fsynced, so the directory
// survives power loss.
func (d *StateDir) Make() error {
	if !fs.ValidPath(d.dir) {
		return fmt.Errorf("make %s/: not a directory name", d.dir)
	}
	if err := d.s.root.MkdirAll(d.dir, d.s.opts.DirMode); err != nil {
		return fmt.Errorf("make %s/: %w", d.dir, err)
	}
	if !d.s.opts.Fsync {
		return nil
	}
	for p := path.Dir(d.dir); ; p = path.Dir(p) {
		if err := d.s.syncPath(p); err != nil {
			return err
		}
		if p == DirState {
			return nil
		}
	}
}

// syncPath fsyncs a directory of the spool by its path.
func (s *Spool) syncPath(p string) error {
	f, err := s.root.Open(p)
	if err != nil {
		return fmt.Errorf("sync %s/: %w", p, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s/: %w", p, err)
	}
	return nil
}

// WriteFile writes data to name atomically, replacing what is there: the
// spool's durable write, staged under a dot name in the same directory and
// fsynced before the rename when sync is set. The directory is not
// fsynced: call Sync once after writing (or moving) several files.
func (d *StateDir) WriteFile(name string, data []byte, sync bool) error {
	return d.write(name, data, sync, true)
}

// Create is WriteFile for a file that must not exist yet: if name is taken
// it fails with an error wrapping fs.ErrExist and leaves the file as it
// was. Two writers racing for one name never both win.
func (d *StateDir) Create(name string, data []byte, sync bool) error {
	return d.write(name, data, sync, false)
}

func (d *StateDir) write(name string, data []byte, sync, replace bool) error {
	p, err := d.s.createPending(d.dir, name, 0)
	if err != nil {
		return err
	}
	defer p.discard()
	if _, err := p.Write(data); err != nil {
		return err
	}
	return p.commitFile(d.dir, name, sync, replace)
}

// Sync fsyncs the directory, so the files written, moved and removed in it
// so far survive power loss.
func (d *StateDir) Sync() error { return d.s.syncDir(d.dir) }

// ReadFile returns the content of name.
func (d *StateDir) ReadFile(name string) ([]byte, error) {
	f, err := d.s.openAt(d.dir, name, os.O_RDONLY|syscall.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Stat describes name without following a symlink.
func (d *StateDir) Stat(name string) (fs.FileInfo, error) {
	p, err := d.path("stat", name)
	if err != nil {
		return nil, err
	}
	return d.s.root.Lstat(p)
}

// Names lists the files in the directory, sorted, leaving out dot names
// (writers' temporary files). A directory not made yet is empty.
func (d *StateDir) Names() ([]string, error) {
	names, err := d.s.names(d.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s/: %w", d.dir, err)
	}
	names = slices.DeleteFunc(names, func(n string) bool { return strings.HasPrefix(n, ".") })
	slices.Sort(names)
	return names, nil
}

// Remove removes name; an error wraps fs.ErrNotExist when it is not there.
func (d *StateDir) Remove(name string) error {
	p, err := d.path("remove", name)
	if err != nil {
		return err
	}
	return d.s.root.Remove(p)
}

// Move renames name to toName in the state directory to, replacing a file
// there. An error wraps fs.ErrNotExist when name is not there.
func (d *StateDir) Move(name string, to *StateDir, toName string) error {
	return d.s.replace(d.dir, name, to.dir, toName)
}

// OpenFile opens name with flag (os.O_RDWR|os.O_CREATE for a lock file,
// say), creating it with exactly Options.FileMode.
func (d *StateDir) OpenFile(name string, flag int) (*os.File, error) {
	return d.s.openAt(d.dir, name, flag)
}

// RemoveStale removes the dot-named files (what a writer that crashed left
// behind) last modified before cutoff, and returns how many it removed.
func (d *StateDir) RemoveStale(cutoff time.Time) (int, error) {
	return d.s.removeOlder(d.dir, cutoff, func(name string) bool { return strings.HasPrefix(name, ".") })
}

// removeOlder removes the files in dir that match and were last modified
// before cutoff, and returns how many it removed. One it cannot remove is
// left for the next time.
func (s *Spool) removeOlder(dir string, cutoff time.Time, match func(name string) bool) (int, error) {
	entries, err := fs.ReadDir(s.root.FS(), dir)
	if err != nil {
		return 0, fmt.Errorf("clean %s/: %w", dir, err)
	}
	n := 0
	for _, e := range entries {
		if !match(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.IsDir() || !fi.ModTime().Before(cutoff) {
			continue
		}
		if s.removeAt(dir, e.Name()) == nil {
			n++
		}
	}
	return n, nil
}

// path is name's path in the spool; op names the operation refused when
// name is not a single file name.
func (d *StateDir) path(op, name string) (string, error) {
	if !plainName(name) {
		return "", &fs.PathError{Op: op, Path: d.dir + "/" + name, Err: fs.ErrInvalid}
	}
	return d.dir + "/" + name, nil
}
