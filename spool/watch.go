package spool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// Settle is how long a file in new/ that does not parse must be left
	// unmodified before it is judged bad input: a writer that does not
	// rename into place (cat > new/x.json) may still be writing.
	Settle time.Duration
	// Rescan is how often new/ and deferred/ are listed again for files
	// the queue does not know (default 1m).
	Rescan time.Duration
	Logger *slog.Logger
}

// Watcher feeds a Queue from new/ and deferred/: a full scan first, then
// fsnotify events, and a full rescan whenever the kernel's event queue
// overflowed. The watcher is only a wake-up; the files are the truth.
type Watcher struct {
	s       *Spool
	q       *Queue
	o       WatchOptions
	fsw     *fsnotify.Watcher
	pending map[string]time.Time // new/ names that did not parse yet → when to look again
	warned  map[string]bool
}

// NewWatcher starts watching, then scans new/ and deferred/ into q, so that
// when it returns the queue is complete and nothing arriving later is
// missed. Call Run to keep the queue current.
func (s *Spool) NewWatcher(q *Queue, o WatchOptions) (*Watcher, error) {
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.Rescan <= 0 {
		o.Rescan = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	fsw, err := s.watchDirs(DirNew, DirDeferred)
	if err != nil {
		return nil, err
	}
	w := &Watcher{s: s, q: q, o: o, fsw: fsw, pending: map[string]time.Time{}, warned: map[string]bool{}}
	if err := w.scan(); err != nil {
		fsw.Close()
		return nil, err
	}
	return w, nil
}

// watchDirs starts an fsnotify watcher on the spool's directories dirs; the
// caller closes it.
func (s *Spool) watchDirs(dirs ...string) (*fsnotify.Watcher, error) {
	fsw, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return nil, fmt.Errorf("watch spool: %w", err)
	}
	for _, d := range dirs {
		if err := fsw.Add(filepath.Join(s.path, d)); err != nil {
			fsw.Close()
			return nil, fmt.Errorf("watch %s/: %w", d, err)
		}
	}
	return fsw, nil
}

// StateWatch is an fsnotify watcher on some of the spool's state
// directories, for a process that only wants to hear when their files
// change. Like the Watcher's, it is only a wake-up: the files are the
// truth.
type StateWatch struct {
	fsw *fsnotify.Watcher
}

// WatchStates starts watching the state directories dirs (DirCur,
// DirDone, …). Run delivers what happens in them; Close stops a watch that
// is never run.
func (s *Spool) WatchStates(dirs ...string) (*StateWatch, error) {
	fsw, err := s.watchDirs(dirs...)
	if err != nil {
		return nil, err
	}
	return &StateWatch{fsw: fsw}, nil
}

// Run calls event for every change to a file in the watched directories,
// and fail for every error the watcher reports (one wrapping
// fsnotify.ErrEventOverflow when events were lost), one call at a time,
// until ctx ends; then it closes the watch.
func (w *StateWatch) Run(ctx context.Context, event func(fsnotify.Event), fail func(error)) {
	defer w.fsw.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			event(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			fail(err)
		}
	}
}

// Close stops the watch.
func (w *StateWatch) Close() error { return w.fsw.Close() }

// Run applies events to the queue until ctx is done, then closes the
// watcher.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.fsw.Close()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescan := time.NewTicker(w.o.Rescan)
	defer rescan.Stop()
	ready := make(chan struct{})
	close(ready)
	for {
		w.resetTimer(timer)
		// Entries the start-up scan only listed are read a chunk at a
		// time between events, so events are never kept waiting long.
		var unread <-chan struct{}
		if w.q.HasUnread() {
			unread = ready
		}
		select {
		case <-ctx.Done():
			return nil
		case <-rescan.C:
			w.rescan()
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return nil
			}
			w.handle(ev)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return nil
			}
			w.handleError(err)
		case <-timer.C:
			w.recheck()
		case <-unread:
			for _, e := range w.q.Unread(256) {
				w.read(e.Name)
			}
		}
	}
}

// handleError rescans on an overflow of the kernel's event queue and logs
// anything else.
func (w *Watcher) handleError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.o.Logger.Warn("watcher overflowed; rescanning the spool")
		w.q.Reset()
		w.pending = map[string]time.Time{}
		if err := w.scan(); err != nil {
			w.o.Logger.Error("rescan failed", "err", err)
		}
		return
	}
	w.o.Logger.Error("watcher", "err", err)
}

