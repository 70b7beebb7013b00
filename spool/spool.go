package spool

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// The spool's directories and marker files, relative to its root.
const (
	DirTmp      = "tmp"
	DirNew      = "new"
	DirCur      = "cur"
	DirDeferred = "deferred"
	DirHold     = "hold"
	DirDone     = "done"
	DirFailed   = "failed"
	DirBatches  = "batches"
	DirFiles    = "files"
	DirState    = ".hopper"
	FilePaused  = "PAUSED"
)

// Dirs lists every directory of a spool in the order Init creates them.
var Dirs = []string{DirTmp, DirNew, DirCur, DirDeferred, DirHold, DirDone, DirFailed, DirBatches, DirFiles, DirState}

// Errors callers test for.
var (
	// ErrGone means a file was moved or removed by someone else first.
	ErrGone = errors.New("gone: taken by someone else")
	// ErrNotFound means no job with that ID is anywhere in the spool.
	ErrNotFound = errors.New("no such job")
	// ErrWrongState means a job is not in a state the operation applies
	// to (Retry of a job that did not fail, Hold of a running job…).
	ErrWrongState = errors.New("the job is not in a state that allows this")
	// ErrLocked means another process holds the runner lock.
	ErrLocked = errors.New("spool is locked by another runner")
	// ErrNotInitialized means the directory is not a spool yet.
	ErrNotInitialized = errors.New("not a spool")
	// ErrNotEmpty means Init was pointed at a directory that holds other
	// files and is not a spool.
	ErrNotEmpty = errors.New("not empty and not a hopper spool")
)

// notFound is an error that says what was not found in its own words and
// is ErrNotFound to errors.Is.
type notFound struct{ msg string }

func (e *notFound) Error() string        { return e.msg }
func (e *notFound) Is(target error) bool { return target == ErrNotFound }

func notFoundf(format string, args ...any) error {
	return &notFound{msg: fmt.Sprintf(format, args...)}
}

// Options set a spool's permissions, durability and limits.
type Options struct {
	DirMode    fs.FileMode      // directories; default 0750
	FileMode   fs.FileMode      // files; default 0640
	Fsync      bool             // fsync what recovery depends on
	MaxJobSize int64            // bytes; larger job files are bad input
	Now        func() time.Time // the clock; default time.Now
	// Force lets Init create a spool inside a directory that holds other
	// files and is not a spool yet. Without it Init refuses, so a mistyped
	// --spool (/, /var, $HOME) never gets new/, cur/, tmp/… created in it,
	// nor its tmp/ cleaned by recovery.
	Force bool
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{DirMode: 0o750, FileMode: 0o640, Fsync: true, MaxJobSize: 32 << 20, Now: time.Now}
}

func (o *Options) fill() {
	d := DefaultOptions()
	if o.DirMode == 0 {
		o.DirMode = d.DirMode
	}
	if o.FileMode == 0 {
		o.FileMode = d.FileMode
	}
	if o.MaxJobSize <= 0 {
		o.MaxJobSize = d.MaxJobSize
	}
	if o.Now == nil {
		o.Now = d.Now
	}
}

// Spool is an open spool directory. Its methods are safe for concurrent use.
type Spool struct {
	path string
	root *os.Root
	opts Options
	ids  *idGen
	dirs map[string]*os.File // open directories, for the *at calls and fsync
	// stateDirs holds the StateDirs' directories, opened on first use;
	// nil once closed.
	stateMu   sync.Mutex
	stateDirs map[string]*os.File
	// umask is the process's umask at Open: files created with a mode it
	// narrows are chmodded to FileMode.
	umask uint32
	// key is the spool's secret (.hopper/secret), for lineKey.
	key []byte
	// ended is told of jobs the spool ended without the runner.
	ended func(r *Record, previous State)
}

// OnEnded sets f to be called when the spool itself ends a job the runner
// does not run: Cancel of a job that is queued, deferred or held; the queued
// lines of a canceled batch (CancelQueuedLines); a batch line refused when
// its batch is expanded (previous is "" then: it was never queued). f is
// called once the final record is written and before it moves (for a
// refused line, once it is in failed/), with the state the job left. hopper
// emits the job's event there. Set it before using the Spool.
func (s *Spool) OnEnded(f func(r *Record, previous State)) { s.ended = f }

// Init creates the spool's directories (those missing) with Options.DirMode
// and opens it.
func Init(path string, o Options) (*Spool, error) {
	o.fill()
	// The umask narrows Mkdir's mode; the directories Init creates get
	// exactly DirMode. Existing ones are left as they are.
	var create []string
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(path, o.DirMode); err != nil {
			return nil, fmt.Errorf("init spool: %w", err)
		}
		create = append(create, path)
	} else if err := checkForeign(path, o.Force); err != nil {
		return nil, err
	}
	for _, d := range Dirs {
		p := filepath.Join(path, d)
		err := os.Mkdir(p, o.DirMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("init spool: %w", err)
		}
		create = append(create, p)
	}
	for _, p := range create {
		if err := os.Chmod(p, o.DirMode); err != nil {
			return nil, fmt.Errorf("init spool: %w", err)
		}
	}
	return Open(path, o)
}

// stateError is an ErrWrongState that says which state and why.
type stateError struct{ msg string }

func (e *stateError) Error() string { return e.msg }
func (e *stateError) Unwrap() error { return ErrWrongState }

func wrongState(format string, args ...any) error {
	return &stateError{msg: fmt.Sprintf(format, args...)}
}

// secretFile holds the spool's secret: random bytes that sign what only
// hopper may write (batch lines' keys). Readable by hopper's user only.
const secretFile = "secret"

