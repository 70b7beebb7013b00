package dashboard

import (
	"errors"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/spool"
)

// Caps on the lists a snapshot carries: the page never lists every job.
const (
	maxQueued   = 50
	maxRunning  = 50
	maxSide     = 20 // held, deferred
	maxFailures = 20
	maxBatches  = 10
	chartSpan   = time.Hour
	chartStep   = time.Minute
)

// Snapshot is everything the page shows, as served at /ui/data.json and in
// the event stream. Lists are capped; Total fields count all.
type Snapshot struct {
	Now    time.Time `json:"now"`
	Ready  bool      `json:"ready"` // the catalog has read every job
	Paused bool      `json:"paused"`
	// States counts jobs in every state, in the states' order.
	States []StateCount `json:"states"`
	// Models are the queued and running jobs by model, with the queued
	// ones by priority, highest first.
	Models   []ModelCount `json:"models"`
	Running  JobList      `json:"running"`
	Queued   JobList      `json:"queued"`
	Deferred JobList      `json:"deferred"`
	Held     JobList      `json:"held"`
	// Failures are the most recently failed jobs, newest first.
	Failures JobList  `json:"failures"`
	Targets  Targets  `json:"targets"`
	Batches  Batches  `json:"batches"`
	Charts   Charts   `json:"charts"`
	Problems []string `json:"problems,omitempty"`
}

// StateCount is how many jobs are in one state.
type StateCount struct {
	State spool.State `json:"state"`
	Count int         `json:"count"`
}

// ModelCount is one model's share of the queue.
type ModelCount struct {
	Model      string          `json:"model"`
	Running    int             `json:"running"`
	Queued     int             `json:"queued"`
	Priorities []PriorityCount `json:"priorities"`
}

// PriorityCount is how many queued jobs of a model have one priority.
type PriorityCount struct {
	Priority int `json:"priority"`
	Count    int `json:"count"`
}

// JobList is the first jobs of a list and how many there are in all.
type JobList struct {
	Total int   `json:"total"`
	Jobs  []Job `json:"jobs"`
}

// Job is one job as the page lists it.
type Job struct {
	ID       string      `json:"id"`
	State    spool.State `json:"state"`
	Model    string      `json:"model"`
	Priority int         `json:"priority"`
	Attempts int         `json:"attempts"`
	Target   string      `json:"target,omitempty"`
	// Position is how many queued jobs run before this one.
	Position    *int            `json:"position,omitempty"`
	SubmittedAt time.Time       `json:"submitted_at"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	FinishedAt  *time.Time      `json:"finished_at,omitempty"`
	NotBefore   *time.Time      `json:"not_before,omitempty"`
	Tokens      int             `json:"tokens,omitempty"` // output lines so far, while running
	Error       *spool.JobError `json:"error,omitempty"`
	// Actions are the buttons the job gets: cancel, hold, release, retry.
	Actions []string `json:"actions"`
}

// Targets is the runner's view of its targets.
type Targets struct {
	// Published says a runner has published its targets at some time;
	// Served that one holds the spool's runner lock now.
	Published bool      `json:"published"`
	Served    bool      `json:"served"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	Problem   string    `json:"problem,omitempty"`
	List      []Target  `json:"list"`
}

// Target is one target and its lane.
type Target struct {
	spool.TargetStatus
	// Health is up, down, or unknown when no runner serves the spool.
	Health string `json:"health"`
}

// Batches are the newest batches: running ones first.
type Batches struct {
	Total int     `json:"total"`
	List  []Batch `json:"list"`
}

// Batch is one batch's progress.
type Batch struct {
	ID        string      `json:"id"`
	State     batch.State `json:"state"`
	Total     int         `json:"total"`
	Done      int         `json:"done"`
	Failed    int         `json:"failed"`
	Percent   int         `json:"percent"`
	CreatedAt time.Time   `json:"created_at"`
	Active    bool        `json:"active"` // not finished: it may be canceled
}