// resetTimer arms the timer for the earliest pending recheck.
func (w *Watcher) resetTimer(t *time.Timer) {
	next := time.Hour
	now := time.Now()
	for _, at := range w.pending {
		if d := at.Sub(now); d < next {
			next = max(d, time.Millisecond)
		}
	}
	t.Reset(next)
}

func (w *Watcher) recheck() {
	now := time.Now()
	for name, at := range w.pending {
		if !at.After(now) {
			delete(w.pending, name)
			w.indexNew(name)
		}
	}
}

func (w *Watcher) handle(ev fsnotify.Event) {
	dir, name := filepath.Base(filepath.Dir(ev.Name)), filepath.Base(ev.Name)
	switch dir {
	case DirNew:
		switch {
		case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
			w.q.Remove(DirNew, name)
			delete(w.pending, name)
		case ev.Has(fsnotify.Create):
			w.indexNew(name)
		case ev.Has(fsnotify.Write):
			_, pending := w.pending[name]
			switch {
			case BatchCandidate(name):
				// A batch has no end a parser could see: wait until quiet.
				w.q.Remove(DirNew, name)
				w.pending[name] = time.Now().Add(w.o.Settle)
			case pending || w.q.Has(DirNew, name):
				// Written in place (cp, cat >): a job that parses now is
				// complete — a JSON object cannot be the start of a longer
				// one — so it is taken at once; otherwise look again once
				// it has been quiet. (fsnotify does not export inotify's
				// close-write event, which would say so directly.)
				w.q.Remove(DirNew, name)
				delete(w.pending, name)
				if !w.takeIfComplete(name) {
					w.pending[name] = time.Now().Add(w.o.Settle)
				}
			}
		}
	case DirDeferred:
		switch {
		case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
			w.q.Remove(DirDeferred, name)
		case ev.Has(fsnotify.Create):
			w.indexDeferred(name)
		}
	}
}

func (w *Watcher) scan() error {
	for _, d := range []string{DirNew, DirDeferred} {
		names, err := w.s.names(d)
		if err != nil {
			return fmt.Errorf("scan %s/: %w", d, err)
		}
		for _, name := range names {
			if d == DirNew {
				w.list(name)
			} else {
				w.indexDeferred(name)
			}
		}
	}
	return nil
}

// Candidate reports whether a name in new/ is a job file hopper should look
// at: not dot-named, ending in .json.
func Candidate(name string) bool {
	return !strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".json") && len(name) > len(".json")
}

// list indexes new/name at start from its name and ctime alone, without
// reading it: Unread, to be read in the background (read). A backlog of
// 100,000 jobs is then listed about as fast as ls -l lists it.
func (w *Watcher) list(name string) {
	if BatchCandidate(name) || !Candidate(name) {
		w.indexNew(name)
		return
	}
	st, err := w.s.statAt(DirNew, name)
	if err != nil {
		return // gone already
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		w.indexNew(name) // says why it is ignored
		return
	}
	e := Entry{Dir: DirNew, Name: name, Arrived: time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)), Unread: true}
	if !ValidID(strings.TrimSuffix(name, ".json")) {
		e.Bad, e.Unread = true, false // Claim quarantines it
	}
	w.q.Put(e)
}

// read reads an entry the start-up scan listed Unread and indexes it as it
// is, unless it was claimed or removed since.
func (w *Watcher) read(name string) {
	if !w.q.Has(DirNew, name) {
		return
	}
	w.q.Remove(DirNew, name)
	w.indexNew(name)
}

// indexNew looks at new/name and puts it in the queue, leaves it pending, or
// ignores it.
func (w *Watcher) indexNew(name string) {
	if BatchCandidate(name) {
		w.indexBatch(name)
		return
	}
	if !Candidate(name) || w.q.Has(DirNew, name) {
		return // not a job, or indexed already (a batch's line, put there as written)
	}
	fi, err := w.s.root.Lstat(DirNew + "/" + name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.lookAgain(name, err) // EMFILE, EIO: not gone
		}
		return
	}
	if !w.regular(name, fi) {
		return
	}
	e, err := w.s.inspect(name, fi)
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		if !errors.Is(err, fs.ErrNotExist) {
			w.lookAgain(name, err) // could not read it: not bad input
		}
		return
	}
	if err != nil {
		if time.Since(fi.ModTime()) < w.o.Settle {
			w.pending[name] = fi.ModTime().Add(w.o.Settle)
			return
		}
		e.Bad = true
	}
	if !ValidID(strings.TrimSuffix(name, ".json")) {
		e.Bad = true // Claim quarantines it
	}
	w.q.Put(e)
}

