package httpfront

import (
	"context"
	"errors"
	"log/slog"
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
	w        *spool.StateWatch // nil when watching is unavailable
	fallback time.Duration
	landed   func(id string)
	log      *slog.Logger

	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
}

func newHub(sp *spool.Spool, log *slog.Logger, landed func(id string)) *hub {
	h := &hub{fallback: fallbackWatched, landed: landed, log: log, subs: map[string]map[chan struct{}]struct{}{}}
	w, err := sp.WatchStates(spool.DirCur, spool.DirDeferred, spool.DirDone, spool.DirFailed)
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
	h.w.Run(ctx, h.event, h.failed)
}

// failed wakes every waiter when the watcher lost events or failed.
func (h *hub) failed(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		h.log.Warn("spool watcher overflowed; waking every waiter")
	} else {
		h.log.Warn("spool watcher", "err", err)
	}
	h.wakeAll()
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
		h.landed(id)
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

// follow waits for job id to finish and returns its record (the spool's
// FollowWith, woken by the hub). With lines set it relays each line of the
// job's live output (cur/ID.out) as it is written, from the first. When an
// attempt's output ends without the job finishing (the runner deferred it
// to run again, or restarted it), newAttempt is called if set: an error
// from it stops follow; otherwise the next attempt's output is relayed in
// turn. follow returns an error wrapping spool.ErrNotFound if the job
// disappears, and ctx's error when ctx ends.
func (s *Server) follow(ctx context.Context, id string, lines func([]byte) error, newAttempt func() error) (*spool.Record, error) {
	wake, unsubscribe := s.hub.subscribe(id)
	defer unsubscribe()
	return s.sp.FollowWith(ctx, id, spool.FollowOptions{Lines: lines, NewAttempt: newAttempt, Wake: wake, Poll: s.hub.fallback})
}