// Charts are the last hour in one-minute buckets, oldest first: jobs
// finished, their wait in the queue (started − submitted) and the model
// loads they paid for.
type Charts struct {
	Start       time.Time  `json:"start"`
	StepSeconds int        `json:"step_seconds"`
	Done        []int      `json:"done"`
	Failed      []int      `json:"failed"`
	Loads       []int      `json:"loads"`
	WaitP50     []*float64 `json:"wait_p50"` // seconds; null where nothing started
	WaitMax     []*float64 `json:"wait_max"`
	// Totals over the hour.
	TotalDone    int      `json:"total_done"`
	TotalFailed  int      `json:"total_failed"`
	TotalLoads   int      `json:"total_loads"`
	WaitP50All   *float64 `json:"wait_p50_all"`
	PerMinuteAvg float64  `json:"per_minute"`
}

// stateOrder is the order states are shown in.
var stateOrder = []spool.State{spool.StateQueued, spool.StateLoading, spool.StateWorking,
	spool.StateDeferred, spool.StateHeld, spool.StateDone, spool.StateFailed}

// snapshot returns a current snapshot, shared between requests while no
// job changed and it is younger than the cache's time to live.
func (h *Handler) snapshot() *Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap != nil && time.Since(h.snapT) < h.t.cacheTTL {
		select {
		case <-h.snapC:
		default:
			return h.snap
		}
	}
	// Take the channel first: a change while we read makes the next
	// request read again.
	h.snapC = h.cfg.Catalog.Changed()
	h.snap = h.build()
	h.snapT = time.Now()
	return h.snap
}

// build reads the catalog, the targets and the batches into a snapshot.
func (h *Handler) build() *Snapshot {
	c, sp := h.cfg.Catalog, h.cfg.Spool
	now := h.cfg.Now()
	s := &Snapshot{Now: now.UTC(), Paused: sp.Paused()}
	select {
	case <-c.Ready():
		s.Ready = true
	default:
	}

	counts := c.Counts()
	for _, st := range stateOrder {
		s.States = append(s.States, StateCount{State: st, Count: counts.States[st]})
	}

	// Each list is a pass over every job: none for a state with none.
	list := func(a, b spool.State, limit int) JobList {
		if counts.States[a]+counts.States[b] == 0 {
			return JobList{Jobs: []Job{}}
		}
		return h.list(a, b, limit, s)
	}
	s.Running = list(spool.StateLoading, spool.StateWorking, maxRunning)
	for i := range s.Running.Jobs {
		s.Running.Jobs[i].Tokens = sp.OutputLines(s.Running.Jobs[i].ID)
	}
	s.Queued = h.head(counts.States[spool.StateQueued])
	s.Deferred = list(spool.StateDeferred, "", maxSide)
	s.Held = list(spool.StateHeld, "", maxSide)

	s.Models = models(counts, s.Running.Jobs)

	finished := c.Finished(now.Add(-chartSpan))
	s.Charts = charts(finished, now)
	s.Failures = h.failures(finished, counts.States[spool.StateFailed], s)

	s.Targets = h.targets()
	s.Batches = h.batches(s)
	return s
}

// head lists the next queued jobs to run, in run order, each with its
// position (how many run before it): Catalog.Head.
func (h *Handler) head(total int) JobList {
	out := JobList{Total: total, Jobs: []Job{}}
	if total == 0 {
		return out
	}
	for i, j := range h.cfg.Catalog.Head(maxQueued) {
		pos := i
		jb := job(&j)
		jb.Position = &pos
		out.Jobs = append(out.Jobs, jb)
	}
	return out
}

// list returns the newest jobs in states a (and b, if set).
func (h *Handler) list(a, b spool.State, limit int, s *Snapshot) JobList {
	q := spool.CatalogQuery{States: []spool.State{a}, Limit: limit}
	if b != "" {
		q.States = append(q.States, b)
	}
	page, err := h.cfg.Catalog.Page(q)
	if err != nil {
		s.Problems = append(s.Problems, "listing "+string(a)+" jobs: "+err.Error())
		return JobList{Jobs: []Job{}}
	}
	out := JobList{Total: page.Total, Jobs: make([]Job, 0, len(page.Jobs))}
	for i := range page.Jobs {
		out.Jobs = append(out.Jobs, job(&page.Jobs[i]))
	}
	return out
}

