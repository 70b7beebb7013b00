package hooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	// rescanEvery is how often the dispatcher lists pending/ in case the
	// watcher missed a file (another process's redeliver), and how often a
	// waiting dispatcher tries the lock again.
	rescanEvery = time.Minute
	// staleTemp is how old a dot-named temporary file in the outbox must be
	// before a scan removes it.
	staleTemp = time.Hour
	// maxRetryAfter caps how long a receiver's Retry-After can hold a
	// delivery back.
	maxRetryAfter = 24 * time.Hour
)

// dispatcher is Run's state. Only the run goroutine touches it; attempts run
// in their own goroutines and report on results.
type dispatcher struct {
	h         *Hooks
	items     map[string]*item   // pending deliveries by ID
	chains    map[string][]*item // by chain, oldest first: only the head may be sent
	chainBusy map[string]bool    // a chain with an attempt in flight
	inflight  map[string]int     // attempts in flight by endpoint
	busy      int                // attempts in flight
	results   chan result
}

// item is what the dispatcher keeps of a pending delivery; the file holds
// the rest.
type item struct {
	id     string
	chain  string // one job's deliveries to one URL, delivered in order
	origin string // the endpoint: scheme://host:port
	next   time.Time
}

// result is how an attempt ended.
type result struct {
	id      string
	d       *Delivery // as read before the attempt; nil if it could not be
	readErr error
	err     error // nil: delivered
	aborted bool  // Run is stopping: not counted
}

func chainOf(d *Delivery) string { return d.Source + "\x00" + d.Job + "\x00" + d.URL }

func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "invalid"
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// lockFile is the dispatcher's flock in dirOutbox: one dispatcher per
// outbox, or two would send each delivery twice and break the order of a
// job's events.
const lockFile = "dispatch.lock"

// lock takes the dispatcher lock, waiting (and retrying every h.poll)
// while another process holds it. Emitted deliveries are that process's to
// send meanwhile. It returns the lock file to close, or nil when ctx ended.
func (d *dispatcher) lock(ctx context.Context) (*os.File, error) {
	f, err := d.h.stateDir(dirOutbox).OpenFile(lockFile, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", dirOutbox, lockFile, err)
	}
	tick := time.NewTicker(d.h.poll)
	defer tick.Stop()
	for warned := false; ; warned = true {
		ok, err := tryLock(f)
		if ok || err != nil {
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("lock %s/%s: %w", dirOutbox, lockFile, err)
			}
			if warned {
				d.h.log.Info("delivering webhooks: the other dispatcher is gone")
			}
			return f, nil
		}
		if !warned {
			d.h.log.Warn("another process delivers this spool's webhooks; this one waits to take over")
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				f.Close()
				return nil, nil
			case <-d.h.wake: // the other dispatcher finds them on disk
				d.h.inboxMu.Lock()
				d.h.inbox = nil
				d.h.inboxMu.Unlock()
			case <-tick.C:
				waiting = false
			}
		}
	}
}

func (d *dispatcher) run(ctx context.Context) error {
	lock, err := d.lock(ctx)
	if err != nil || lock == nil {
		return err
	}
	defer lock.Close()
	if err := d.h.removeStale(); err != nil {
		d.h.log.Warn("cleaning the outbox", "err", err)
	}
	// Watch first, then scan: a file arriving in between is seen twice
	// (and loaded once) rather than missed.
	events, watchErrs, closeWatch := d.watch()
	defer closeWatch()
	if err := d.scan(); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescan := time.NewTicker(d.h.poll)
	defer rescan.Stop()
	for {
		if next := d.start(ctx); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(max(next.Sub(d.h.now()), 0))
		}
		select {
		case <-ctx.Done():
			for d.busy > 0 {
				d.finish(<-d.results)
			}
			return nil
		case r := <-d.results:
			d.finish(r)
		case <-d.h.wake:
			d.h.inboxMu.Lock()
			inbox := d.h.inbox
			d.h.inbox = nil
			d.h.inboxMu.Unlock()
			for _, del := range inbox {
				if _, ok := d.items[del.ID]; !ok {
					d.add(del)
				}
			}
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if id, ok := deliveryName(filepath.Base(ev.Name)); ok && ev.Has(fsnotify.Create) {
				if _, known := d.items[id]; !known {
					d.load(id)
				}
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			d.h.log.Warn("watching the outbox; rescanning", "err", err)
			d.rescan()
		case <-rescan.C:
			d.rescan()
		case <-timer.C:
		}
	}
}

// watch watches pending/ for files other processes put there. If it cannot,
// the periodic rescan does.
func (d *dispatcher) watch() (<-chan fsnotify.Event, <-chan error, func()) {
	w, err := fsnotify.NewBufferedWatcher(1024)
	if err == nil {
		if err = w.Add(d.h.stateDir(dirPending).Path()); err != nil {
			w.Close()
		}
	}
	if err != nil {
		d.h.log.Warn("cannot watch the outbox; looking every minute", "err", err)
		return nil, nil, func() {}
	}
	return w.Events, w.Errors, func() { w.Close() }
}

