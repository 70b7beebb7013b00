package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// pending is a file being written under a dot name in a staging directory,
// invisible until commit renames it into place; discard removes it unless
// it was committed. It is the spool's one durable write: job files,
// records, batch output, uploads and every StateDir's files go through it.
type pending struct {
	s     *Spool
	stage string // the directory it is written in
	name  string // its dot name there
	f     *os.File
	w     *bufio.Writer // nil: writes go straight to f
	done  bool
}

const fileCreate = os.O_WRONLY | os.O_CREATE | os.O_EXCL

// createPending creates a dot-named file in stage for what (the name it
// will have, or a word saying what it is), with exactly FileMode. A buf
// above zero buffers writes that many bytes at a time.
func (s *Spool) createPending(stage, what string, buf int) (*pending, error) {
	name := "." + what + "." + s.ids.next()
	f, err := s.openAt(stage, name, fileCreate)
	if err != nil {
		return nil, err
	}
	p := &pending{s: s, stage: stage, name: name, f: f}
	if buf > 0 {
		p.w = bufio.NewWriterSize(f, buf)
	}
	return p, nil
}

// stageFor is where a file bound for dir is written. Records in cur/ are
// staged beside themselves: a rename within one directory is the least
// work for the filesystem, on the hot path. Recover removes a dot-named
// leftover there. So are hopper's runtime state in .hopper/ and the files
// of every StateDir, which never show in the queue's directories.
// Everything else is staged in tmp/, by the maildir rule.
func stageFor(dir string) string {
	if dir == DirCur || dir == DirState || strings.HasPrefix(dir, DirState+"/") {
		return dir
	}
	return DirTmp
}

func (p *pending) Write(b []byte) (int, error) {
	if p.w != nil {
		return p.w.Write(b)
	}
	return p.f.Write(b)
}

// commitFile flushes and closes the file, fsynced first when sync is set,
// and renames it to dir/name: over a file already there with replace,
// otherwise failing with fs.ErrExist. It does not fsync dir.
func (p *pending) commitFile(dir, name string, sync, replace bool) error {
	var err error
	if p.w != nil {
		err = p.w.Flush()
	}
	if err == nil && sync {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	if err != nil {
		return err
	}
	if replace {
		err = p.s.replace(p.stage, p.name, dir, name)
	} else {
		err = p.s.move(p.stage, p.name, dir, name)
	}
	if err != nil {
		return err
	}
	p.done = true
	return nil
}

// commit is commitFile, then, when sync is set, an fsync of dir so the
// rename survives power loss.
func (p *pending) commit(dir, name string, sync, replace bool) error {
	if err := p.commitFile(dir, name, sync, replace); err != nil {
		return err
	}
	if sync {
		return p.s.syncDir(dir)
	}
	return nil
}

// discard removes the file unless it was committed. It is safe after
// commit, and twice.
func (p *pending) discard() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	if !p.done {
		_ = p.s.removeAt(p.stage, p.name)
		p.done = true
	}
}

// writeFile writes data to dir/name atomically: it is staged (stageFor),
// fsynced when sync is set, and renamed into place. With replace false the
// rename never overwrites (fs.ErrExist); with replace true it atomically
// replaces an existing file. With sync set the directory is fsynced too.
func (s *Spool) writeFile(dir, name string, data []byte, sync, replace bool) error {
	p, err := s.createPending(stageFor(dir), name, 0)
	if err != nil {
		return err
	}
	defer p.discard()
	if _, err := p.Write(data); err != nil {
		return err
	}
	return p.commit(dir, name, sync, replace)
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

// syncDir fsyncs one of the spool's directories (or a StateDir) so a
// rename into it survives power loss.
func (s *Spool) syncDir(dir string) error {
	f, err := s.dir(dir)
	if err != nil {
		return fmt.Errorf("sync %s/: %w", dir, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s/: %w", dir, err)
	}
	return nil
}

// moveSync moves a file and, with Options.Fsync, fsyncs the destination
// directory.
func (s *Spool) moveSync(fromDir, from, toDir, to string) error {
	return s.syncAfter(toDir, s.move(fromDir, from, toDir, to))
}

// syncAfter returns err, the error of a change to dir's entries; if there
// was none, it fsyncs dir with Options.Fsync.
func (s *Spool) syncAfter(dir string, err error) error {
	if err != nil || !s.opts.Fsync {
		return err
	}
	return s.syncDir(dir)
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