func (s *Spool) secret() []byte { return s.key }

// Sign returns an HMAC of msg under the spool's secret, for purpose (which
// keeps one kind of proof from passing for another): what a process with
// the spool can vouch for and nobody else can forge, such as the front's
// session cookies.
func (s *Spool) Sign(purpose, msg string) string {
	m := hmac.New(sha256.New, s.secret())
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// loadSecret reads .hopper/secret, creating it on first use.
func (s *Spool) loadSecret() ([]byte, error) {
	for range 2 {
		data, err := s.root.ReadFile(DirState + "/" + secretFile)
		if err == nil && len(data) >= 32 {
			return data, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read %s/%s: %w", DirState, secretFile, err)
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		err = s.writeFile(DirState, secretFile, key, s.opts.Fsync, false)
		if err == nil {
			_ = s.root.Chmod(DirState+"/"+secretFile, 0o600)
			return key, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("write %s/%s: %w", DirState, secretFile, err)
		}
	}
	return nil, fmt.Errorf("read %s/%s: too short", DirState, secretFile)
}

// checkForeign refuses an existing directory that holds files and has no
// .hopper/ (hopper's marker: every spool has it), unless forced.
func checkForeign(path string, force bool) error {
	if force {
		return nil
	}
	if fi, err := os.Stat(filepath.Join(path, DirState)); err == nil && fi.IsDir() {
		return nil // a spool already
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("init spool: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("init spool %s: %w", path, err)
	}
	if len(names) == 0 {
		return nil
	}
	abs, _ := filepath.Abs(path)
	return fmt.Errorf("init spool %s: the directory holds files (%s, …) and has no %s/, so it is %w; hopper will not create new/, cur/, tmp/ … in it. Name an empty or new directory, or use --force if it really is meant to be the spool", abs, names[0], DirState, ErrNotEmpty)
}

// Open opens an existing spool. It fails with ErrNotInitialized when a
// directory is missing, and refuses directories on different filesystems,
// since moves between them would not be atomic renames.
func Open(path string, o Options) (*Spool, error) {
	o.fill()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open spool %s: %w (run 'hopper init' first)", abs, ErrNotInitialized)
		}
		return nil, fmt.Errorf("open spool: %w", err)
	}
	s := &Spool{path: abs, root: root, opts: o, ids: newIDGen(o.Now), dirs: map[string]*os.File{},
		stateDirs: map[string]*os.File{}, umask: currentUmask()}
	var dev uint64
	for i, d := range Dirs {
		fi, err := root.Stat(d)
		if d == DirFiles && errors.Is(err, fs.ErrNotExist) {
			// Spools made before uploads existed lack it: add it.
			if err = root.Mkdir(d, o.DirMode); err == nil || errors.Is(err, fs.ErrExist) {
				fi, err = root.Stat(d)
			}
		}
		if err != nil {
			s.Close()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("open spool %s: %s/ is missing: %w (run 'hopper init' first)", abs, d, ErrNotInitialized)
			}
			return nil, fmt.Errorf("open spool %s: %w", abs, err)
		}
		if !fi.IsDir() {
			s.Close()
			return nil, fmt.Errorf("open spool %s: %s is not a directory", abs, d)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			if i == 0 {
				dev = uint64(st.Dev)
			} else if uint64(st.Dev) != dev {
				s.Close()
				return nil, fmt.Errorf("open spool %s: %s/ is on a different filesystem from %s/; every spool directory must be on one filesystem so moves are atomic renames", abs, d, Dirs[0])
			}
		}
		f, err := root.Open(d)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("open spool %s: %w", abs, err)
		}
		s.dirs[d] = f
	}
	top, err := root.Open(".")
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open spool %s: %w", abs, err)
	}
	s.dirs["."] = top
	// A process that may not read or make the secret (a writer in the
	// spool's group running hopper ls) does without: only the runner,
	// which owns .hopper/, expands and claims batch lines.
	s.key, _ = s.loadSecret()
	return s, nil
}

// Close releases the spool's open directories.
func (s *Spool) Close() error {
	var errs []error
	for _, f := range s.dirs {
		errs = append(errs, f.Close())
	}
	s.dirs = nil
	s.stateMu.Lock()
	for _, f := range s.stateDirs {
		errs = append(errs, f.Close())
	}
	s.stateDirs = nil
	s.stateMu.Unlock()
	errs = append(errs, s.root.Close())
	return errors.Join(errs...)
}

// Path is the spool's absolute path.
func (s *Spool) Path() string { return s.path }

// Location is the path of rel, a file's name relative to the spool
// ("done/tickets.jsonl", as records and batch records give it), for a
// person or another program to open; hopper's packages go through the
// spool's verbs instead.
func (s *Spool) Location(rel string) string { return filepath.Join(s.path, filepath.FromSlash(rel)) }

// Options returns the options the spool was opened with.
func (s *Spool) Options() Options { return s.opts }

func (s *Spool) now() time.Time { return s.opts.Now() }

// Paused reports whether the PAUSED file exists.
func (s *Spool) Paused() bool {
	_, err := s.statAt(".", FilePaused)
	return err == nil
}

// Pause creates the PAUSED file; the runner then claims nothing new.
func (s *Spool) Pause() error {
	f, err := s.root.OpenFile(FilePaused, os.O_CREATE|os.O_WRONLY, s.opts.FileMode)
	if err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	return f.Close()
}

// Resume removes the PAUSED file.
func (s *Spool) Resume() error {
	if err := s.root.Remove(FilePaused); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("resume: %w", err)
	}
	return nil
}
