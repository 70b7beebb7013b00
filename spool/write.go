package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// writeFile writes data to dir/name atomically: it is staged in tmp/,
// fsynced when sync is set, and renamed into place. With replace false the
// rename never overwrites (fs.ErrExist); with replace true it atomically
// replaces an existing file. With sync set the directory is fsynced too.
func (s *Spool) writeFile(dir, name string, data []byte, sync, replace bool) error {
	// Records in cur/ are staged beside themselves: a rename within one
	// directory is the least work for the filesystem, on the hot path.
	// Recover removes a dot-named leftover there. So is hopper's runtime
	// state in .hopper/, which never shows in the queue's directories.
	// Everything else is staged in tmp/, by the maildir rule.
	stage := DirTmp
	if dir == DirCur || dir == DirState {
		stage = dir
	}
	tmp := "." + name + "." + s.ids.next()
	f, err := s.openAt(stage, tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.removeAt(stage, tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if replace {
		err = s.replace(stage, tmp, dir, name)
	} else {
		err = s.move(stage, tmp, dir, name)
	}
	if err != nil {
		return err
	}
	ok = true
	if sync {
		return s.syncDir(dir)
	}
	return nil
}

// replace renames fromDir/from over toDir/to atomically.
func (s *Spool) replace(fromDir, from, toDir, to string) error {
	fd, err := s.dirFD(fromDir)
	if err != nil {
		return err
	}
	td, err := s.dirFD(toDir)
	if err != nil {
		return err
	}
	if !plainName(from) || !plainName(to) {
		return fmt.Errorf("rename %s/%s to %s/%s: not file names", fromDir, from, toDir, to)
	}
	if err := unix.Renameat(fd, from, td, to); err != nil {
		return &os.LinkError{Op: "rename", Old: fromDir + "/" + from, New: toDir + "/" + to, Err: err}
	}
	return nil
}

// syncDir fsyncs one of the spool's directories so a rename into it survives
// power loss.
func (s *Spool) syncDir(dir string) error {
	f, ok := s.dirs[dir]
	if !ok {
		return fmt.Errorf("sync %s: not a spool directory", dir)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s/: %w", dir, err)
	}
	return nil
}

// moveSync moves a file and, with Options.Fsync, fsyncs the destination
// directory.
func (s *Spool) moveSync(fromDir, from, toDir, to string) error {
	if err := s.move(fromDir, from, toDir, to); err != nil {
		return err
	}
	if s.opts.Fsync {
		return s.syncDir(toDir)
	}
	return nil
}

// plainName reports whether name is one file name rather than a path: the
// *at system calls on the spool's directory handles would resolve a path,
// ".." included, outside the spool.
func plainName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// exists reports whether dir/name exists (as anything). An error other
// than "no such file" (EMFILE, EIO) counts as existing: look again later.
func (s *Spool) exists(dir, name string) bool {
	_, err := s.statAt(dir, name)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
