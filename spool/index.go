package spool

import (
	"container/heap"
	"encoding/json"
	"sort"
	"sync"
	"time"
)

// Entry is one claimable file in the queue index.
type Entry struct {
	Dir      string          // DirNew or DirDeferred
	Name     string          // file name in Dir
	Model    string          // as the job names it ("" for function jobs until expanded)
	Function string          // the function a function job calls
	Options  json.RawMessage // the job's "options" object, as submitted (nil if none)
	Priority int             // higher first
	// Key groups entries that can run on one loaded model (the model and
	// the options that would make the target reload it). Put fills it in
	// through the queue's key function.
	Key     string
	Arrived time.Time // ctime in new/, or the record's submitted_at
	// NotBefore holds a deferred record back until then.
	NotBefore time.Time
	// Bad marks a file that will never parse: the runner claims it only to
	// fail it, without calling the target.
	Bad bool
	// Unread marks a file in new/ indexed at start from its name and ctime
	// alone: its model and priority are not known yet, and its Key is
	// UnreadKey until the watcher reads it (in the background, so the
	// first claim need not wait for a big backlog to be read).
	Unread bool
}

// UnreadKey is the load key of entries not read yet: a claimer that takes
// one must learn its real key from the claimed job.
const UnreadKey = "(unread)"

// before orders entries FIFO: arrival, then name.
func (e *Entry) before(o *Entry) bool {
	if !e.Arrived.Equal(o.Arrived) {
		return e.Arrived.Before(o.Arrived)
	}
	if e.Name != o.Name {
		return e.Name < o.Name
	}
	return e.Dir < o.Dir
}

// Queue is the in-memory index of claimable jobs, fed by a Watcher. It
// answers the scheduler's questions — the priorities with work, the oldest
// job at a priority, the oldest job and the backlog at a priority for one
// load key — each in O(1) or O(log n) (Keys in O(keys)), and takes inserts
// and removals in O(log n). It is safe for concurrent use.
type Queue struct {
	mu sync.Mutex
	// keyOf computes an entry's load key; lookup maps what OldestFor is
	// asked for to a key.
	keyOf   func(Entry) string
	lookup  func(string) string
	items   map[string]*item // by Dir/Name
	classes map[int]*class
	prios   []int // priorities with ready entries, highest first
	waiting timeHeap
	bad     []*item
	changed chan struct{}
	// batches holds batch files (new/NAME.jsonl) ready to be claimed.
	batches      map[string]Entry
	batchChanged chan struct{}
	// unread lists the Dir/Name of entries put with Unread, oldest first;
	// entries read, claimed or removed since are skipped.
	unread []string
}

type item struct {
	Entry
	key      string // Dir/Name
	idxAll   int
	idxModel int
	idxWait  int
	ready    bool
}

type class struct {
	all   entryHeap
	byKey map[string]*entryHeap
}

// NewQueue returns an empty queue whose load key is the model name alone.
// modelKey maps a model name to the form in which two names for one model
// are equal (nil: names as given); OldestFor takes a model name.
func NewQueue(modelKey func(string) string) *Queue {
	if modelKey == nil {
		modelKey = func(s string) string { return s }
	}
	return newQueue(func(e Entry) string { return modelKey(e.Model) }, modelKey)
}

// NewKeyedQueue returns an empty queue that groups entries by keyOf, the
// load key of an entry (its model and the options that decide whether the
// target must reload it); OldestFor takes such a key.
func NewKeyedQueue(keyOf func(Entry) string) *Queue {
	return newQueue(keyOf, func(s string) string { return s })
}

func newQueue(keyOf func(Entry) string, lookup func(string) string) *Queue {
	return &Queue{keyOf: keyOf, lookup: lookup, items: map[string]*item{}, classes: map[int]*class{}, changed: make(chan struct{}, 1), batches: map[string]Entry{}, batchChanged: make(chan struct{}, 1)}
}

