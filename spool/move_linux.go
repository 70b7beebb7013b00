package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// move renames fromDir/from to toDir/to without ever replacing a file:
// renameat2(RENAME_NOREPLACE) on the spool's open directory handles, so
// neither name is resolved through a symlink. It returns an error wrapping
// ErrGone when the source is missing and fs.ErrExist when the target is taken.
func (s *Spool) move(fromDir, from, toDir, to string) error {
	fd, err := s.dirFD(fromDir)
	if err != nil {
		return fmt.Errorf("move %s/%s: %w", fromDir, from, err)
	}
	td, err := s.dirFD(toDir)
	if err != nil {
		return fmt.Errorf("move %s/%s to %s/: %w", fromDir, from, toDir, err)
	}
	if !plainName(from) || !plainName(to) {
		return fmt.Errorf("move %s/%s to %s/%s: not file names", fromDir, from, toDir, to)
	}
	err = unix.Renameat2(fd, from, td, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// The filesystem cannot do RENAME_NOREPLACE: check, then rename.
		// Only racing writers of the same name can slip through the gap.
		if s.exists(toDir, to) {
			err = unix.EEXIST
		} else {
			err = unix.Renameat(fd, from, td, to)
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("move %s/%s: %w", fromDir, from, ErrGone)
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("move %s/%s to %s/%s: %w", fromDir, from, toDir, to, fs.ErrExist)
	}
	return &os.LinkError{Op: "rename", Old: fromDir + "/" + from, New: toDir + "/" + to, Err: err}
}

// link gives fromDir/from a second name, toDir/to, without replacing a file
// (linkat(2) on the directory handles; fs.ErrExist if the name is taken).
func (s *Spool) link(fromDir, from, toDir, to string) error {
	fd, okf := s.dirs[fromDir]
	td, okt := s.dirs[toDir]
	if !okf || !okt || !plainName(from) || !plainName(to) {
		return fmt.Errorf("link %s/%s to %s/%s: not files in spool directories", fromDir, from, toDir, to)
	}
	err := unix.Linkat(int(fd.Fd()), from, int(td.Fd()), to, 0)
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("link %s/%s to %s/%s: %w", fromDir, from, toDir, to, fs.ErrExist)
	}
	if err != nil {
		return &os.LinkError{Op: "link", Old: fromDir + "/" + from, New: toDir + "/" + to, Err: err}
	}
	return nil
}

// syncAll flushes the whole filesystem the spool is on (syncfs(2)): one
// call for the thousands of files a batch expansion writes, instead of an
// fsync each.
func (s *Spool) syncAll() error {
	return unix.Syncfs(int(s.dirs[DirNew].Fd()))
}
