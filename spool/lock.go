package spool

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Lock is the single-runner lock, an flock on .hopper/runner.lock. The lock
// file says which process holds it.
type Lock struct {
	f *os.File
}

// Lock takes the runner lock without waiting, and writes into the lock file
// the process ID and one "target ..." line per target it serves. If another
// process holds it, the error wraps ErrLocked and names that process and
// the spool.
func (s *Spool) Lock(targets ...string) (*Lock, error) {
	name := DirState + "/runner.lock"
	f, err := s.root.OpenFile(name, os.O_RDWR|os.O_CREATE, s.opts.FileMode)
	if err != nil {
		return nil, fmt.Errorf("lock spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := s.root.ReadFile(name)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(holder)), "\n", ", ")), " ")
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("spool %s is already served by %s: %w; stop it first or use another --spool", s.path, who, ErrLocked)
		}
		return nil, fmt.Errorf("lock spool: %w", err)
	}
	info := fmt.Sprintf("pid %d\n", os.Getpid())
	for _, t := range targets {
		info += "target " + t + "\n"
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock. It is safe to call twice.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing releases the flock
	l.f = nil
	return err
}

// Served reports whether a process holds the runner lock now. It takes a
// shared lock for an instant to find out.
func (s *Spool) Served() bool {
	f, err := s.root.Open(DirState + "/runner.lock")
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// frontLock is the lock file a front process holds while it serves.
func frontLock(id string) string { return "front-" + id + ".lock" }

// HoldFront registers a front process: it holds an flock on
// .hopper/front-ID.lock until release, so the runner can tell whether the
// clients waiting on that front's connections (SubmitOptions.Waited) may
// still be there. release removes the file; a crashed front leaves it
// unlocked, which FrontAlive reads as gone.
func (s *Spool) HoldFront() (id string, release func(), err error) {
	id = s.ids.next()
	f, err := s.openAt(DirState, frontLock(id), os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", nil, fmt.Errorf("hold front: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return "", nil, fmt.Errorf("hold front: %w", err)
	}
	var once sync.Once
	return id, func() {
		once.Do(func() {
			_ = s.removeAt(DirState, frontLock(id))
			f.Close()
		})
	}, nil
}

// FrontAlive reports whether the front process id still holds its lock.
func (s *Spool) FrontAlive(id string) bool {
	if !plainName(frontLock(id)) {
		return false
	}
	f, err := s.openAt(DirState, frontLock(id), os.O_RDONLY)
	if err != nil {
		return false // released, or never held here
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	_ = s.removeAt(DirState, frontLock(id)) // a crashed front's leftover
	return false
}