// Changed is signalled (without blocking, coalesced) whenever entries are
// added.
func (q *Queue) Changed() <-chan struct{} { return q.changed }

func (q *Queue) signal() {
	select {
	case q.changed <- struct{}{}:
	default:
	}
}

// Put adds an entry or replaces the one with the same Dir and Name.
func (q *Queue) Put(e Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := e.Dir + "/" + e.Name
	if old, ok := q.items[key]; ok {
		q.remove(old)
	}
	if e.Unread {
		e.Key = UnreadKey
		q.unread = append(q.unread, key)
	} else {
		e.Key = q.keyOf(e)
	}
	it := &item{Entry: e, key: key, idxAll: -1, idxModel: -1, idxWait: -1}
	q.items[key] = it
	switch {
	case e.Bad:
		q.bad = append(q.bad, it)
	case !e.NotBefore.IsZero():
		heap.Push(&q.waiting, it)
	default:
		q.makeReady(it)
	}
	q.signal()
}

// PutBatch adds a batch file in new/, ready to be claimed.
func (q *Queue) PutBatch(e Entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.batches[e.Name] = e
	select {
	case q.batchChanged <- struct{}{}:
	default:
	}
}

// BatchChanged is signalled (without blocking, coalesced) whenever a batch
// file is added.
func (q *Queue) BatchChanged() <-chan struct{} { return q.batchChanged }

// NextBatch is the batch file that arrived first, if any.
func (q *Queue) NextBatch() (Entry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var first Entry
	found := false
	for _, e := range q.batches {
		if !found || e.before(&first) {
			first, found = e, true
		}
	}
	return first, found
}

// Unread returns up to n entries that were put Unread and are still
// indexed so, oldest first, for the watcher to read.
func (q *Queue) Unread(n int) []Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Entry
	i := 0
	for ; i < len(q.unread) && len(out) < n; i++ {
		if it, ok := q.items[q.unread[i]]; ok && it.Unread {
			out = append(out, it.Entry)
		}
	}
	q.unread = q.unread[i:]
	if len(q.unread) == 0 {
		q.unread = nil
	}
	return out
}

// HasUnread reports whether entries put Unread may still wait to be read.
func (q *Queue) HasUnread() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.unread) > 0
}

// Remove drops the entry for dir/name, if present.
func (q *Queue) Remove(dir, name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if dir == DirNew {
		delete(q.batches, name)
	}
	if it, ok := q.items[dir+"/"+name]; ok {
		q.remove(it)
	}
}

// Has reports whether dir/name is indexed.
func (q *Queue) Has(dir, name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.items[dir+"/"+name]
	return ok
}

// Len is the number of indexed entries, waiting ones included.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Reset empties the queue, for a full rescan.
func (q *Queue) Reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = map[string]*item{}
	q.classes = map[int]*class{}
	q.prios = nil
	q.waiting = nil
	q.bad = nil
	q.unread = nil
	q.batches = map[string]Entry{}
}

func (q *Queue) makeReady(it *item) {
	it.ready = true
	c := q.classes[it.Priority]
	if c == nil {
		c = &class{byKey: map[string]*entryHeap{}}
		q.classes[it.Priority] = c
		i := sort.Search(len(q.prios), func(i int) bool { return q.prios[i] <= it.Priority })
		q.prios = append(q.prios, 0)
		copy(q.prios[i+1:], q.prios[i:])
		q.prios[i] = it.Priority
	}
	heap.Push(&c.all, &heapRef{it: it, idx: &it.idxAll})
	h := c.byKey[it.Key]
	if h == nil {
		h = &entryHeap{}
		c.byKey[it.Key] = h
	}
	heap.Push(h, &heapRef{it: it, idx: &it.idxModel})
}

