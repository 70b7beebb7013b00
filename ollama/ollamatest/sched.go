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

// acquire waits for the model's request slot, then makes it resident,
// loading it (and evicting another) if needed. keep is the request's
// keep_alive. On success the caller must call release.
func (s *Server) acquire(ctx context.Context, st *modelState, keep time.Duration) error {
	select {
	case st.slot <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		s.mu.Lock()
		now := s.cfg.now()
		s.expireLocked(now)
		st.session = keep
		if st.resident {
			st.busy = true
			s.mu.Unlock()
			return nil
		}
		if s.residentLocked() < s.cfg.maxLoaded {
			st.loading = true
			st.expires = now.Add(keep)
			s.mu.Unlock()
			break
		}
		if v := s.victimLocked(); v != nil {
			v.resident = false
			s.mu.Unlock()
			continue
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			<-st.slot
			return ctx.Err()
		}
	}
	err := s.wait(ctx, s.cfg.loadDelay)
	s.mu.Lock()
	st.loading = false
	if err == nil {
		st.resident, st.busy = true, true
		st.loads++
		s.loads++
	} else {
		st.unloadWhenIdle = false
	}
	s.broadcastLocked()
	s.mu.Unlock()
	if err != nil {
		<-st.slot
	}
	return err
}

// release ends a request on the model: it stays resident for the request's
// keep_alive, or is unloaded at once for keep_alive 0.
func (s *Server) release(st *modelState) {
	s.mu.Lock()
	st.busy = false
	if st.session == 0 || st.unloadWhenIdle {
		st.resident, st.unloadWhenIdle = false, false
	} else {
		st.expires = s.cfg.now().Add(st.session)
	}
	s.broadcastLocked()
	s.mu.Unlock()
	<-st.slot
}

// unload is Ollama's expireRunner: an idle model goes now, a busy one when
// its request ends.
func (s *Server) unload(st *modelState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.busy || st.loading {
		st.unloadWhenIdle = true
		return
	}
	st.resident = false
	s.broadcastLocked()
}

// expireLocked unloads idle models whose keep_alive has run out.
func (s *Server) expireLocked(now time.Time) {
	for _, st := range s.models {
		if st.resident && !st.busy && !now.Before(st.expires) {
			st.resident = false
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

// victimLocked picks the model to evict as Ollama's findRunnerToUnload does:
// sorted by keep_alive, then name, the first idle one.
func (s *Server) victimLocked() *modelState {
	var idle []*modelState
	for _, st := range s.models {
		if st.resident && !st.busy && !st.loading {
			idle = append(idle, st)
		}
	}
	if len(idle) == 0 {
		return nil
	}
	return slices.MinFunc(idle, func(a, b *modelState) int {
		return cmp.Or(cmp.Compare(a.session, b.session), cmp.Compare(a.key, b.key))
	})
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
