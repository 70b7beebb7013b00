package ollamatest

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"
)

// forever is how Ollama stores a negative keep_alive.
const forever = time.Duration(math.MaxInt64)

// defaultKeepAlive is Ollama's OLLAMA_KEEP_ALIVE default.
const defaultKeepAlive = 5 * time.Minute

// use is one request's hold on a load of its model, from acquire to
// release: Ollama's reference on a runner, and maybe one of its slots.
type use struct {
	st      *modelState
	slots   chan struct{} // the load's slots
	serving bool          // the request holds one of them
}

// pendingLoad is a request in Ollama's pending queue
// (Scheduler.pendingReqCh): one that found its model not loaded, or loaded
// with other runner options.
type pendingLoad struct{ st *modelState }

// acquire gets the request a load of its model made with opts, as Ollama's
// Scheduler.GetRunner does, and with serve then waits for one of the load's
// slots, as Ollama's runner does before a completion or an embedding. keep
// is the request's keep_alive. On success the caller must call release.
func (s *Server) acquire(ctx context.Context, st *modelState, keep time.Duration, opts runnerOptions, serve bool) (*use, error) {
	s.mu.Lock()
	s.waiting++
	s.mu.Unlock()
	u, err := s.attach(ctx, st, keep, opts, serve)
	if err != nil || !serve || u.serving {
		return u, err
	}
	select {
	case u.slots <- struct{}{}:
	case <-ctx.Done():
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
		s.release(u)
		return nil, ctx.Err()
	}
	s.mu.Lock()
	u.serving = true
	s.serveLocked(st, 1)
	s.waiting--
	s.mu.Unlock()
	return u, nil
}

