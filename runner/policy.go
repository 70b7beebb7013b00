package runner

import (
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// Schedules a Policy may name.
const (
	ScheduleDrain = "drain" // prefer the resident model
	ScheduleFIFO  = "fifo"  // strict arrival order within a priority
)

// Policy is the scheduling configuration.
type Policy struct {
	Schedule string        // ScheduleDrain (default) or ScheduleFIFO
	MaxWait  time.Duration // drain yields to the oldest job once it waited this long; 0: 10m
	Pinned   []string      // models kept loaded that never count as the resident model
	// SameModel compares model names as the target does; nil: equality.
	SameModel func(a, b string) bool
}

// View is what Pick needs of the queue index; *spool.Queue implements it.
type View interface {
	TopPriority() (int, bool)
	Oldest(priority int) (spool.Entry, bool)
	OldestFor(priority int, model string) (spool.Entry, bool)
}

// DefaultMaxWait bounds how long drain-by-model may pass over a job.
const DefaultMaxWait = 10 * time.Minute

// Pick chooses the next job (DESIGN §3):
//  1. the highest priority;
//  2. among those, with the drain schedule, the oldest job whose model is
//     resident on the target (pinned models excepted) — unless the oldest
//     job of that priority has waited longer than MaxWait, which then goes
//     next whatever its model, so nothing starves;
//  3. otherwise the oldest job (arrival, then name).
func Pick(v View, resident []string, now time.Time, p Policy) (spool.Entry, bool) {
	prio, ok := v.TopPriority()
	if !ok {
		return spool.Entry{}, false
	}
	oldest, ok := v.Oldest(prio)
	if !ok {
		return spool.Entry{}, false
	}
	if p.Schedule == ScheduleFIFO {
		return oldest, true
	}
	maxWait := p.MaxWait
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	if now.Sub(oldest.Arrived) > maxWait {
		return oldest, true
	}
	var best spool.Entry
	found := false
	for _, m := range resident {
		if p.pinned(m) {
			continue
		}
		e, ok := v.OldestFor(prio, m)
		if ok && (!found || entryBefore(e, best)) {
			best, found = e, true
		}
	}
	if found {
		return best, true
	}
	return oldest, true
}

func (p Policy) pinned(model string) bool {
	for _, m := range p.Pinned {
		if p.SameModel != nil && p.SameModel(m, model) || m == model {
			return true
		}
	}
	return false
}

func entryBefore(a, b spool.Entry) bool {
	if !a.Arrived.Equal(b.Arrived) {
		return a.Arrived.Before(b.Arrived)
	}
	return a.Name < b.Name
}
