package spool

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"
)

// The verbs below are for the packages that keep files of their own in the
// spool's directories beside the jobs' (batch/: batches/, its lines in
// new/, its output in done/ and failed/). Directories are the spool's
// (Dirs); names are single file names, never followed through a symlink;
// a path is spool-relative, as the spool names its files (Open).

// ReadDir lists dir, one of Dirs, sorted by name.
func (s *Spool) ReadDir(dir string) ([]fs.DirEntry, error) { return fs.ReadDir(s.root.FS(), dir) }

// ReadFile reads a file of the spool by its path.
func (s *Spool) ReadFile(path string) ([]byte, error) { return s.root.ReadFile(path) }

// Stat describes a file of the spool by its path, following a symlink
// only within the spool.
func (s *Spool) Stat(path string) (fs.FileInfo, error) { return s.root.Stat(path) }

// Remove removes a file of the spool by its path.
func (s *Spool) Remove(path string) error { return s.root.Remove(path) }

// Exists reports whether dir/name exists (as anything). An error other
// than "no such file" (EMFILE, EIO) counts as existing: look again later.
func (s *Spool) Exists(dir, name string) bool { return s.exists(dir, name) }

// ChangeTime is when dir/name last changed (its ctime: for a file renamed
// into dir, when it arrived), or the zero time if it is gone.
func (s *Spool) ChangeTime(dir, name string) time.Time { return s.changeTime(dir, name) }

// OpenRegular opens a file of the spool for reading if it is a regular
// file: a FIFO or device put in its place is refused, not waited on.
func (s *Spool) OpenRegular(path string) (*os.File, error) {
	f, err := s.root.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}

// WriteFile writes data to dir/name with the one durable write, replacing
// a file there; with sync, and Options.Fsync, the file and dir are
// fsynced.
func (s *Spool) WriteFile(dir, name string, data []byte, sync bool) error {
	return s.writeFile(dir, name, data, sync && s.opts.Fsync, true)
}

// CreateFile is WriteFile for a file that must not exist yet: if dir/name
// does, it fails with fs.ErrExist and leaves it as it is.
func (s *Spool) CreateFile(dir, name string, data []byte, sync bool) error {
	return s.writeFile(dir, name, data, sync && s.opts.Fsync, false)
}

// Pending is a file being written in tmp/ under a dot name, invisible until
// Commit renames it into place: the durable write, streamed.
type Pending struct{ p *pending }

// NewPending creates a Pending for what (a word saying what it is),
// buffering writes buf bytes at a time when buf is above zero.
func (s *Spool) NewPending(what string, buf int) (*Pending, error) {
	p, err := s.createPending(DirTmp, what, buf)
	if err != nil {
		return nil, err
	}
	return &Pending{p}, nil
}

func (p *Pending) Write(b []byte) (int, error) { return p.p.Write(b) }

// Commit flushes and closes the file and renames it to dir/name: over a
// file there with replace, otherwise failing with fs.ErrExist. With sync,
// and Options.Fsync, the file is fsynced before and dir after.
func (p *Pending) Commit(dir, name string, sync, replace bool) error {
	return p.p.commit(dir, name, sync && p.p.s.opts.Fsync, replace)
}

// Discard removes the file unless it was committed; safe after Commit and
// twice.
func (p *Pending) Discard() { p.p.discard() }

// Move renames fromDir/from to toDir/to, never over a file (fs.ErrExist);
// ErrGone if from went first. With sync, and Options.Fsync, toDir is
// fsynced.
func (s *Spool) Move(fromDir, from, toDir, to string, sync bool) error {
	if sync {
		return s.moveSync(fromDir, from, toDir, to)
	}
	return s.move(fromDir, from, toDir, to)
}

// Link makes toDir/to a second name of fromDir/from (fs.ErrExist if it is
// taken), fsyncing toDir with Options.Fsync.
func (s *Spool) Link(fromDir, from, toDir, to string) error {
	return s.syncAfter(toDir, s.link(fromDir, from, toDir, to))
}

// SyncAll makes everything written so far durable, with Options.Fsync: one
// sync of the spool's filesystem, for many files written without one each.
func (s *Spool) SyncAll() error {
	if !s.opts.Fsync {
		return nil
	}
	return s.syncAll()
}

// Taken reports whether any job in the spool, in any state, is named id.
func (s *Spool) Taken(id string) bool { return s.taken(id) }

// UniqueName is stem with a generated ID appended: a valid plain job ID no
// job has (daily → daily.20261127T231005.123456Z-7f3a9c).
func (s *Spool) UniqueName(stem string) string { return s.uniqueName(stem) }

// LineKey is the proof, carried in a batch line's "batch_key", that hopper
// wrote job id as that line: an HMAC of the ID under the spool's secret
// (.hopper/secret), which only hopper's processes can read. Claim runs a
// file named like a line (LineSep) only when it carries it.
func (s *Spool) LineKey(id string) string {
	m := hmac.New(sha256.New, s.secret())
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Reject writes rec, a job that never ran, to failed/ without an fsync and
// tells OnEnded of told (what the event may say of it). A record already
// there was written, and told, before a crash: Reject leaves it.
func (s *Spool) Reject(rec, told *Record) error {
	data, err := rec.Marshal()
	if err != nil {
		return err
	}
	if err := s.writeFile(DirFailed, rec.ID+".json", data, false, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	if s.ended != nil {
		s.ended(told, "")
	}
	return nil
}

// NotFound is an error saying what is not there, that errors.Is finds to
// be ErrNotFound.
func NotFound(format string, args ...any) error { return notFoundf(format, args...) }

// IsHopperField reports whether a job field is one of hopper's own, never
// passed to the target.
func IsHopperField(k string) bool {
	for _, f := range hopperFields {
		if f == k {
			return true
		}
	}
	return false
}

// JSONError is the bad input that bytes which do not decode as a job give:
// what is wrong and where.
func JSONError(data []byte, err error) error { return jsonError(data, err) }

// Describe names a JSON value's type for an error message ("an object",
// "the string \"x\"").
func Describe(raw json.RawMessage) string { return describe(raw) }

// OwnLine reports whether new/ID.json is the batch line hopper wrote under
// that name (LineKey).
func (s *Spool) OwnLine(id string) bool { return s.ownLine(id) }
