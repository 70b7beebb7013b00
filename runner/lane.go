package runner

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"slices"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

// Lane drives one target: at most Parallel requests in flight, all of one
// load key. Its scheduling state is guarded by Runner.mu; the dispatcher
// reserves a slot when it picks a job for the lane, the job releases it
// when it ends.
type Lane struct {
	r   *Runner
	cfg TargetConfig
	log *slog.Logger

	// Guarded by Runner.mu.
	up         bool
	probing    bool
	refreshing bool // a background refresh is asking the target
	outages    int  // unavailable spells since the last job that succeeded
	inflight   int
	key        string            // load key in flight (or last run)
	resident   map[string]string // normalized model → load key it is loaded with
	digests    map[string]string // normalized model → digest, from /api/ps
	// installed are the models the target has, from /api/tags; nil when
	// not known.
	installed []string
	missing   map[string]missing // models the target answered "not found" for
	lastError string
	downSince time.Time
	// running holds the abort of every request in flight, so a lane that
	// goes down returns them to the queue at once rather than leaving them
	// to hang until their timeout on a target that does not answer.
	running   map[*job]context.CancelCauseFunc
	versionOf string
	stats     laneStats
}

// missing is a model a target answered "not found" for: its words, and
// when.
type missing struct {
	message string
	at      time.Time
}

// missingFor is how long a "not found" is believed of a target that does
// not list its models; one that does is believed until the model shows in
// its list.
const missingFor = 5 * time.Minute

// laneStats counts what a lane did since the start.
type laneStats struct {
	Done, Failed, Loads int
	LoadTime            time.Duration
}

func newLane(r *Runner, t TargetConfig) *Lane {
	return &Lane{
		r:        r,
		cfg:      t,
		log:      r.log.With("target", t.Name),
		up:       true,
		resident: map[string]string{},
		digests:  map[string]string{},
		missing:  map[string]missing{},
		running:  map[*job]context.CancelCauseFunc{},
	}
}

// matchGlob reports whether a model matches a target's models pattern.
func matchGlob(pattern, model string) (bool, error) {
	return path.Match(pattern, model)
}

// state is the lane as Pick sees it. The caller holds Runner.mu.
func (l *Lane) state() LaneState {
	st := LaneState{
		Name:      l.cfg.Name,
		Up:        l.up,
		Slots:     l.cfg.Parallel,
		InFlight:  l.inflight,
		Key:       l.key,
		Installed: l.installed,
		Models:    l.cfg.Models,
		Relay:     l.relayOf() != nil,
	}
	for _, k := range l.resident {
		st.Resident = append(st.Resident, k)
	}
	for m := range l.missing {
		st.Missing = append(st.Missing, m)
	}
	return st
}

// reserve takes a slot for a job of key. The caller holds Runner.mu.
func (l *Lane) reserve(key string) {
	l.inflight++
	l.key = key
	l.r.dirty.Store(true)
}

// release frees a slot and wakes the dispatcher. The caller holds
// Runner.mu.
func (l *Lane) release() {
	l.inflight--
	l.r.dirty.Store(true)
	l.r.signal()
}

// startLoad reports whether a job of key must load its model, and if so
// counts the load and takes the key as resident from now on, so the jobs
// that share the load do not count it again. The caller holds Runner.mu.
func (l *Lane) startLoad(key string) bool {
	model := ollama.KeyModel(key)
	if model == "" || l.resident[model] == key {
		return false
	}
	l.resident[model] = key
	delete(l.digests, model)
	l.stats.Loads++
	return true
}

// refresh asks the target which models it has loaded (/api/ps) and
// installed (/api/tags), within a few seconds. A target that does not
// answer is marked down.
func (l *Lane) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	running, err := l.cfg.Target.Running(ctx)
	var tags []ollama.Model
	tagsKnown := false
	if err == nil {
		if t, ok := l.cfg.Target.(tagger); ok {
			if tags, err = t.Tags(ctx); err == nil {
				tagsKnown = true
			}
		}
	}
	r := l.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil || errors.Is(err, context.DeadlineExceeded) {
			var unavailable *ollama.UnavailableError
			if errors.As(err, &unavailable) || errors.Is(err, context.DeadlineExceeded) {
				l.down(err)
			}
		}
		return
	}
	seen := map[string]bool{}
	for _, m := range running {
		model := ollama.NormalizeModel(m.Name)
		seen[model] = true
		if _, ok := l.resident[model]; !ok {
			l.resident[model] = model // loaded by someone else: default options
		}
		l.digests[model] = m.Digest
	}
	for model := range l.resident {
		if !seen[model] && !(l.inflight > 0 && ollama.KeyModel(l.key) == model) {
			delete(l.resident, model)
			delete(l.digests, model)
		}
	}
	if tagsKnown {
		l.installed = l.installed[:0]
		for _, m := range tags {
			model := ollama.NormalizeModel(m.Name)
			l.installed = append(l.installed, model)
			delete(l.missing, model) // pulled since
		}
	} else {
		now := r.cfg.Load().Now()
		for model, m := range l.missing {
			if now.Sub(m.at) > missingFor {
				delete(l.missing, model)
			}
		}
	}
	r.dirty.Store(true)
}

