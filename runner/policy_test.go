package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// latest maps "m" and "m:latest" together, as Ollama does.
func latest(s string) string {
	if !strings.Contains(s, ":") {
		return s + ":latest"
	}
	return s
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
			q := spool.NewQueue(latest)
			for _, j := range tt.jobs {
				q.Put(spool.Entry{Dir: spool.DirNew, Name: j.name, Model: j.model, Priority: j.prio, Arrived: at(j.arrived)})
			}
			got, ok := Pick(q, tt.resident, at(tt.now), tt.policy)
			if !ok {
				got.Name = ""
			}
			if got.Name != tt.want {
				t.Errorf("got %q, want %q", got.Name, tt.want)
			}
		})
	}
}

func TestPickDeferredRejoinsWhenNotBeforePasses(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	q := spool.NewQueue(nil)
	q.Put(spool.Entry{Dir: spool.DirDeferred, Name: "retry", Model: "m", Arrived: t0, NotBefore: t0.Add(time.Minute)})
	q.Put(spool.Entry{Dir: spool.DirNew, Name: "fresh", Model: "m", Arrived: t0.Add(time.Second)})

	q.Promote(t0.Add(30 * time.Second))
	if got, _ := Pick(q, nil, t0.Add(30*time.Second), Policy{}); got.Name != "fresh" {
		t.Errorf("before not_before: got %q, want %q", got.Name, "fresh")
	}
	q.Promote(t0.Add(2 * time.Minute))
	if got, _ := Pick(q, nil, t0.Add(2*time.Minute), Policy{}); got.Name != "retry" {
		t.Errorf("after not_before: got %q, want %q (a retry keeps its place by arrival)", got.Name, "retry")
	}
}