// attach is Ollama's scheduling of one request. A request whose model is
// resident with the same runner options (needsReload false) uses that load
// at once, even while a reload or an eviction waits for the load's requests
// to end; any other joins the pending queue, whose head alone may reload,
// evict or load, one request at a time, as Scheduler.processPending does.
// With serve, attach takes a free slot if there is one.
func (s *Server) attach(ctx context.Context, st *modelState, keep time.Duration, opts runnerOptions, serve bool) (*use, error) {
	var p *pendingLoad
	// awaited is s.unloads when the head asked a busy model to go: like
	// processPending, it then waits for an unload before it looks again.
	awaited := -1
	s.mu.Lock()
	for {
		s.expireLocked(s.cfg.now())
		switch {
		case st.loading:
			// Ollama's needsReload waits for the runner to finish loading.
		case p == nil && st.resident && !st.opts.needsReload(opts):
			u := s.attachLocked(st, keep, serve)
			s.mu.Unlock()
			return u, nil
		case p == nil:
			p = &pendingLoad{st}
			s.pending = append(s.pending, p)
			continue
		case s.pending[0] != p:
			// Ollama schedules one pending request at a time.
		case st.resident && !st.opts.needsReload(opts):
			s.dequeueLocked(p)
			u := s.attachLocked(st, keep, serve)
			s.mu.Unlock()
			return u, nil
		case awaited == s.unloads:
			// An unload was asked for and has not happened yet.
		case st.resident:
			// A reload: the load goes when its last request ends.
			if s.retireLocked(st) {
				continue
			}
			awaited = s.unloads
		case s.residentLocked() < s.cfg.maxLoaded:
			s.dequeueLocked(p)
			return s.load(ctx, st, keep, opts, serve)
		default:
			v := s.victimLocked()
			if v == nil {
				break // all are loading
			}
			if s.retireLocked(v) {
				continue
			}
			awaited = s.unloads
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			s.mu.Lock()
			if p != nil {
				s.dequeueLocked(p)
			}
			s.waiting--
			s.mu.Unlock()
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
}

// load loads the model for a request that has left the pending queue and
// attaches the request to the new load. It is called with s.mu held and
// returns with it released.
func (s *Server) load(ctx context.Context, st *modelState, keep time.Duration, opts runnerOptions, serve bool) (*use, error) {
	st.loading, st.opts, st.session, st.retire = true, opts, sessionFor(keep), false
	st.expires = s.cfg.now().Add(st.session)
	s.mu.Unlock()
	err := s.wait(ctx, s.cfg.loadDelay)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.broadcastLocked()
	st.loading = false
	if err != nil {
		st.retire = false
		s.waiting--
		return nil, err
	}
	st.resident = true
	st.loads++
	s.loads++
	st.slots = make(chan struct{}, st.parallel(s.cfg.parallel))
	return s.attachLocked(st, keep, serve), nil
}

// attachLocked makes the request a user of the model's current load, as
// Ollama's useLoadedRunner does, and with serve gives it a free slot if
// there is one (acquire waits for one otherwise).
func (s *Server) attachLocked(st *modelState, keep time.Duration, serve bool) *use {
	st.refs++
	if keep != keepUnset {
		st.session = keep
	}
	u := &use{st: st, slots: st.slots}
	if serve {
		select {
		case u.slots <- struct{}{}:
			u.serving = true
			s.serveLocked(st, 1)
		default:
			return u
		}
	}
	s.waiting--
	return u
}

// serveLocked counts d more requests holding a slot of st.
func (s *Server) serveLocked(st *modelState, d int) {
	if st.serving == 0 {
		s.modelsRunning++
	}
	st.serving += d
	s.running += d
	if st.serving == 0 {
		s.modelsRunning--
	}
	s.maxRunning = max(s.maxRunning, s.running)
	s.maxModelsRunning = max(s.maxModelsRunning, s.modelsRunning)
}

// release ends a request's use of its model. When it was the load's last
// request, the model stays resident for the request's keep_alive, or is
// unloaded at once for keep_alive 0 or when it was to be retired.
func (s *Server) release(u *use) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := u.st
	if u.serving {
		<-u.slots // never blocks: the request holds a token
		s.serveLocked(st, -1)
	}
	st.refs--
	switch {
	case st.refs > 0:
	case st.session == 0 || st.retire:
		s.unloadLocked(st)
	default:
		st.expires = s.cfg.now().Add(st.session)
	}
	s.broadcastLocked()
}

// unload is Ollama's expireRunner: an idle model goes now, a busy one when
// its requests end.
func (s *Server) unload(st *modelState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retireLocked(st)
}

// retireLocked unloads the model now if no request uses it and reports
// true, or marks it to be unloaded when its last request ends, as Ollama
// expires a runner (sessionDuration 0).
func (s *Server) retireLocked(st *modelState) bool {
	if st.refs > 0 || st.loading {
		st.retire = true
		return false
	}
	s.unloadLocked(st)
	return true
}

// unloadLocked unloads a resident model.
func (s *Server) unloadLocked(st *modelState) {
	if !st.resident {
		return
	}
	st.resident, st.retire = false, false
	s.unloads++
	s.broadcastLocked()
}

func (s *Server) dequeueLocked(p *pendingLoad) {
	if i := slices.Index(s.pending, p); i >= 0 {
		s.pending = slices.Delete(s.pending, i, i+1)
	}
	s.broadcastLocked()
}

// expireLocked unloads idle models whose keep_alive has run out.
func (s *Server) expireLocked(now time.Time) {
	for _, st := range s.models {
		if st.resident && st.refs == 0 && !now.Before(st.expires) {
			s.unloadLocked(st)
		}
	}
}

func (s *Server) residentLocked() int {
	n := 0
	for _, st := range s.models {
		if st.resident || st.loading {
			n++
		}
	}
	return n
}

// victimLocked picks the model to unload to make room as Ollama's
// findRunnerToUnload does: sorted by keep_alive, then name, the first idle
// one, or if none is idle the first, which then goes when its requests end.
func (s *Server) victimLocked() *modelState {
	var loaded []*modelState
	for _, st := range s.models {
		if st.resident {
			loaded = append(loaded, st)
		}
	}
	slices.SortFunc(loaded, func(a, b *modelState) int {
		return cmp.Or(cmp.Compare(a.session, b.session), cmp.Compare(a.key, b.key))
	})
	for _, st := range loaded {
		if st.refs == 0 {
			return st
		}
	}
	if len(loaded) == 0 {
		return nil // all are loading
	}
	return loaded[0]
}

// needsReload reports whether a load made with r cannot serve a request
// that wants other runner options, as Ollama's runnerRef.needsReload
// decides: any api.Runner field differs, except that a negative num_gpu
// asked for matches any.
func (r runnerOptions) needsReload(want runnerOptions) bool {
	if want.numGPU < 0 {
		r.numGPU, want.numGPU = -1, -1
	}
	return r != want
}

func (s *Server) broadcastLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait sleeps for d unless ctx ends first.
func (s *Server) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pause is the wait before each token.
func (s *Server) pause(ctx context.Context) error {
	s.mu.Lock()
	d := s.tokenDelay
	s.mu.Unlock()
	return s.wait(ctx, d)
}