// scan loads every pending delivery.
func (d *dispatcher) scan() error {
	ids, err := d.h.listIDs(dirPending)
	if err != nil {
		return err
	}
	for _, id := range ids {
		d.load(id)
	}
	return nil
}

// rescan loads pending deliveries it does not know and forgets those whose
// file is gone.
func (d *dispatcher) rescan() {
	ids, err := d.h.listIDs(dirPending)
	if err != nil {
		d.h.log.Error("reading the outbox", "err", err)
		return
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
		if _, ok := d.items[id]; !ok {
			d.load(id)
		}
	}
	for id, it := range d.items {
		if !seen[id] && !d.chainBusy[it.chain] {
			d.drop(it)
		}
	}
}

// load reads pending/ID.json into the dispatcher. A file that says it failed
// (a crash came between rewriting and moving it) is moved to failed/; one
// that cannot be read is set aside there as ID.bad.
func (d *dispatcher) load(id string) {
	del, err := d.h.readDelivery(dirPending, id)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		d.setAside(id, err)
	case del.State == StateFailed:
		if err := d.h.move(dirPending, id, dirFailed, id+".json"); err != nil {
			d.h.log.Error("moving a failed delivery to failed/", "id", id, "err", err)
		}
	default:
		d.add(del)
	}
}

func (d *dispatcher) setAside(id string, cause error) {
	err := d.h.move(dirPending, id, dirFailed, id+".bad")
	d.h.log.Error("unreadable delivery set aside as failed/"+id+".bad", "id", id, "err", cause, "move_err", err)
}

func (d *dispatcher) add(del *Delivery) {
	it := &item{id: del.ID, chain: chainOf(del), origin: originOf(del.URL), next: del.NextAttemptAt}
	d.items[it.id] = it
	c := d.chains[it.chain]
	i, _ := slices.BinarySearchFunc(c, it.id, func(x *item, id string) int { return strings.Compare(x.id, id) })
	d.chains[it.chain] = slices.Insert(c, i, it)
}

func (d *dispatcher) drop(it *item) {
	delete(d.items, it.id)
	c := slices.DeleteFunc(d.chains[it.chain], func(x *item) bool { return x == it })
	if len(c) == 0 {
		delete(d.chains, it.chain)
	} else {
		d.chains[it.chain] = c
	}
}

// start sends every chain's head that is due, as far as its endpoint has
// room, and returns when the next waiting head falls due (zero: none).
func (d *dispatcher) start(ctx context.Context) time.Time {
	if ctx.Err() != nil {
		return time.Time{}
	}
	now := d.h.now()
	var next time.Time
	for key, c := range d.chains {
		if d.chainBusy[key] {
			continue
		}
		it := c[0]
		if it.next.After(now) {
			if next.IsZero() || it.next.Before(next) {
				next = it.next
			}
			continue
		}
		if d.inflight[it.origin] >= d.h.cfg.Workers {
			continue
		}
		d.chainBusy[key] = true
		d.inflight[it.origin]++
		d.busy++
		go func(id string) { d.results <- d.h.attempt(ctx, id) }(it.id)
	}
	return next
}

// finish records how an attempt ended: delivered (the file goes), failed
// for good (to failed/), or failed for now (rescheduled in its file).
func (d *dispatcher) finish(r result) {
	h := d.h
	it := d.items[r.id]
	delete(d.chainBusy, it.chain)
	if d.inflight[it.origin]--; d.inflight[it.origin] == 0 {
		delete(d.inflight, it.origin)
	}
	d.busy--
	switch {
	case r.aborted:
		return
	case r.d == nil:
		if !errors.Is(r.readErr, fs.ErrNotExist) {
			d.setAside(r.id, r.readErr)
		}
		d.drop(it)
		return
	}
	del := r.d
	// URLs may hold secrets (chat webhooks do): logs name the endpoint only;
	// the delivery file and hopper hooks have the URL.
	log := h.log.With("id", del.ID, "job", del.Job, "event", del.Type, "endpoint", it.origin)
	if r.err == nil {
		if err := h.stateDir(dirPending).Remove(del.ID + ".json"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Error("removing a delivered webhook from the outbox", "err", err)
		}
		log.Info("webhook delivered", "attempts", del.Attempts+1)
		d.drop(it)
		return
	}
	now := h.now()
	del.Attempts++
	del.LastAttemptAt, del.LastError = now, r.err.Error()
	del.LastStatus = 0
	var se *statusError
	if errors.As(r.err, &se) {
		del.LastStatus = se.status
	}
	var perm *permanentError
	if errors.As(r.err, &perm) || del.Attempts >= len(h.cfg.Schedule) {
		if err := h.giveUp(del); err != nil {
			log.Error("moving a failed delivery to failed/", "err", err)
		}
		log.Warn("webhook failed; giving up", "attempts", del.Attempts, "err", r.err, "redeliver", "hopper hooks redeliver "+del.ID)
		if se != nil && se.status == http.StatusGone && del.Source == SourceConfig {
			if err := h.disable(del.URL, se.status, "answered 410 Gone"); err != nil {
				log.Error("disabling the endpoint", "err", err)
			}
			log.Warn("webhook endpoint answered 410 Gone: disabled (hopper hooks enable URL)")
		}
		d.drop(it)
		return
	}
	var retryAfter time.Duration
	if se != nil {
		retryAfter = se.retryAfter
	}
	del.NextAttemptAt = h.nextAttempt(now, del.Attempts, retryAfter)
	if err := h.saveDelivery(dirPending, del); err != nil {
		log.Error("recording a failed attempt", "err", err)
	}
	it.next = del.NextAttemptAt
	log.Info("webhook attempt failed; will retry", "attempts", del.Attempts, "next_attempt_at", del.NextAttemptAt, "err", r.err)
}