// failures are the newest failed jobs: those that failed in the last hour
// by when they failed, then the newest submitted among the rest.
func (h *Handler) failures(finished []spool.Summary, total int, s *Snapshot) JobList {
	out := JobList{Total: total, Jobs: []Job{}}
	seen := map[string]bool{}
	for i := len(finished) - 1; i >= 0 && len(out.Jobs) < maxFailures; i-- {
		if f := &finished[i]; f.State == spool.StateFailed {
			out.Jobs = append(out.Jobs, job(f))
			seen[f.ID] = true
		}
	}
	if len(out.Jobs) < maxFailures && total > len(out.Jobs) {
		more := h.list(spool.StateFailed, "", maxFailures, s)
		for _, j := range more.Jobs {
			if len(out.Jobs) < maxFailures && !seen[j.ID] {
				out.Jobs = append(out.Jobs, j)
			}
		}
	}
	return out
}

// job is a summary as the page lists it.
func job(j *spool.Summary) Job {
	out := Job{ID: j.ID, State: j.State, Model: j.ModelName(), Priority: j.Priority, Attempts: j.Attempts,
		Target: j.Target, SubmittedAt: j.SubmittedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		NotBefore: j.NotBefore, Error: j.Error, Actions: actions(j.State)}
	if out.Model == "" {
		out.Model = "(none)"
	}
	return out
}

// actions are the buttons a job in state st gets: what the API allows.
func actions(st spool.State) []string {
	switch st {
	case spool.StateQueued, spool.StateDeferred:
		return []string{"hold", "cancel"}
	case spool.StateHeld:
		return []string{"release", "cancel"}
	case spool.StateLoading, spool.StateWorking:
		return []string{"cancel"}
	case spool.StateFailed:
		return []string{"retry"}
	}
	return []string{}
}

// models counts the queue by model (queued from the catalog's counts,
// running from the running list), busiest first.
func models(counts spool.Counts, running []Job) []ModelCount {
	by := map[string]*ModelCount{}
	get := func(m string) *ModelCount {
		if m == "" {
			m = "(none)"
		}
		mc := by[m]
		if mc == nil {
			mc = &ModelCount{Model: m, Priorities: []PriorityCount{}}
			by[m] = mc
		}
		return mc
	}
	for m, prios := range counts.Queued {
		mc := get(m)
		for p, n := range prios {
			mc.Queued += n
			mc.Priorities = append(mc.Priorities, PriorityCount{Priority: p, Count: n})
		}
		sort.Slice(mc.Priorities, func(a, b int) bool { return mc.Priorities[a].Priority > mc.Priorities[b].Priority })
	}
	for _, j := range running {
		get(j.Model).Running++
	}
	out := make([]ModelCount, 0, len(by))
	for _, mc := range by {
		out = append(out, *mc)
	}
	sort.Slice(out, func(a, b int) bool {
		x, y := out[a], out[b]
		if x.Running+x.Queued != y.Running+y.Queued {
			return x.Running+x.Queued > y.Running+y.Queued
		}
		return x.Model < y.Model
	})
	return out
}

// targets reads what the runner last published of its targets.
func (h *Handler) targets() Targets {
	out := Targets{Served: h.cfg.Spool.Served(), List: []Target{}}
	ts, err := h.cfg.Spool.ReadTargets()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			out.Problem = err.Error()
		}
		return out
	}
	out.Published, out.UpdatedAt, out.Problem = true, ts.UpdatedAt, ts.Problem
	for _, t := range ts.Targets {
		health := "down"
		switch {
		case !out.Served:
			health = "unknown"
		case t.Up:
			health = "up"
		}
		if t.Resident == nil {
			t.Resident = []string{}
		}
		out.List = append(out.List, Target{TargetStatus: t, Health: health})
	}
	return out
}

