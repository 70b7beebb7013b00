package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The hot path (claim, record updates, finish) works on the descriptors of
// the spool's directories, opened once (Spool.dirs), with the *at system
// calls: one system call an operation, where os.Root would first open the
// directory again. Names are single path elements (plainName), so nothing
// resolves outside the directory.

// dir is the open handle of one of the spool's directories, or of a
// StateDir's (opened on first use and kept until Close).
func (s *Spool) dir(name string) (*os.File, error) {
	if f, ok := s.dirs[name]; ok {
		return f, nil
	}
	if !strings.HasPrefix(name, DirState+"/") || !fs.ValidPath(name) {
		return nil, fmt.Errorf("%s: not a spool directory", name)
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if f, ok := s.stateDirs[name]; ok {
		return f, nil
	}
	if s.stateDirs == nil {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrClosed)
	}
	f, err := s.root.Open(name)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s: not a directory", name)
	}
	s.stateDirs[name] = f
	return f, nil
}

// dirFD is the descriptor of one of the spool's directories (see dir).
func (s *Spool) dirFD(dir string) (int, error) {
	f, err := s.dir(dir)
	if err != nil {
		return -1, err
	}
	return int(f.Fd()), nil
}

// statAt is lstat of dir/name.
func (s *Spool) statAt(dir, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := s.dirFD(dir)
	if err != nil {
		return st, err
	}
	if !plainName(name) {
		return st, &fs.PathError{Op: "stat", Path: dir + "/" + name, Err: fs.ErrInvalid}
	}
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &fs.PathError{Op: "stat", Path: dir + "/" + name, Err: err}
	}
	return st, nil
}

// removeAt unlinks the file dir/name; a missing file is not an error.
func (s *Spool) removeAt(dir, name string) error {
	fd, err := s.dirFD(dir)
	if err != nil {
		return err
	}
	if !plainName(name) {
		return &fs.PathError{Op: "remove", Path: dir + "/" + name, Err: fs.ErrInvalid}
	}
	if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &fs.PathError{Op: "remove", Path: dir + "/" + name, Err: err}
	}
	return nil
}

// openAt opens dir/name, never following a symlink, and creates it with
// exactly the spool's FileMode when flags ask for O_CREAT.
func (s *Spool) openAt(dir, name string, flags int) (*os.File, error) {
	fd, err := s.dirFD(dir)
	if err != nil {
		return nil, err
	}
	if !plainName(name) {
		return nil, &fs.PathError{Op: "open", Path: dir + "/" + name, Err: fs.ErrInvalid}
	}
	perm := uint32(s.opts.FileMode.Perm())
	nfd, err := unix.Openat(fd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir + "/" + name, Err: err}
	}
	if flags&unix.O_CREAT != 0 && s.umask&perm != 0 {
		// The umask narrowed the mode; spool files get exactly FileMode.
		if err := unix.Fchmod(nfd, perm); err != nil {
			unix.Close(nfd)
			return nil, &fs.PathError{Op: "chmod", Path: dir + "/" + name, Err: err}
		}
	}
	return os.NewFile(uintptr(nfd), s.path+"/"+dir+"/"+name), nil
}

// currentUmask reads the process's umask (setting it back at once).
func currentUmask() uint32 {
	m := unix.Umask(0o22)
	unix.Umask(m)
	return uint32(m)
}

// names lists the names in one of the spool's directories, unsorted: the
// index orders jobs itself, and sorting 100,000 names at start is work for
// nothing.
func (s *Spool) names(dir string) ([]string, error) {
	f, err := s.root.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
