package spool

import (
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Open opens a file of the spool for reading, by its path relative to the
// spool as the spool names its files (a batch's Input, Output and
// ErrorsFile; batch.FilePath). It never reaches outside the spool.
func (s *Spool) Open(path string) (*os.File, error) { return s.root.Open(path) }

// Lstat describes a file of the spool by its path relative to the spool
// (as Open), without following a symlink.
func (s *Spool) Lstat(path string) (fs.FileInfo, error) { return s.root.Lstat(path) }

// CheckDir reports whether dir, one of Dirs, is still there and a
// directory.
func (s *Spool) CheckDir(dir string) error {
	fi, err := s.root.Stat(dir)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("%s is not a directory", dir)
	}
	return err
}

// QueuedAt is when job id arrived in new/ (the time its rename there set),
// and false if it is not in new/.
func (s *Spool) QueuedAt(id string) (time.Time, bool) {
	if !ValidID(id) {
		return time.Time{}, false
	}
	t := s.changeTime(DirNew, id+".json")
	return t, !t.IsZero()
}