// batches returns the newest batches, the unfinished first. Listing
// batches reads new/ whole (a batch file waiting there has no record yet),
// which takes a while with 100,000 jobs queued: the list is read once, then
// read again in the background when it is older than batchTTL, and a
// snapshot uses the last one read meanwhile. The caller holds h.mu.
func (h *Handler) batches(s *Snapshot) Batches {
	switch {
	case h.bat == nil:
		start := time.Now()
		list, err := batch.New(h.cfg.Spool).List()
		h.storeBatches(list, err, time.Since(start))
	case time.Since(h.batT) >= max(h.t.batchTTL, 20*h.batCost) && !h.batRunning:
		// Listing again at most every twenty times what it costs: a
		// twentieth of a core at most, however full new/ is.
		h.batRunning = true
		go func() {
			start := time.Now()
			list, err := batch.New(h.cfg.Spool).List()
			h.mu.Lock()
			defer h.mu.Unlock()
			h.storeBatches(list, err, time.Since(start))
		}()
	}
	if h.batE != "" {
		s.Problems = append(s.Problems, h.batE)
	}
	list := slices.Clone(h.bat)
	sort.SliceStable(list, func(a, b int) bool {
		x, y := list[a], list[b]
		if x.State.Terminal() != y.State.Terminal() {
			return !x.State.Terminal()
		}
		return x.CreatedAt.After(y.CreatedAt)
	})
	out := Batches{Total: len(list), List: []Batch{}}
	for _, b := range list {
		if len(out.List) == maxBatches {
			break
		}
		pct := 0
		if b.Total > 0 {
			pct = (b.Done + b.Failed) * 100 / b.Total
		}
		out.List = append(out.List, Batch{ID: b.ID, State: b.State, Total: b.Total, Done: b.Done, Failed: b.Failed,
			Percent: pct, CreatedAt: b.CreatedAt, Active: !b.State.Terminal() && b.State != batch.Cancelling})
	}
	return out
}

// charts buckets the jobs finished since an hour before now.
func charts(finished []spool.Summary, now time.Time) Charts {
	n := int(chartSpan / chartStep)
	start := now.Add(-chartSpan)
	c := Charts{Start: start.UTC(), StepSeconds: int(chartStep / time.Second),
		Done: make([]int, n), Failed: make([]int, n), Loads: make([]int, n),
		WaitP50: make([]*float64, n), WaitMax: make([]*float64, n)}
	bucket := func(t time.Time) int {
		i := int(t.Sub(start) / chartStep)
		return min(max(i, 0), n-1)
	}
	waits := make([][]float64, n)
	var all []float64
	for i := range finished {
		f := &finished[i]
		if f.FinishedAt == nil {
			continue
		}
		b := bucket(*f.FinishedAt)
		switch f.State {
		case spool.StateDone:
			c.Done[b]++
			c.TotalDone++
		case spool.StateFailed:
			c.Failed[b]++
			c.TotalFailed++
		}
		if f.StartedAt == nil {
			continue // never ran: canceled or expired in the queue
		}
		if f.Loaded {
			c.Loads[bucket(*f.StartedAt)]++
			c.TotalLoads++
		}
		w := max(f.StartedAt.Sub(f.SubmittedAt).Seconds(), 0)
		waits[b] = append(waits[b], w)
		all = append(all, w)
	}
	for i, ws := range waits {
		if len(ws) == 0 {
			continue
		}
		slices.Sort(ws)
		p50, top := ws[(len(ws)-1)/2], ws[len(ws)-1]
		c.WaitP50[i], c.WaitMax[i] = &p50, &top
	}
	if len(all) > 0 {
		slices.Sort(all)
		c.WaitP50All = &all[(len(all)-1)/2]
	}
	c.PerMinuteAvg = float64(c.TotalDone+c.TotalFailed) / float64(n)
	return c
}

// storeBatches keeps a batch list just read. The caller holds h.mu.
func (h *Handler) storeBatches(list []*batch.Record, err error, took time.Duration) {
	h.bat, h.batT, h.batE, h.batRunning, h.batCost = list, time.Now(), "", false, took
	if err != nil {
		h.batE = err.Error()
	}
	if h.bat == nil {
		h.bat = []*batch.Record{}
	}
}

// tail is the last n bytes of s, starting at a character.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && s[i]&0xC0 == 0x80 {
		i++
	}
	return strings.Clone(s[i:])
}
