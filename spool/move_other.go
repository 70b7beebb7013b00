//go:build !linux

package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// move renames fromDir/from to toDir/to without replacing a file. Off Linux
// there is no RENAME_NOREPLACE: it checks, then renames.
func (s *Spool) move(fromDir, from, toDir, to string) error {
	if !plainName(from) || !plainName(to) {
		return fmt.Errorf("move %s/%s to %s/%s: not file names", fromDir, from, toDir, to)
	}
	if s.exists(toDir, to) {
		return fmt.Errorf("move %s/%s to %s/%s: %w", fromDir, from, toDir, to, fs.ErrExist)
	}
	err := s.root.Rename(fromDir+"/"+from, toDir+"/"+to)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("move %s/%s: %w", fromDir, from, ErrGone)
	}
	return err
}

// link gives fromDir/from a second name, toDir/to, without replacing a file.
func (s *Spool) link(fromDir, from, toDir, to string) error {
	if !plainName(from) || !plainName(to) {
		return fmt.Errorf("link %s/%s to %s/%s: not files in spool directories", fromDir, from, toDir, to)
	}
	err := s.root.Link(fromDir+"/"+from, toDir+"/"+to)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("link %s/%s to %s/%s: %w", fromDir, from, toDir, to, fs.ErrExist)
	}
	return err
}

// syncAll flushes what the spool has written: off Linux, sync(2).
func (s *Spool) syncAll() error {
	syscall.Sync()
	return nil
}
