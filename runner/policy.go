package runner

import (
	"path"
	"time"

	"github.com/hopper-dev/hopper/ollama"
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
	Priorities() []int
	Keys(priority int) []spool.KeyBacklog
}

// DefaultMaxWait bounds how long drain-by-model may pass over a job.
const DefaultMaxWait = 10 * time.Minute

// LaneState is what Pick knows of one lane: its target's health, its
// slots, the load key it runs, and the models its target has.
type LaneState struct {
	Name     string
	Up       bool
	Slots    int
	InFlight int
	// Key is the load key of the requests in flight (when InFlight > 0).
	Key string
	// Resident lists the load keys loaded on the target.
	Resident []string
	// Installed lists the models the target has (normalized names, from
	// /api/tags); nil when not known.
	Installed []string
	// Missing lists the models the target answered "not found" for.
	Missing []string
	// Models are the globs of models this target may run; empty: any.
	Models []string
	// Relay marks a lane that hands jobs on (the cluster): it takes the
	// oldest job of the highest priority, whatever its key.
	Relay bool
}

// eligible reports whether the lane may run a model at all.
func (l *LaneState) eligible(model string) bool {
	if model == "" {
		return true // a job that fails before it reaches a target
	}
	for _, m := range l.Missing {
		if m == model {
			return false
		}
	}
	if len(l.Models) == 0 {
		return true
	}
	for _, g := range l.Models {
		if ok, _ := path.Match(ollama.NormalizeModel(g), model); ok {
			return true
		}
		if ok, _ := path.Match(g, model); ok {
			return true
		}
	}
	return false
}

func (l *LaneState) resident(key string) bool {
	for _, k := range l.Resident {
		if k == key {
			return true
		}
	}
	return false
}

// has reports whether the target has the model installed (unknown counts
// as no).
func (l *LaneState) has(model string) bool {
	for _, m := range l.Installed {
		if m == model {
			return true
		}
	}
	return false
}

// draining reports whether the lane has requests in flight for key.
func (l *LaneState) draining(key string) bool {
	return l.Up && !l.Relay && l.InFlight > 0 && l.Key == key
}

// idle reports whether the lane is up with nothing in flight.
func (l *LaneState) idle() bool { return l.Up && l.InFlight == 0 }

// Pick chooses the next job for lane self, which has a free slot, given
// the state of every lane (DESIGN §3):
//
//  1. the highest priority with work this lane may run;
//  2. a lane with requests in flight adds only jobs of their load key, and
//     stops adding them (so it can switch once they finish) when a job of
//     another key that no other lane drains waits at a higher priority, or
//     when a job has waited longer than MaxWait and no idle lane can take
//     it;
//  3. an idle lane takes, with the drain schedule: a job that waited
//     longer than MaxWait (the oldest); else the oldest job whose key is
//     resident on its target (pinned models excepted); else the key with
//     the oldest job that no other lane drains, preferring models its
//     target has installed and leaving a model to another idle lane whose
//     target has it when its own does not; else it spreads a key whose
//     backlog is more than twice what the one lane draining it holds in
//     flight; else it looks at the next priority;
//  4. within a key, FIFO by arrival, ties by name.
//
// Jobs the index has not read yet (spool.UnreadKey, just after a start on a
// big backlog) count as a key nobody drains that only an idle lane takes.
//
// With the FIFO schedule an idle lane takes the oldest job it may run, and
// a busy one adds only when that oldest job has its key. A Relay lane takes
// the oldest job of the highest priority.
func Pick(v View, lanes []LaneState, self int, now time.Time, p Policy) (spool.Entry, bool) {
	me := &lanes[self]
	if !me.Up || me.InFlight >= me.Slots {
		return spool.Entry{}, false
	}
	if me.Relay {
		for _, prio := range v.Priorities() {
			if keys := v.Keys(prio); len(keys) > 0 {
				oldest := keys[0]
				for _, k := range keys[1:] {
					a, b := k.Oldest, oldest.Oldest
					if spool.RunsBefore(a.Priority, a.Arrived, a.Name, b.Priority, b.Arrived, b.Name) {
						oldest = k
					}
				}
				return oldest.Oldest, true
			}
		}
		return spool.Entry{}, false
	}
	maxWait := p.MaxWait
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	others := func(f func(o *LaneState) bool) bool {
		for i := range lanes {
			if i != self && f(&lanes[i]) {
				return true
			}
		}
		return false
	}
	drainedElsewhere := func(key string) bool {
		return others(func(o *LaneState) bool { return o.draining(key) })
	}
	for _, prio := range v.Priorities() {
		var keys []spool.KeyBacklog // this lane's, oldest first
		for _, k := range v.Keys(prio) {
			// Jobs not read yet (at start, with a backlog) may be for any
			// model: only an idle lane takes one, and learns its key.
			if k.Key == spool.UnreadKey && me.InFlight > 0 {
				continue
			}
			if k.Key == spool.UnreadKey || me.eligible(ollama.KeyModel(k.Key)) {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			continue
		}
		oldest := keys[0]
		starving := now.Sub(oldest.Oldest.Arrived) > maxWait
		if me.InFlight > 0 {
			if p.Schedule == ScheduleFIFO {
				if oldest.Key == me.Key {
					return oldest.Oldest, true
				}
				return spool.Entry{}, false
			}
			if starving && oldest.Key != me.Key && !others(func(o *LaneState) bool {
				return o.idle() && o.eligible(ollama.KeyModel(oldest.Key))
			}) {
				return spool.Entry{}, false // finish, then serve the starving job
			}
			for _, k := range keys {
				if k.Key == me.Key {
					return k.Oldest, true
				}
			}
			for _, k := range keys {
				if !drainedElsewhere(k.Key) {
					return spool.Entry{}, false // finish, then switch to it
				}
			}
			continue // all of it is being drained by other lanes
		}
		if starving || p.Schedule == ScheduleFIFO {
			return oldest.Oldest, true
		}
		for _, k := range keys {
			if me.resident(k.Key) && !p.pinned(ollama.KeyModel(k.Key)) {
				return k.Oldest, true
			}
		}
		var free []spool.KeyBacklog
		for _, k := range keys {
			if !drainedElsewhere(k.Key) {
				free = append(free, k)
			}
		}
		for _, k := range free {
			if me.has(ollama.KeyModel(k.Key)) {
				return k.Oldest, true
			}
		}
		for _, k := range free {
			model := ollama.KeyModel(k.Key)
			if me.resident(k.Key) || !others(func(o *LaneState) bool {
				return o.idle() && o.eligible(model) && (o.resident(k.Key) || o.has(model))
			}) {
				return k.Oldest, true // its target has it loaded (pinned), or no idle one that has it is left
			}
		}
		for _, k := range keys {
			var drainers, slots int
			for i := range lanes {
				if i != self && lanes[i].draining(k.Key) {
					drainers++
					slots += lanes[i].Slots
				}
			}
			if drainers == 1 && k.Count > 2*slots {
				return k.Oldest, true
			}
		}
	}
	return spool.Entry{}, false
}

func (p Policy) pinned(model string) bool {
	for _, m := range p.Pinned {
		if p.SameModel != nil && p.SameModel(m, model) || m == model {
			return true
		}
	}
	return false
}