// quickParseLimit bounds the files parsed on every write event: a larger
// one waits for the settle time, so a big file written in many chunks is
// not read again for each.
const quickParseLimit = 1 << 20

// takeIfComplete indexes new/name if it parses as a job now, and reports
// whether it did.
func (w *Watcher) takeIfComplete(name string) bool {
	fi, err := w.s.root.Lstat(DirNew + "/" + name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > quickParseLimit || fi.Size() == 0 {
		return false
	}
	e, err := w.s.inspect(name, fi)
	if err != nil || e.Bad {
		return false
	}
	if !ValidID(strings.TrimSuffix(name, ".json")) {
		e.Bad = true
	}
	w.q.Put(e)
	return true
}

// retryRead is how soon a file that could not be looked at (too many open
// files, an I/O error) is looked at again.
const retryRead = time.Second

// lookAgain schedules another look at new/name after an error that says
// nothing about the file itself.
func (w *Watcher) lookAgain(name string, err error) {
	if _, ok := w.pending[name]; !ok {
		w.o.Logger.Warn("cannot look at new/"+name+" now; trying again", "err", err)
	}
	w.pending[name] = time.Now().Add(retryRead)
}

// rescan lists new/ and deferred/ again and indexes what the queue does not
// know, as Postfix's queue manager rescans its incoming queue: a file whose
// event was lost, or that could not be looked at when it came, is never
// stranded until a restart. It reads directory entries only; new files are
// read in the background.
func (w *Watcher) rescan() {
	for _, d := range []string{DirNew, DirDeferred} {
		names, err := w.s.names(d)
		if err != nil {
			w.o.Logger.Warn("rescan "+d+"/", "err", err)
			continue
		}
		for _, name := range names {
			if _, pending := w.pending[name]; (pending && d == DirNew) || w.q.Has(d, name) {
				continue
			}
			if d == DirNew {
				w.list(name)
			} else {
				w.indexDeferred(name)
			}
		}
	}
}

// indexBatch queues a batch file once it has been quiet for the settle
// time: a batch has no end a parser could see, so a writer still
// appending lines (cat >> new/x.jsonl) must not be cut short.
func (w *Watcher) indexBatch(name string) {
	fi, err := w.s.root.Lstat(DirNew + "/" + name)
	if err != nil {
		return
	}
	if !w.regular(name, fi) {
		return
	}
	if quiet := time.Since(fi.ModTime()); quiet < w.o.Settle {
		w.pending[name] = fi.ModTime().Add(w.o.Settle)
		return
	}
	w.q.PutBatch(Entry{Dir: DirNew, Name: name, Arrived: ctime(fi)})
}

// inspect reads new/name enough to index it: model and priority. An error
// means it does not parse (yet).
func (s *Spool) inspect(name string, fi fs.FileInfo) (Entry, error) {
	e := Entry{Dir: DirNew, Name: name, Arrived: ctime(fi)}
	data, tooBig, regular, err := s.readJobFile(DirNew, name)
	if err != nil {
		return e, err
	}
	if tooBig || !regular {
		e.Bad = true
		return e, nil
	}
	if isRecord(trimBOM(data)) {
		r, err := ParseRecord(trimBOM(data))
		if err != nil {
			return e, err
		}
		data = r.Job
	}
	j, err := ParseJob(data, s.opts.MaxJobSize)
	if err != nil {
		return e, err
	}
	e.Model, e.Priority, e.Function, e.Options = j.Model, j.Priority, j.Function, j.Body["options"]
	return e, nil
}

func (w *Watcher) indexDeferred(name string) {
	if !Candidate(name) {
		return
	}
	r, err := w.s.readRecord(DirDeferred, name)
	if err != nil {
		w.o.Logger.Warn("ignoring deferred/"+name, "err", err)
		return
	}
	e := Entry{Dir: DirDeferred, Name: name, Model: r.Model, Function: r.Function, Priority: r.Priority, Arrived: r.SubmittedAt}
	var job struct {
		Options json.RawMessage `json:"options"`
	}
	if json.Unmarshal(r.Job, &job) == nil {
		e.Options = job.Options
	}
	if r.NotBefore != nil {
		e.NotBefore = *r.NotBefore
	}
	w.q.Put(e)
}

// regular reports whether new/name, described by fi, is a regular file,
// warning once about a name that is not.
func (w *Watcher) regular(name string, fi fs.FileInfo) bool {
	if fi.Mode().IsRegular() {
		return true
	}
	if !w.warned[name] {
		w.warned[name] = true
		w.o.Logger.Warn("ignoring new/"+name+": not a regular file", "mode", fi.Mode().String())
	}
	return false
}