// nextAttempt is when to try again after the given number of failed
// attempts: the schedule's delay ±10% jitter, or Retry-After if that is
// later.
func (h *Hooks) nextAttempt(now time.Time, attempts int, retryAfter time.Duration) time.Time {
	delay := time.Duration(float64(h.cfg.Schedule[attempts]) * (0.9 + 0.2*h.cfg.Jitter()))
	return now.Add(max(delay, min(retryAfter, maxRetryAfter)))
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// removeStale removes temporary files that writers left behind.
func (h *Hooks) removeStale() error {
	var errs []error
	for _, dir := range []string{dirPending, dirFailed, dirDisabled} {
		if _, err := h.stateDir(dir).RemoveStale(h.now().Add(-staleTemp)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// A permanentError ends a delivery at once: another attempt cannot help.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// A statusError is an answer other than 2xx.
type statusError struct {
	status     int
	retryAfter time.Duration
	location   string // a redirect's target, not followed
	body       string // the start of the answer
}

func (e *statusError) Error() string {
	msg := "answered " + strconv.Itoa(e.status)
	if t := http.StatusText(e.status); t != "" {
		msg += " " + t
	}
	if e.location != "" {
		msg += " (redirect to " + e.location + " not followed)"
	}
	if e.body != "" {
		msg += ": " + e.body
	}
	return msg
}

// attempt sends pending/ID.json once.
func (h *Hooks) attempt(ctx context.Context, id string) result {
	del, err := h.readDelivery(dirPending, id)
	if err != nil {
		return result{id: id, readErr: err}
	}
	err = h.send(ctx, del)
	return result{id: id, d: del, err: err, aborted: err != nil && ctx.Err() != nil}
}

// send makes one attempt to deliver d.
func (h *Hooks) send(ctx context.Context, d *Delivery) error {
	var key []byte
	switch d.Source {
	case SourceJob:
		key = h.jobKey
	case SourceConfig:
		i := slices.IndexFunc(h.endpoints, func(e endpoint) bool { return e.url == d.URL })
		if i < 0 {
			return &permanentError{errors.New("endpoint is no longer in hooks.webhooks")}
		}
		if h.disabled(d.URL) {
			return &permanentError{errors.New("endpoint is disabled (it answered 410 Gone)")}
		}
		key = h.endpoints[i].key
	default:
		return &permanentError{fmt.Errorf("unknown source %q", d.Source)}
	}
	if err := checkURL(d.URL); err != nil {
		return &permanentError{err}
	}
	var body bytes.Buffer
	if err := json.Compact(&body, d.Payload); err != nil {
		return &permanentError{fmt.Errorf("payload: %w", err)}
	}
	actx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, d.URL, bytes.NewReader(body.Bytes()))
	if err != nil {
		return &permanentError{err}
	}
	ts := strconv.FormatInt(h.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hopper-webhooks")
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", ts)
	if key != nil {
		req.Header.Set("webhook-signature", sign(key, d.ID, ts, body.Bytes()))
	}
	client := h.trusted
	if d.Untrusted {
		client = h.guarded
	}
	resp, err := client.Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a secret
		}
		var refused *refusedError
		switch {
		case errors.As(err, &refused):
			return &permanentError{refused}
		case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("no answer within %s", h.cfg.Timeout)
		}
		return err
	}
	defer resp.Body.Close()
	start, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	se := &statusError{
		status:     resp.StatusCode,
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), h.now()),
		body:       strings.TrimSpace(strings.ToValidUTF8(string(start), "?")),
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		se.location = resp.Header.Get("Location")
	}
	if resp.StatusCode == http.StatusGone {
		return &permanentError{se}
	}
	return se
}

// sign returns the Standard Webhooks signature header of one attempt.
func sign(key []byte, id, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + timestamp + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}
