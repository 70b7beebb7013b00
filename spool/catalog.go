package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Summary is what a Catalog keeps of one job: enough to list, count and
// place it, never its request or answer (read the record for those).
type Summary struct {
	ID       string   `json:"id"`
	State    State    `json:"state"`
	Endpoint Endpoint `json:"endpoint,omitempty"`
	Model    string   `json:"model,omitempty"`
	Function string   `json:"function,omitempty"`
	Priority int      `json:"priority,omitempty"`
	Attempts int      `json:"attempts"`
	// Target is the target that ran the last attempt; Loaded says the
	// model had to be loaded for it.
	Target      string     `json:"target,omitempty"`
	Loaded      bool       `json:"model_loaded,omitempty"`
	SubmittedAt time.Time  `json:"submitted_at"`
	StartedAt   *time.Time `json:"started_at,omitempty"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	NotBefore   *time.Time `json:"not_before,omitempty"`
	// Error is the job's error with its message cut to a line's length.
	Error *JobError `json:"error,omitempty"`

	dir string // where the file was when last read
}

// summaryMessageMax caps a summary's error message.
const summaryMessageMax = 300

// summarize keeps what the catalog needs of r, found as id (the file's
// name, which a record's own "id" does not override) in dir.
func summarize(r *Record, id, dir string) *Summary {
	s := &Summary{ID: id, State: r.State, Endpoint: r.Endpoint, Model: r.Model,
		Function: r.Function, Priority: r.Priority, Attempts: r.Attempts, Target: r.Target,
		Loaded: r.ModelLoaded, SubmittedAt: r.SubmittedAt, StartedAt: r.StartedAt,
		FinishedAt: r.FinishedAt, NotBefore: r.NotBefore, dir: dir}
	if r.Error != nil {
		e := *r.Error
		if len(e.Message) > summaryMessageMax {
			e.Message = clipUTF8(e.Message, summaryMessageMax) + "…"
		}
		s.Error = &e
	}
	return s
}

// clipUTF8 cuts s to at most n bytes without splitting a character.
func clipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// RunsBefore reports whether queued job a runs before queued job b when
// nothing else decides: higher priority first, then first come, first
// served, then by ID. (With drain-by-model the runner may take a job for a
// model already loaded sooner, never later than max_wait allows.)
func RunsBefore(aPrio int, aAt time.Time, aID string, bPrio int, bAt time.Time, bID string) bool {
	if aPrio != bPrio {
		return aPrio > bPrio
	}
	if !aAt.Equal(bAt) {
		return aAt.Before(bAt)
	}
	return aID < bID
}

// newer orders summaries newest first: by submission time, then ID.
func newer(a, b *Summary) bool {
	if !a.SubmittedAt.Equal(b.SubmittedAt) {
		return a.SubmittedAt.After(b.SubmittedAt)
	}
	return a.ID > b.ID
}

// Catalog is an in-memory list of every job in the spool's state
// directories (new, cur, deferred, hold, done, failed), kept current by
// watching them: it lists, counts and places jobs without reading every
// record on each question. A start-up scan fills it in the background
// (Ready tells when it is complete); fsnotify events and a listing every
// Rescan correct it after. The files stay the truth: the catalog may lag
// them by moments, never by a lost event. Queued batch lines not yet
// expanded into files are not in it (batch.Store.List counts them).
type Catalog struct {
	s   *Spool
	log *slog.Logger
	fsw *StateWatch

	mu      sync.RWMutex
	jobs    map[string]*Summary
	order   []*Summary    // newest first; may hold removed entries (gone)
	gone    int           // entries in order no longer in jobs
	changed chan struct{} // closed at the next change
	// counts are kept as jobs come, change and go: by state, and queued
	// jobs by model then priority.
	byState map[State]int
	queued  map[string]map[int]int
	// recent are the jobs that finished within recentSpan of when they
	// were counted: what Finished and Rate read instead of every job.
	recent map[string]*Summary

	rmu   sync.Mutex // one refresh at a time
	ready chan struct{}
	dirty chan struct{}
	dmu   sync.Mutex
	names map[string]bool // IDs to read again
	stop  context.CancelFunc
	done  chan struct{}

	// touched holds, while the start-up scan runs, every job an event or
	// Refresh has placed or removed: the scan's older reading of it must
	// not bring it back.
	touched map[string]bool

	reconciling atomic.Bool
	bg          sync.WaitGroup // the scan and rescans
}

// CatalogOptions configure a Catalog.
type CatalogOptions struct {
	// Rescan is how often the directories are listed again to correct
	// anything events missed (default 1m).
	Rescan time.Duration
	Logger *slog.Logger
}

// catalogDirs are the directories a job's file lives in.
var catalogDirs = []string{DirNew, DirCur, DirDeferred, DirHold, DirDone, DirFailed}

// OpenCatalog starts watching the state directories and fills the catalog
// in the background. Close stops it.
func (s *Spool) OpenCatalog(o CatalogOptions) (*Catalog, error) {
	if o.Rescan <= 0 {
		o.Rescan = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	fsw, err := s.WatchStates(catalogDirs...)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &Catalog{s: s, log: o.Logger, fsw: fsw, jobs: map[string]*Summary{},
		byState: map[State]int{}, queued: map[string]map[int]int{}, touched: map[string]bool{},
		recent:  map[string]*Summary{},
		changed: make(chan struct{}), ready: make(chan struct{}), dirty: make(chan struct{}, 1),
		names: map[string]bool{}, stop: stop, done: make(chan struct{})}
	go c.run(ctx, o.Rescan)
	return c, nil
}

// Close stops watching.
func (c *Catalog) Close() error {
	c.stop()
	<-c.done
	return nil
}

// Ready is closed once the start-up scan has read every job.
func (c *Catalog) Ready() <-chan struct{} { return c.ready }

// WaitReady waits for the start-up scan or ctx.
func (c *Catalog) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Changed returns a channel closed at the next change to the catalog.
func (c *Catalog) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

func (c *Catalog) run(ctx context.Context, rescanEvery time.Duration) {
	defer close(c.done)
	defer c.bg.Wait()
	c.bg.Go(func() {
		// Events queue up in the buffered watcher while the scan runs.
		c.scan(ctx)
		c.mu.Lock()
		c.touched = nil
		c.mu.Unlock()
		close(c.ready)
	})
	c.bg.Go(func() { c.fsw.Run(ctx, c.event, c.watchFailed) })
	tick := time.NewTicker(rescanEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.bg.Go(func() { c.reconcile(false) })
		case <-c.dirty:
			c.readMarked()
		}
	}
}

// event marks the job a file event in a state directory names.
func (c *Catalog) event(ev fsnotify.Event) {
	name := filepath.Base(ev.Name)
	if id, ok := catalogID(name); ok {
		c.mark(id)
	} else if id, ok := strings.CutSuffix(name, ".out"); ok && ev.Has(fsnotify.Create) && ValidID(id) {
		c.mark(id) // its first attempt began without a load
	}
}

// watchFailed lists the spool again when events were lost.
func (c *Catalog) watchFailed(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		c.log.Warn("catalog: too many changes at once; listing the spool again")
		c.bg.Go(func() { c.reconcile(true) })
	} else {
		c.log.Warn("catalog: watching the spool", "err", err)
	}
}

// catalogID returns the job ID a file name in a state directory stands
// for: ID.json, never a temporary, hidden or sibling file.
func catalogID(name string) (string, bool) {
	if !Candidate(name) {
		return "", false
	}
	id := strings.TrimSuffix(name, ".json")
	return id, ValidID(id)
}

func (c *Catalog) mark(id string) {
	c.dmu.Lock()
	c.names[id] = true
	c.dmu.Unlock()
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// readMarked reads again every job an event named since the last time.
func (c *Catalog) readMarked() {
	c.dmu.Lock()
	ids := c.names
	c.names = map[string]bool{}
	c.dmu.Unlock()
	for id := range ids {
		c.refresh(id)
	}
}

// Refresh reads job id again now, rather than when its event arrives: a
// process that just moved a job calls it so that its own next question
// sees the move.
func (c *Catalog) Refresh(id string) { c.refresh(id) }

// refresh reads job id wherever it is now, or forgets it. Refreshes run
// one at a time, so the last to run read the latest place.
func (c *Catalog) refresh(id string) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for try := 0; try < 3; try++ {
		dir, err := c.s.Find(id)
		if errors.Is(err, ErrNotFound) {
			c.put(id, nil)
			return
		}
		if err != nil {
			return // unreadable for now: the next rescan looks again
		}
		r, err := c.s.recordAt(dir, id+".json")
		if errors.Is(err, ErrGone) {
			continue // moved while we looked
		}
		if err != nil {
			return
		}
		c.put(id, summarize(r, id, dir))
		return
	}
}

// scan fills the catalog from the directories, a directory at a time.
func (c *Catalog) scan(ctx context.Context) {
	for _, d := range catalogDirs {
		names, err := c.s.names(d)
		if err != nil {
			c.log.Warn("catalog: list spool directory", "dir", d, "err", err)
			continue
		}
		batch := make([]*Summary, 0, 256)
		flush := func() {
			c.putAll(batch)
			batch = batch[:0]
		}
		for _, name := range names {
			if ctx.Err() != nil {
				return
			}
			id, ok := catalogID(name)
			if !ok {
				continue
			}
			r, err := c.s.recordAt(d, name)
			if err != nil {
				continue // moved on: its event brings it back
			}
			batch = append(batch, summarize(r, id, d))
			if len(batch) == cap(batch) {
				flush()
			}
		}
		flush()
	}
}

// reconcile lists every directory and reads again the jobs whose place
// differs from the catalog's: what a lost event left wrong. After the
// kernel dropped events (all), every job is read again, for a change
// within a directory (a record rewritten in cur/) moves nothing. One runs
// at a time.
func (c *Catalog) reconcile(all bool) {
	if !c.reconciling.CompareAndSwap(false, true) {
		return
	}
	defer c.reconciling.Store(false)
	seen := map[string]string{}
	for _, d := range catalogDirs {
		names, err := c.s.names(d)
		if err != nil {
			return
		}
		for _, name := range names {
			if id, ok := catalogID(name); ok {
				seen[id] = d
			}
		}
	}
	var stale []string
	c.mu.RLock()
	for id, d := range seen {
		if j, ok := c.jobs[id]; all || !ok || j.dir != d {
			stale = append(stale, id)
		}
	}
	for id := range c.jobs {
		if _, ok := seen[id]; !ok {
			stale = append(stale, id)
		}
	}
	c.mu.RUnlock()
	for _, id := range stale {
		c.mark(id)
	}
}

// putAll adds summaries read by the start-up scan. A job an event has
// already placed is left as the event found it, unless the scan's copy is
// from a later state directory.
func (c *Catalog) putAll(list []*Summary) {
	if len(list) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range list {
		if _, ok := c.jobs[j.ID]; ok || c.touched[j.ID] {
			continue
		}
		c.insertLocked(j)
	}
	c.bumpLocked()
}

// put sets job id's summary, or removes it when j is nil.
func (c *Catalog) put(id string, j *Summary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.touched != nil {
		c.touched[id] = true
	}
	old, had := c.jobs[id]
	if j == nil {
		if !had {
			return
		}
		c.removeLocked(old)
		c.bumpLocked()
		return
	}
	if had {
		if old.SubmittedAt.Equal(j.SubmittedAt) {
			c.countLocked(old, -1)
			*old = *j // same place in the order
			c.countLocked(old, 1)
			c.bumpLocked()
			return
		}
		c.removeLocked(old)
	}
	c.insertLocked(j)
	c.bumpLocked()
}

// countLocked adds j to the counts (n = 1) or takes it off (n = -1).
func (c *Catalog) countLocked(j *Summary, n int) {
	c.byState[j.State] += n
	if c.byState[j.State] == 0 {
		delete(c.byState, j.State)
	}
	if n < 0 {
		delete(c.recent, j.ID)
	} else if (j.State == StateDone || j.State == StateFailed) && j.FinishedAt != nil && time.Since(*j.FinishedAt) < recentSpan {
		c.recent[j.ID] = j
	}
	if j.State != StateQueued {
		return
	}
	model := j.ModelName()
	m := c.queued[model]
	if m == nil {
		m = map[int]int{}
		c.queued[model] = m
	}
	m[j.Priority] += n
	if m[j.Priority] == 0 {
		delete(m, j.Priority)
		if len(m) == 0 {
			delete(c.queued, model)
		}
	}
}

func (c *Catalog) insertLocked(j *Summary) {
	c.countLocked(j, 1)
	c.jobs[j.ID] = j
	// Most jobs are the newest yet: look from the front.
	i := sort.Search(len(c.order), func(i int) bool { return !newer(c.order[i], j) })
	c.order = slices.Insert(c.order, i, j)
}

func (c *Catalog) removeLocked(j *Summary) {
	c.countLocked(j, -1)
	delete(c.jobs, j.ID)
	j.dir = "" // marks it gone in order
	c.gone++
	if c.gone > 1024 && c.gone > len(c.order)/4 {
		c.order = slices.DeleteFunc(c.order, func(s *Summary) bool { return s.dir == "" })
		c.gone = 0
	}
}

// bumpLocked tells the Changed waiters.
func (c *Catalog) bumpLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// CatalogQuery selects a page of jobs.
type CatalogQuery struct {
	// States keeps only jobs in these states (all when empty).
	States []State
	// Model keeps only jobs for this model (or "fn:NAME" for a function).
	Model string
	// After is the cursor from the previous page (its Next), or a job ID:
	// the page starts with the job listed after it.
	After string
	// Limit is the page size (default 100).
	Limit int
}

// CatalogPage is one page of jobs, newest first.
type CatalogPage struct {
	Jobs []Summary `json:"jobs"`
	// Total counts every job the query matches, on every page.
	Total int `json:"total"`
	// Next is the cursor for the following page; empty on the last. It
	// holds the last job's place in the order (submission time and ID), so
	// a job that moves or goes does not shift the pages after it.
	Next string `json:"next,omitempty"`
}

// ErrCursor is returned for an After cursor the catalog does not know.
var ErrCursor = errors.New("unknown cursor")

// Page returns the jobs q selects, newest first, at most q.Limit of them,
// starting after q.After.
func (c *Catalog) Page(q CatalogQuery) (CatalogPage, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	match := func(j *Summary) bool {
		if j.dir == "" {
			return false
		}
		if len(q.States) > 0 && !slices.Contains(q.States, j.State) {
			return false
		}
		return q.Model == "" || q.Model == j.ModelName()
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	start := 0
	if q.After != "" {
		at, id, ok := parseCursor(q.After)
		if !ok {
			a, known := c.jobs[q.After]
			if !known {
				return CatalogPage{}, fmt.Errorf("%w %q: no job has that ID now (pruned?); start again without it", ErrCursor, q.After)
			}
			at, id = a.SubmittedAt, a.ID
		}
		start = sort.Search(len(c.order), func(i int) bool {
			e := c.order[i]
			return at.After(e.SubmittedAt) || (at.Equal(e.SubmittedAt) && id > e.ID)
		})
	}
	page := CatalogPage{Jobs: []Summary{}}
	for i, j := range c.order {
		if !match(j) {
			continue
		}
		page.Total++
		if i < start {
			continue
		}
		if len(page.Jobs) < q.Limit {
			page.Jobs = append(page.Jobs, *j)
		} else if page.Next == "" {
			page.Next = cursorOf(&page.Jobs[len(page.Jobs)-1])
		}
	}
	return page, nil
}

// cursorOf is the cursor that starts a page after j: its submission time
// in Unix nanoseconds and its ID.
func cursorOf(j *Summary) string {
	return strconv.FormatInt(j.SubmittedAt.UnixNano(), 10) + "~" + j.ID
}

// parseCursor reads a cursor cursorOf made.
func parseCursor(v string) (time.Time, string, bool) {
	ns, id, ok := strings.Cut(v, "~")
	if !ok || !ValidID(id) {
		return time.Time{}, "", false
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.Unix(0, n), id, true
}

// ModelName is the model a job is listed under: its model, or fn:NAME for
// a function job.
func (j *Summary) ModelName() string {
	if j.Model == "" && j.Function != "" {
		return "fn:" + j.Function
	}
	return j.Model
}

// Get returns job id's summary.
func (c *Catalog) Get(id string) (Summary, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	j, ok := c.jobs[id]
	if !ok {
		return Summary{}, false
	}
	return *j, true
}

// Counts are the catalog's jobs counted by state, and the queued ones by
// model and priority.
type Counts struct {
	States map[State]int `json:"states"`
	// Queued counts queued jobs by model, then by priority.
	Queued map[string]map[int]int `json:"queued"`
}

// Counts counts the jobs (kept as jobs change: no walk over them).
func (c *Catalog) Counts() Counts {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := Counts{States: make(map[State]int, len(c.byState)), Queued: make(map[string]map[int]int, len(c.queued))}
	for st, n := range c.byState {
		out.States[st] = n
	}
	for model, byPrio := range c.queued {
		m := make(map[int]int, len(byPrio))
		for p, n := range byPrio {
			m[p] = n
		}
		out.Queued[model] = m
	}
	return out
}

// Finished returns the jobs that finished at or after since, oldest
// first (no further back than recentSpan): what throughput, wait and
// load charts are drawn from.
func (c *Catalog) Finished(since time.Time) []Summary {
	var out []Summary
	c.mu.Lock()
	for id, j := range c.recent {
		switch {
		case time.Since(*j.FinishedAt) >= recentSpan:
			delete(c.recent, id) // aged out
		case !j.FinishedAt.Before(since):
			out = append(out, *j)
		}
	}
	c.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].FinishedAt.Before(*out[b].FinishedAt) })
	return out
}

// recentSpan is how long a finished job stays in the recent index: the
// longest window Finished and Rate are asked about (the dashboard's hour).
const recentSpan = 2 * time.Hour

// Position returns how many queued jobs run before queued job id under
// the queue's order (priority, then arrival; see RunsBefore), and false
// when id is not queued. It costs the counts by priority and a walk from
// the oldest job to this one: no sort, nothing kept.
func (c *Catalog) Position(id string) (int, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	j, ok := c.jobs[id]
	if !ok || j.State != StateQueued {
		return 0, false
	}
	ahead := 0
	for _, byPrio := range c.queued {
		for p, n := range byPrio {
			if p > j.Priority {
				ahead += n
			}
		}
	}
	for i := len(c.order) - 1; i >= 0; i-- { // oldest first
		e := c.order[i]
		if e == j {
			break
		}
		if e.dir != "" && e.State == StateQueued && e.Priority == j.Priority {
			ahead++
		}
	}
	return ahead, true
}

// Head returns the next n queued jobs in run order (see Position): for
// each priority from the highest, its jobs oldest first.
func (c *Catalog) Head(n int) []Summary {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var prios []int
	for _, byPrio := range c.queued {
		for p := range byPrio {
			if !slices.Contains(prios, p) {
				prios = append(prios, p)
			}
		}
	}
	slices.Sort(prios)
	out := make([]Summary, 0, n)
	for k := len(prios) - 1; k >= 0 && len(out) < n; k-- {
		for i := len(c.order) - 1; i >= 0 && len(out) < n; i-- {
			e := c.order[i]
			if e.dir != "" && e.State == StateQueued && e.Priority == prios[k] {
				out = append(out, *e)
			}
		}
	}
	return out
}

// Rate returns how many jobs per second finished over the window before
// now, or 0 when none did.
func (c *Catalog) Rate(now time.Time, window time.Duration) float64 {
	since := now.Add(-window)
	n := 0
	c.mu.RLock()
	for _, j := range c.recent {
		if j.FinishedAt.After(since) {
			n++
		}
	}
	c.mu.RUnlock()
	return float64(n) / window.Seconds()
}

// EstimatedStart guesses when a job with pos jobs ahead of it starts, from
// the rate jobs finished at over the last ten minutes; false when nothing
// finished lately to judge by.
func (c *Catalog) EstimatedStart(pos int, now time.Time) (time.Time, bool) {
	return estimateStart(pos, c.Rate(now, rateWindow), now)
}

// Place sets a queued record's Position and EstimatedStart from the
// catalog.
func (c *Catalog) Place(r *Record, now time.Time) {
	if r.State != StateQueued {
		return
	}
	pos, ok := c.Position(r.ID)
	if !ok {
		return
	}
	r.Position = &pos
	if t, ok := c.EstimatedStart(pos, now); ok {
		r.EstimatedStart = &t
	}
}

// rateWindow is how far back the finishing rate is measured.
const rateWindow = 10 * time.Minute

// estimateStart is when the job pos places back starts at rate jobs a
// second.
func estimateStart(pos int, rate float64, now time.Time) (time.Time, bool) {
	if rate <= 0 {
		return time.Time{}, false
	}
	return now.Add(time.Duration(float64(pos) / rate * float64(time.Second))).UTC().Truncate(time.Second), true
}

// Record describes the job as a record from what the catalog knows: for
// when the record itself has moved on.
func (j *Summary) Record() *Record {
	return &Record{ID: j.ID, State: j.State, Endpoint: j.Endpoint, Model: j.Model, Function: j.Function,
		Priority: j.Priority, Attempts: j.Attempts, Target: j.Target, ModelLoaded: j.Loaded,
		SubmittedAt: j.SubmittedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		NotBefore: j.NotBefore, Error: j.Error}
}
