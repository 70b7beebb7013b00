package runner

import (
	"os"
	"slices"

	"github.com/hopper-dev/hopper/spool"
)

// Status is each target as the runner sees it now, in configuration order.
func (r *Runner) Status() []spool.TargetStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]spool.TargetStatus, len(r.lanes))
	for i, l := range r.lanes {
		st := spool.TargetStatus{
			Name:        l.cfg.Name,
			URL:         l.cfg.URL,
			Up:          l.up,
			Error:       l.lastError,
			Version:     l.versionOf,
			Slots:       l.cfg.Parallel,
			InFlight:    l.inflight,
			Resident:    l.residentModels(),
			Models:      l.cfg.Models,
			Done:        l.stats.Done,
			Failed:      l.stats.Failed,
			Loads:       l.stats.Loads,
			LoadSeconds: l.stats.LoadTime.Seconds(),
		}
		if st.Resident == nil {
			st.Resident = []string{}
		}
		if l.inflight > 0 {
			st.LoadKey = l.key
		}
		if !l.up {
			t := l.downSince
			st.DownSince = &t
		}
		for m := range l.missing {
			st.Missing = append(st.Missing, m)
		}
		slices.Sort(st.Missing)
		out[i] = st
	}
	return out
}

// publish writes the targets' state to .hopper/targets.json for `hopper
// status` and the front's /metrics. The dispatcher calls it when the state
// changed, at most once a loop (its poll is a second).
func (r *Runner) publish() {
	t := &spool.Targets{PID: os.Getpid(), UpdatedAt: r.cfg.Load().Now().UTC(), Targets: r.Status()}
	if p := r.problem.Load(); p != nil {
		t.Problem = *p
	}
	if err := r.spool.PublishTargets(t); err != nil {
		r.log.Warn("cannot publish the targets' state", "err", err)
	}
}
