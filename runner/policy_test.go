package runner

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/spool"
)

// latest maps "m" and "m:latest" together, as Ollama does.
func latest(s string) string {
	if !strings.Contains(s, ":") {
		return s + ":latest"
	}
	return s
}

// keyedQueue is a queue keyed as the runner keys it: model and reload options.
func keyedQueue() *spool.Queue {
	return spool.NewKeyedQueue(func(e spool.Entry) string { return ollama.LoadKey(e.Model, e.Options) })
}

// oneLane is an idle lane with one slot and these models resident.
func oneLane(resident ...string) LaneState {
	l := LaneState{Name: "one", Up: true, Slots: 1}
	for _, m := range resident {
		l.Resident = append(l.Resident, ollama.LoadKey(m, nil))
	}
	return l
}

// picked is the name of the job Pick takes, or "" when it takes none.
func picked(q *spool.Queue, lanes []LaneState, now time.Time, p Policy) string {
	got, ok := Pick(q, lanes, 0, now, p)
	if !ok {
		return ""
	}
	return got.Name
}

func TestPick(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	type job struct {
		name, model string
		prio        int
		arrived     int // minutes after t0
	}
	tests := []struct {
		name     string
		jobs     []job
		resident []string
		now      int
		policy   Policy
		want     string
	}{
		{
			name: "EmptyQueuePicksNothing",
			want: "",
		},
		{
			name:   "OldestGoesFirstWhenNothingIsResident",
			jobs:   []job{{"b", "m1", 0, 2}, {"a", "m2", 0, 1}},
			now:    3,
			policy: Policy{},
			want:   "a",
		},
		{
			name: "HigherPriorityBeatsOlderAndResident",
			jobs: []job{{"old", "m1", 0, 1}, {"urgent", "m2", 100, 5}},
			now:  6, resident: []string{"m1:latest"},
			want: "urgent",
		},
		{
			name:     "ResidentModelIsDrainedFirst",
			jobs:     []job{{"a", "m1", 0, 1}, {"b", "m2", 0, 2}, {"c", "m2", 0, 3}},
			resident: []string{"m2:latest"}, now: 4,
			want: "b",
		},
		{
			name:     "ModelNamesCompareAsOllamaDoes",
			jobs:     []job{{"a", "m1", 0, 1}, {"b", "m2:latest", 0, 2}},
			resident: []string{"m2"}, now: 4,
			want: "b",
		},
		{
			name:     "FIFOIgnoresResidency",
			jobs:     []job{{"a", "m1", 0, 1}, {"b", "m2", 0, 2}},
			resident: []string{"m2:latest"}, now: 3,
			policy: Policy{Schedule: ScheduleFIFO},
			want:   "a",
		},
		{
			name:     "OldestJobPastMaxWaitGoesWhateverItsModel",
			jobs:     []job{{"cold", "m1", 0, 0}, {"warm", "m2", 0, 5}},
			resident: []string{"m2:latest"}, now: 11,
			policy: Policy{MaxWait: 10 * time.Minute},
			want:   "cold",
		},
		{
			name:     "OldestJobWithinMaxWaitStillYieldsToResident",
			jobs:     []job{{"cold", "m1", 0, 0}, {"warm", "m2", 0, 5}},
			resident: []string{"m2:latest"}, now: 9,
			policy: Policy{MaxWait: 10 * time.Minute},
			want:   "warm",
		},
		{
			name:     "PinnedModelNeverCountsAsResident",
			jobs:     []job{{"a", "m1", 0, 1}, {"emb", "embedder", 0, 2}},
			resident: []string{"embedder:latest"}, now: 3,
			policy: Policy{Pinned: []string{"embedder"}, SameModel: func(a, b string) bool { return latest(a) == latest(b) }},
			want:   "a",
		},
		{
			name:     "PinnedIsSkippedButAnotherResidentModelIsDrained",
			jobs:     []job{{"a", "m1", 0, 1}, {"emb", "embedder", 0, 2}, {"b", "m2", 0, 3}},
			resident: []string{"embedder:latest", "m2:latest"}, now: 4,
			policy: Policy{Pinned: []string{"embedder:latest"}},
			want:   "b",
		},
		{
			name:     "TwoResidentModelsTheOlderJobWins",
			jobs:     []job{{"a", "m1", 0, 1}, {"b", "m2", 0, 3}, {"c", "m3", 0, 2}},
			resident: []string{"m2:latest", "m3:latest"}, now: 4,
			want: "c",
		},
		{
			name: "TiesInArrivalGoByName",
			jobs: []job{{"b", "m1", 0, 1}, {"a", "m1", 0, 1}},
			now:  2,
			want: "a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := keyedQueue()
			for _, j := range tt.jobs {
				q.Put(spool.Entry{Dir: spool.DirNew, Name: j.name, Model: j.model, Priority: j.prio, Arrived: at(j.arrived)})
			}
			if got := picked(q, []LaneState{oneLane(tt.resident...)}, at(tt.now), tt.policy); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPickDeferredRejoinsWhenNotBeforePasses(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	q := keyedQueue()
	q.Put(spool.Entry{Dir: spool.DirDeferred, Name: "retry", Model: "m", Arrived: t0, NotBefore: t0.Add(time.Minute)})
	q.Put(spool.Entry{Dir: spool.DirNew, Name: "fresh", Model: "m", Arrived: t0.Add(time.Second)})

	q.Promote(t0.Add(30 * time.Second))
	if got, _ := Pick(q, []LaneState{oneLane()}, 0, t0.Add(30*time.Second), Policy{}); got.Name != "fresh" {
		t.Errorf("before not_before: got %q, want %q", got.Name, "fresh")
	}
	q.Promote(t0.Add(2 * time.Minute))
	if got, _ := Pick(q, []LaneState{oneLane()}, 0, t0.Add(2*time.Minute), Policy{}); got.Name != "retry" {
		t.Errorf("after not_before: got %q, want %q (a retry keeps its place by arrival)", got.Name, "retry")
	}
}

func TestPickAcrossLanes(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	type job struct {
		name, model, options string
		prio, arrived        int
	}
	key := func(model, options string) string {
		if options == "" {
			return ollama.LoadKey(model, nil)
		}
		return ollama.LoadKey(model, json.RawMessage(options))
	}
	idle := func(name string) LaneState { return LaneState{Name: name, Up: true, Slots: 2} }
	busy := func(name, model string, n int) LaneState {
		return LaneState{Name: name, Up: true, Slots: 2, InFlight: n, Key: key(model, ""), Resident: []string{key(model, "")}}
	}
	tests := []struct {
		name   string
		jobs   []job
		lanes  []LaneState // the lane picking is the first
		now    int
		policy Policy
		want   string
	}{
		{
			name:  "AFullLanePicksNothing",
			jobs:  []job{{"a", "m1", "", 0, 1}},
			lanes: []LaneState{busy("a", "m1", 2)},
			now:   2, want: "",
		},
		{
			name:  "ALaneWhoseTargetIsDownPicksNothing",
			jobs:  []job{{"a", "m1", "", 0, 1}},
			lanes: []LaneState{{Name: "a", Slots: 2}},
			now:   2, want: "",
		},
		{
			name:  "ABusyLaneAddsOnlyJobsOfItsKey",
			jobs:  []job{{"other", "m2", "", 0, 1}, {"mine", "m1", "", 0, 2}},
			lanes: []LaneState{busy("a", "m1", 1), idle("b")},
			now:   3, want: "mine",
		},
		{
			name: "TwoNumCtxValuesAreTwoKeys",
			jobs: []job{{"plain", "m1", "", 0, 1}, {"big", "m1", `{"num_ctx":8192}`, 0, 2}},
			lanes: []LaneState{{Name: "a", Up: true, Slots: 2, InFlight: 1, Key: key("m1", `{"num_ctx":8192}`),
				Resident: []string{key("m1", `{"num_ctx":8192}`)}}},
			now: 3, want: "big",
		},
		{
			name:  "ABusyLaneStopsAddingWhenAnUndrainedKeyWaitsAtAHigherPriority",
			jobs:  []job{{"mine", "m1", "", 0, 1}, {"urgent", "m2", "", 10, 2}},
			lanes: []LaneState{busy("a", "m1", 1)},
			now:   3, want: "",
		},
		{
			name:  "ABusyLaneGoesOnWhenTheHigherPriorityKeyIsDrainedElsewhere",
			jobs:  []job{{"mine", "m1", "", 0, 1}, {"urgent", "m2", "", 10, 2}},
			lanes: []LaneState{busy("a", "m1", 1), busy("b", "m2", 1)},
			now:   3, want: "mine",
		},
		{
			name:   "ABusyLaneStopsAddingForAStarvingJobNoIdleLaneCanTake",
			jobs:   []job{{"cold", "m2", "", 0, 0}, {"mine", "m1", "", 0, 11}},
			lanes:  []LaneState{busy("a", "m1", 1), busy("b", "m3", 2)},
			now:    12,
			policy: Policy{MaxWait: 10 * time.Minute},
			want:   "",
		},
		{
			name:   "ABusyLaneGoesOnWhenAnIdleLaneCanTakeTheStarvingJob",
			jobs:   []job{{"cold", "m2", "", 0, 0}, {"mine", "m1", "", 0, 11}},
			lanes:  []LaneState{busy("a", "m1", 1), idle("b")},
			now:    12,
			policy: Policy{MaxWait: 10 * time.Minute},
			want:   "mine",
		},
		{
			name:  "AnIdleLaneTakesTheOldestKeyNobodyDrains",
			jobs:  []job{{"drained", "m1", "", 0, 1}, {"m2-old", "m2", "", 0, 2}, {"m3", "m3", "", 0, 3}},
			lanes: []LaneState{idle("a"), busy("b", "m1", 1)},
			now:   4, want: "m2-old",
		},
		{
			name:  "AnIdleLanePrefersAModelItsTargetHas",
			jobs:  []job{{"old", "m1", "", 0, 1}, {"installed", "m2", "", 0, 2}},
			lanes: []LaneState{{Name: "a", Up: true, Slots: 2, Installed: []string{"m2:latest"}}},
			now:   3, want: "installed",
		},
		{
			name:  "AnIdleLaneLeavesAModelToAnIdleLaneWhoseTargetHasIt",
			jobs:  []job{{"only", "m1", "", 0, 1}},
			lanes: []LaneState{idle("a"), {Name: "b", Up: true, Slots: 1, Installed: []string{"m1:latest"}}},
			now:   2, want: "",
		},
		{
			name:  "ATargetsModelsPatternsLimitItsLane",
			jobs:  []job{{"chat", "llama3.2", "", 0, 1}, {"emb", "nomic-embed-text", "", 0, 2}},
			lanes: []LaneState{{Name: "a", Up: true, Slots: 1, Models: []string{"nomic-*"}}},
			now:   3, want: "emb",
		},
		{
			name:  "AModelTheTargetLacksIsLeftToOthers",
			jobs:  []job{{"lacking", "m1", "", 0, 1}, {"ok", "m2", "", 0, 2}},
			lanes: []LaneState{{Name: "a", Up: true, Slots: 1, Missing: []string{"m1:latest"}}},
			now:   3, want: "ok",
		},
		{
			name:  "ADeepBacklogSpreadsToASecondIdleLane",
			jobs:  []job{{"1", "m1", "", 0, 1}, {"2", "m1", "", 0, 2}, {"3", "m1", "", 0, 3}, {"4", "m1", "", 0, 4}, {"5", "m1", "", 0, 5}},
			lanes: []LaneState{idle("a"), busy("b", "m1", 2)},
			now:   6, want: "1",
		},
		{
			name:  "AShallowBacklogIsLeftToTheLaneDrainingIt",
			jobs:  []job{{"1", "m1", "", 0, 1}, {"2", "m1", "", 0, 2}, {"3", "m1", "", 0, 3}, {"4", "m1", "", 0, 4}},
			lanes: []LaneState{idle("a"), busy("b", "m1", 2)},
			now:   6, want: "",
		},
		{
			name:  "AKeyIsNeverSpreadToAThirdLane",
			jobs:  []job{{"1", "m1", "", 0, 1}, {"2", "m1", "", 0, 2}, {"3", "m1", "", 0, 3}, {"4", "m1", "", 0, 4}, {"5", "m1", "", 0, 5}, {"6", "m1", "", 0, 6}},
			lanes: []LaneState{idle("a"), busy("b", "m1", 2), busy("c", "m1", 2)},
			now:   7, want: "",
		},
		{
			name:  "AnIdleLaneTakesLowerPriorityWorkWhenTheTopIsDrainedElsewhere",
			jobs:  []job{{"urgent", "m1", "", 10, 1}, {"later", "m2", "", 0, 2}},
			lanes: []LaneState{idle("a"), busy("b", "m1", 1)},
			now:   3, want: "later",
		},
		{
			name:   "FIFOABusyLaneAddsOnlyWhenTheOldestJobHasItsKey",
			jobs:   []job{{"other", "m2", "", 0, 1}, {"mine", "m1", "", 0, 2}},
			lanes:  []LaneState{busy("a", "m1", 1), idle("b")},
			now:    3,
			policy: Policy{Schedule: ScheduleFIFO},
			want:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := keyedQueue()
			for _, j := range tt.jobs {
				e := spool.Entry{Dir: spool.DirNew, Name: j.name, Model: j.model, Priority: j.prio, Arrived: at(j.arrived)}
				if j.options != "" {
					e.Options = json.RawMessage(j.options)
				}
				q.Put(e)
			}
			if got := picked(q, tt.lanes, at(tt.now), tt.policy); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPickUnreadJobs(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	q := keyedQueue()
	q.Put(spool.Entry{Dir: spool.DirNew, Name: "unread", Arrived: t0, Unread: true})
	q.Put(spool.Entry{Dir: spool.DirNew, Name: "mine", Model: "m1", Arrived: t0.Add(time.Second)})
	busy := LaneState{Name: "a", Up: true, Slots: 2, InFlight: 1, Key: ollama.LoadKey("m1", nil)}
	if got, _ := Pick(q, []LaneState{busy}, 0, t0.Add(time.Minute), Policy{}); got.Name != "mine" {
		t.Errorf("a busy lane picked %q, want its own key's job: an unread job may be any model", got.Name)
	}
	limited := LaneState{Name: "b", Up: true, Slots: 1, Models: []string{"m9"}}
	if got, _ := Pick(q, []LaneState{limited}, 0, t0.Add(time.Minute), Policy{}); got.Name != "unread" {
		t.Errorf("an idle lane picked %q, want the older unread job", got.Name)
	}
}
