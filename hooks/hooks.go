package hooks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/spool"
)

// Hooks emits events and, while Run runs, delivers them. Its methods are
// safe for concurrent use.
type Hooks struct {
	cfg       Config // defaults applied
	log       *slog.Logger
	fsync     bool
	dir       string // exec hooks, absolute; "" for none
	jobKey    []byte // signs the jobs' webhooks; nil: unsigned
	endpoints []endpoint
	trusted   *http.Client
	guarded   *http.Client  // for untrusted URLs: refuses private addresses
	poll      time.Duration // rescanEvery; shorter in tests

	dirsMu   sync.Mutex
	dirsMade bool

	seqMu   sync.Mutex
	lastSeq uint64

	running atomic.Bool
	inboxMu sync.Mutex
	inbox   []*Delivery   // emitted while Run runs, for it to take
	wake    chan struct{} // signalled when inbox grows
	exec    chan execJob
}

// endpoint is a configured webhook, its secret decoded.
type endpoint struct {
	url    string
	key    []byte
	events []string
}

func (e endpoint) wants(typ string) bool {
	return len(e.events) == 0 || slices.Contains(e.events, typ)
}

// execQueueLen bounds the exec hooks waiting to run.
const execQueueLen = 1000

// New checks cfg and returns Hooks for it. It does no I/O: the outbox's
// directories are created when first needed.
func New(cfg Config) (*Hooks, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Schedule) == 0 {
		cfg.Schedule = DefaultSchedule()
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 15*time.Second)
	cfg.ExecTimeout = cmp.Or(cfg.ExecTimeout, 30*time.Second)
	cfg.Workers = cmp.Or(cfg.Workers, 4)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	h := &Hooks{
		cfg:   cfg,
		log:   cfg.Logger,
		fsync: cfg.Spool.Options().Fsync,
		poll:  rescanEvery,
		wake:  make(chan struct{}, 1),
		exec:  make(chan execJob, execQueueLen),
	}
	h.jobKey, _ = decodeSecret(cfg.Secret)
	for _, w := range cfg.Webhooks {
		key, _ := decodeSecret(w.Secret)
		if key == nil {
			key = h.jobKey
		}
		h.endpoints = append(h.endpoints, endpoint{url: w.URL, key: key, events: w.Events})
	}
	if cfg.Dir != "" {
		dir, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return nil, &ConfigError{Field: "hooks.dir", Err: err}
		}
		h.dir = dir
	}
	allow, _ := parseAllow(cfg.Allow)
	h.trusted, h.guarded = newClients(cfg.HTTPClient, allow)
	return h, nil
}

func (h *Hooks) now() time.Time { return h.cfg.Now() }

// nextSeq returns a delivery sequence number: the clock in nanoseconds,
// kept increasing.
func (h *Hooks) nextSeq() uint64 {
	h.seqMu.Lock()
	defer h.seqMu.Unlock()
	s := uint64(max(h.now().UnixNano(), 0))
	if s <= h.lastSeq {
		s = h.lastSeq + 1
	}
	h.lastSeq = s
	return s
}