// down takes the lane out of dispatch until its target answers again, and
// starts probing it. The caller holds Runner.mu.
func (l *Lane) down(err error) {
	if err != nil {
		l.lastError = err.Error()
	}
	if l.up {
		l.up = false
		l.downSince = l.r.cfg.Load().Now()
		l.log.Warn("target unavailable; its lane stops until it answers", "err", err)
		if l.strands(err) {
			for _, abort := range l.running {
				abort(errTargetDown) // back in line with them
			}
		}
	}
	l.r.dirty.Store(true)
	if l.probing {
		return
	}
	l.probing = true
	l.outages++
	round := l.outages
	l.r.jobs.Go(func() { l.probe(round) })
}

// strands reports whether an outage with err leaves the requests in flight
// on the lane without an answer. A target that does not answer at all
// does; one that says it is busy (429, 503) still serves the requests it
// has; and a cluster (a Relay) keeps the jobs it was handed in its
// replicated stream, answered once its quorum is back: aborting them
// would only run them again.
func (l *Lane) strands(err error) bool {
	if l.relayOf() != nil {
		return false
	}
	var busy *ollama.UnavailableError
	return !errors.As(err, &busy) || busy.Status == 0
}

// probe waits with capped exponential backoff and jitter, then asks the
// target's /api/version, until it answers or the runner stops.
func (l *Lane) probe(round int) {
	ctx := l.r.runCtx
	cfg := l.r.cfg.Load()
	delay := cfg.OutageBase
	for i := 1; i < round && delay < cfg.OutageMax; i++ {
		delay *= 2
	}
	for {
		delay = min(delay, cfg.OutageMax)
		t := time.NewTimer(jitter(cfg, delay))
		select {
		case <-ctx.Done():
			t.Stop()
			l.r.mu.Lock()
			l.probing = false
			l.r.mu.Unlock()
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := l.cfg.Target.Version(pctx)
		cancel()
		if err == nil {
			l.r.mu.Lock()
			l.up, l.probing, l.versionOf = true, false, v
			l.lastError = ""
			l.r.dirty.Store(true)
			l.r.mu.Unlock()
			l.log.Info("target is back; its lane rejoins", "version", v)
			l.refresh(ctx)
			l.r.signal()
			return
		}
		l.r.mu.Lock()
		l.lastError = err.Error()
		l.r.mu.Unlock()
		delay *= 2
	}
}

// alive asks the target's /api/version once, briefly: after a request
// broke, it tells a target that went away from one that failed the job.
func (l *Lane) alive(ctx context.Context) bool {
	// Even during shutdown: the answer decides whom the failure is charged to.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	_, err := l.cfg.Target.Version(ctx)
	return err == nil
}

// lacks records that the target answered "model not found" for model, in
// these words, and reports whether another lane may still have it: one
// whose patterns allow it and which has not said it lacks it. The caller
// holds Runner.mu.
func (l *Lane) lacks(model, message string) (elsewhere bool) {
	l.missing[model] = missing{message: message, at: l.r.cfg.Load().Now()}
	l.r.dirty.Store(true)
	for _, o := range l.r.lanes {
		if o == l {
			continue
		}
		st := o.state()
		if st.eligible(model) {
			return true
		}
	}
	return false
}

// digest is the digest of the model the target has loaded. When it is not
// known yet (the model was loaded since the target was last asked) the
// target is asked once.
func (l *Lane) digest(ctx context.Context, model string) string {
	model = ollama.NormalizeModel(model)
	l.r.mu.Lock()
	d, ok := l.digests[model]
	l.r.mu.Unlock()
	if ok || model == "" {
		return d
	}
	l.refresh(ctx)
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	return l.digests[model]
}

// residentModels lists the models loaded on the target, sorted. The
// caller holds Runner.mu.
func (l *Lane) residentModels() []string {
	var out []string
	for m := range l.resident {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}