func (q *Queue) remove(it *item) {
	delete(q.items, it.key)
	switch {
	case it.Bad:
		for i, b := range q.bad {
			if b == it {
				q.bad = append(q.bad[:i], q.bad[i+1:]...)
				break
			}
		}
	case !it.ready:
		if it.idxWait >= 0 {
			heap.Remove(&q.waiting, it.idxWait)
		}
	default:
		c := q.classes[it.Priority]
		heap.Remove(&c.all, it.idxAll)
		h := c.byKey[it.Key]
		heap.Remove(h, it.idxModel)
		if h.Len() == 0 {
			delete(c.byKey, it.Key)
		}
		if c.all.Len() == 0 {
			delete(q.classes, it.Priority)
			for i, p := range q.prios {
				if p == it.Priority {
					q.prios = append(q.prios[:i], q.prios[i+1:]...)
					break
				}
			}
		}
	}
}

// Promote makes deferred entries whose NotBefore has passed claimable and
// returns when the next one falls due (zero if none waits).
func (q *Queue) Promote(now time.Time) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	moved := false
	for q.waiting.Len() > 0 && !q.waiting[0].NotBefore.After(now) {
		it := heap.Pop(&q.waiting).(*item)
		q.makeReady(it)
		moved = true
	}
	if moved {
		q.signal()
	}
	if q.waiting.Len() > 0 {
		return q.waiting[0].NotBefore
	}
	return time.Time{}
}

// TopPriority is the highest priority with a claimable entry.
func (q *Queue) TopPriority() (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.prios) == 0 {
		return 0, false
	}
	return q.prios[0], true
}

// Oldest is the first entry in FIFO order at priority p.
func (q *Queue) Oldest(p int) (Entry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.classes[p]
	if c == nil || c.all.Len() == 0 {
		return Entry{}, false
	}
	return c.all[0].it.Entry, true
}

// OldestFor is the first entry in FIFO order at priority p whose load key
// is key (for a NewQueue, whose model is key, compared through modelKey).
func (q *Queue) OldestFor(p int, key string) (Entry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.classes[p]
	if c == nil {
		return Entry{}, false
	}
	h := c.byKey[q.lookup(key)]
	if h == nil || h.Len() == 0 {
		return Entry{}, false
	}
	return (*h)[0].it.Entry, true
}

// Priorities lists the priorities that have claimable entries, highest
// first.
func (q *Queue) Priorities() []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]int(nil), q.prios...)
}

// KeyBacklog is one load key's claimable entries at one priority.
type KeyBacklog struct {
	Key    string
	Oldest Entry // the first in FIFO order
	Count  int
}

// Keys lists the load keys with claimable entries at priority p, each
// with its oldest entry and how many there are, oldest first.
func (q *Queue) Keys(p int) []KeyBacklog {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.classes[p]
	if c == nil {
		return nil
	}
	out := make([]KeyBacklog, 0, len(c.byKey))
	for k, h := range c.byKey {
		out = append(out, KeyBacklog{Key: k, Oldest: (*h)[0].it.Entry, Count: h.Len()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Oldest.before(&out[j].Oldest) })
	return out
}

// Bad returns an entry that will never parse, if any: the runner fails it
// before anything else, since it costs the target nothing.
func (q *Queue) Bad() (Entry, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.bad) == 0 {
		return Entry{}, false
	}
	return q.bad[0].Entry, true
}

// heapRef puts an item in one of several heaps, each with its own index.
type heapRef struct {
	it  *item
	idx *int
}

type entryHeap []*heapRef

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].it.before(&h[j].it.Entry) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	*h[i].idx, *h[j].idx = i, j
}
func (h *entryHeap) Push(x any) {
	r := x.(*heapRef)
	*r.idx = len(*h)
	*h = append(*h, r)
}
func (h *entryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	*r.idx = -1
	return r
}

// timeHeap orders waiting entries by NotBefore.
type timeHeap []*item

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].NotBefore.Before(h[j].NotBefore) }
func (h timeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idxWait, h[j].idxWait = i, j
}
func (h *timeHeap) Push(x any) {
	it := x.(*item)
	it.idxWait = len(*h)
	*h = append(*h, it)
}
func (h *timeHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	it.idxWait = -1
	return it
}