// Emit records ev for delivery: to jobWebhook (if not empty; untrusted when
// the job came over HTTP) and to every configured webhook that wants
// ev.Type and is not disabled, one outbox file each, written (and fsynced
// when the spool fsyncs) before Emit returns. It queues the exec hook named
// after ev.State too. It never waits on a receiver or a hook. An error means
// some deliveries may not have been recorded; the job must not change
// because of it.
func (h *Hooks) Emit(ev Event, jobWebhook string, untrusted bool) error {
	data, err := compactJSON(ev)
	if err != nil {
		return fmt.Errorf("emit %s for %s: %w", ev.Type, ev.ID, err)
	}
	h.queueExec(ev, data)

	var ds []*Delivery
	add := func(url, source string, untrusted bool) {
		ds = append(ds, &Delivery{Type: ev.Type, Job: ev.ID, URL: url, Source: source, Untrusted: untrusted, State: StatePending})
	}
	if jobWebhook != "" {
		add(jobWebhook, SourceJob, untrusted)
	}
	for _, e := range h.endpoints {
		if !e.wants(ev.Type) {
			continue
		}
		if h.disabled(e.url) {
			h.log.Debug("webhook endpoint is disabled; event not sent", "endpoint", originOf(e.url), "event", ev.Type, "job", ev.ID)
			continue
		}
		add(e.url, SourceConfig, false)
	}
	if len(ds) == 0 {
		return nil
	}
	body, err := compactJSON(envelope{Type: ev.Type, Timestamp: ev.Timestamp, Data: data})
	if err != nil {
		return fmt.Errorf("emit %s for %s: %w", ev.Type, ev.ID, err)
	}
	if err := h.ensureDirs(); err != nil {
		return fmt.Errorf("emit %s for %s: %w", ev.Type, ev.ID, err)
	}
	now := h.now()
	for _, d := range ds {
		d.ID = h.deliveryID(ev, d)
		d.CreatedAt, d.NextAttemptAt = now, now.Add(h.cfg.Schedule[0])
		d.Payload = body
		data, err := encodeDelivery(d)
		if err == nil {
			err = h.writeFile(dirPending, d.ID+".json", data, h.fsync)
		}
		if err != nil {
			return fmt.Errorf("emit %s for %s: %w", ev.Type, ev.ID, err)
		}
		d.Payload = nil // the dispatcher reads it from the file
	}
	if h.fsync {
		if err := h.syncDir(dirPending); err != nil {
			return fmt.Errorf("emit %s for %s: %w", ev.Type, ev.ID, err)
		}
	}
	if h.running.Load() {
		h.inboxMu.Lock()
		h.inbox = append(h.inbox, ds...)
		h.inboxMu.Unlock()
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Run delivers webhooks and runs exec hooks until ctx ends, then waits for
// the attempts in flight to stop (canceled ones are not counted) and returns
// nil. It first takes up what the outbox holds, whoever left it there. Only
// one Run may run at a time.
func (h *Hooks) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("hooks: Run is already running")
	}
	defer h.running.Store(false)
	h.inboxMu.Lock()
	h.inbox = nil // on disk, so the first scan finds them
	h.inboxMu.Unlock()
	if err := h.ensureDirs(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	execDone := make(chan struct{})
	go func() {
		defer close(execDone)
		h.runExec(ctx)
	}()
	defer func() {
		cancel()
		<-execDone
	}()
	d := &dispatcher{
		h:         h,
		items:     map[string]*item{},
		chains:    map[string][]*item{},
		chainBusy: map[string]bool{},
		inflight:  map[string]int{},
		results:   make(chan result),
	}
	return d.run(ctx)
}

// EmitJob emits the event for rec's new state, coming from previous, with
// the delivery settings its job gives: the job's webhook and meta, and
// whether it came over HTTP (then the webhook is SSRF-guarded). job may be
// nil: it is then read from the record.
func (h *Hooks) EmitJob(rec *spool.Record, previous spool.State, job *spool.Job) error {
	if job == nil {
		job, _ = spool.ParseJob(rec.Job, 0)
	}
	var webhook string
	var meta json.RawMessage
	untrusted := false
	if job != nil {
		webhook, meta, untrusted = job.Webhook, job.Meta, job.Origin == spool.OriginHTTP
	}
	return h.Emit(EventFor(rec, previous, meta, h.now()), webhook, untrusted)
}

// EmitBatch emits a batch's batch.done event, once its output is written
// (or it was refused as a whole): to the configured webhooks that want it
// and to the exec hook batch.done. Its state is the batch's.
func (h *Hooks) EmitBatch(b *batch.Record) error {
	ev := Event{Type: TypeBatchDone, ID: b.ID, State: spool.State(b.State), Timestamp: h.now().UTC(), Batch: b}
	for _, t := range []*time.Time{b.FinalizingAt, b.FailedAt} {
		if t != nil {
			ev.once = *t
			break
		}
	}
	return h.Emit(ev, "", false)
}
