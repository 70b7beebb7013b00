package httpfront

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hopper-dev/hopper/spool"
)

// Fallback look intervals: the watcher is only a wake-up, so every waiter
// also looks now and then in case an event was lost (another host on a
// shared spool, an overflowed kernel queue), and often when there is no
// watcher at all.
const (
	fallbackWatched   = time.Second
	fallbackUnwatched = 50 * time.Millisecond
)

// hub turns fsnotify events on cur/, deferred/, done/ and failed/ into
// wake-ups for the requests waiting on one job, and reports records
// landing in done/ and failed/. Its run goroutine owns the watcher; the
// subscriber table is shared under mu.
type hub struct {
	w        *fsnotify.Watcher // nil when watching is unavailable
	fallback time.Duration
	landed   func(dir, id string)
	log      *slog.Logger

	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newHub(sp *spool.Spool, log *slog.Logger, landed func(dir, id string)) *hub {
	h := &hub{fallback: fallbackWatched, landed: landed, log: log, subs: map[string]map[chan struct{}]struct{}{}}
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err == nil {
		for _, d := range []string{spool.DirCur, spool.DirDeferred, spool.DirDone, spool.DirFailed} {
			if err = w.Add(filepath.Join(sp.Path(), d)); err != nil {
				break
			}
		}
		if err != nil {
			w.Close()
		}
	}
	if err != nil {
		log.Warn("cannot watch the spool; waiting requests will poll instead", "err", err)
		h.fallback = fallbackUnwatched
		return h
	}
	h.w = w
	return h
}

// run delivers events until ctx ends, then closes the watcher.
func (h *hub) run(ctx context.Context) {
	if h.w == nil {
		<-ctx.Done()
		return
	}
	defer h.w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-h.w.Events:
			if !ok {
				return
			}
			h.event(ev)
		case err, ok := <-h.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				h.log.Warn("spool watcher overflowed; waking every waiter")
			} else {
				h.log.Warn("spool watcher", "err", err)
			}
			h.wakeAll()
		}
	}
}

func (h *hub) event(ev fsnotify.Event) {
	base := filepath.Base(ev.Name)
	if strings.HasPrefix(base, ".") {
		return
	}
	id := base
	for _, ext := range []string{".json", ".out", ".cancel"} {
		if s, ok := strings.CutSuffix(base, ext); ok {
			id = s
			break
		}
	}
	dir := filepath.Base(filepath.Dir(ev.Name))
	if (dir == spool.DirDone || dir == spool.DirFailed) && ev.Has(fsnotify.Create) && strings.HasSuffix(base, ".json") && h.landed != nil {
		h.landed(dir, id)
	}
	h.wake(id)
}

// subscribe returns a channel that receives (coalesced) a value whenever
// something happens to job id's files, and the function that unsubscribes.
func (h *hub) subscribe(id string) (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	h.mu.Lock()
	m := h.subs[id]
	if m == nil {
		m = map[chan struct{}]struct{}{}
		h.subs[id] = m
	}
	m[c] = struct{}{}
	h.mu.Unlock()
	return c, func() {
		h.mu.Lock()
		delete(h.subs[id], c)
		if len(h.subs[id]) == 0 {
			delete(h.subs, id)
		}
		h.mu.Unlock()
	}
}

func (h *hub) wake(id string) {
	h.mu.Lock()
	for c := range h.subs[id] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
}

func (h *hub) wakeAll() {
	h.mu.Lock()
	for _, m := range h.subs {
		for c := range m {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
	h.mu.Unlock()
}

// follow waits for job id to finish and returns its record. With lines set
// it relays each line of the job's live output (cur/ID.out) as it is
// written, from the first. When an attempt's output ends without the job
// finishing (the runner deferred it to run again, or restarted it),
// newAttempt is called if set: an error from it stops follow; otherwise
// the next attempt's output is relayed in turn. follow returns an error
// wrapping spool.ErrNotFound if the job disappears, and ctx's error when
// ctx ends.
func (s *Server) follow(ctx context.Context, id string, lines func([]byte) error, newAttempt func() error) (*spool.Record, error) {
	wake, unsubscribe := s.hub.subscribe(id)
	defer unsubscribe()
	t := &tail{root: s.sp.Root(), name: spool.DirCur + "/" + id + ".out", fn: lines}
	defer t.close()
	timer := time.NewTimer(s.hub.fallback)
	defer timer.Stop()
	for {
		if lines != nil && t.f == nil {
			t.open()
		}
		// Look for the end before reading, so the last lines written
		// before it are still read below.
		rec, err := s.finished(id)
		if err != nil {
			return nil, err
		}
		if t.f != nil {
			if err := t.drain(); err != nil {
				return nil, err
			}
		}
		if rec != nil {
			return rec, nil
		}
		if t.f != nil && t.ended() {
			if err := t.drain(); err != nil {
				return nil, err
			}
			t.close()
			// The job may have finished since the look above: its output
			// goes only after its record has landed.
			if rec, err := s.finished(id); rec != nil || err != nil {
				return rec, err
			}
			if newAttempt != nil {
				if err := newAttempt(); err != nil {
					return nil, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		case <-timer.C:
		}
		timer.Reset(s.hub.fallback)
	}
}

// finished returns job id's record if it is done or failed, nil if it is
// not yet, and an error wrapping spool.ErrNotFound if it is nowhere.
func (s *Server) finished(id string) (*spool.Record, error) {
	look := func() (*spool.Record, error) {
		for _, d := range []string{spool.DirDone, spool.DirFailed} {
			rec, err := s.readRecord(d, id)
			if err == nil || !errors.Is(err, fs.ErrNotExist) {
				return rec, err
			}
		}
		return nil, nil
	}
	if rec, err := look(); rec != nil || err != nil {
		return rec, err
	}
	if _, err := s.sp.Find(id); err != nil {
		// It may have moved between the two looks.
		if rec, lerr := look(); rec != nil || lerr != nil {
			return rec, lerr
		}
		return nil, err
	}
	return nil, nil
}

func (s *Server) readRecord(dir, id string) (*spool.Record, error) {
	data, err := s.sp.Root().ReadFile(dir + "/" + id + ".json")
	if err != nil {
		return nil, err
	}
	return spool.ParseRecord(data)
}

// tail reads an output file line by line as it grows.
type tail struct {
	root    *os.Root
	name    string
	fn      func([]byte) error
	f       *os.File
	rd      *bufio.Reader
	partial []byte
	read    int64 // bytes of f consumed
}

func (t *tail) open() {
	f, err := t.root.Open(t.name)
	if err != nil {
		return
	}
	t.f, t.rd, t.partial, t.read = f, bufio.NewReaderSize(f, 64<<10), nil, 0
}

func (t *tail) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// drain delivers every complete line written so far.
func (t *tail) drain() error {
	for {
		line, err := t.rd.ReadBytes('\n')
		t.read += int64(len(line))
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				t.partial = append(t.partial, line...)
				return nil
			}
			if len(t.partial) > 0 {
				line = append(t.partial, line...)
				t.partial = nil
			}
			line = bytes.TrimRight(line, "\r\n")
			if len(line) > 0 {
				if err := t.fn(line); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ended reports whether the open file is no longer the job's output: it
// was removed, replaced by the next attempt's, or truncated for it.
func (t *tail) ended() bool {
	cur, err := t.root.Lstat(t.name)
	if err != nil {
		return true
	}
	open, err := t.f.Stat()
	if err != nil {
		return true
	}
	return !os.SameFile(cur, open) || open.Size() < t.read
}
