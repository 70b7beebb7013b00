package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

// Live output: the stream follows the output of at most maxFollowed
// running jobs and sends the last textTail bytes of each.
const (
	maxFollowed = 8
	textTail    = 1200
)

// tokens is one running job's live output as an event carries it.
type tokens struct {
	ID     string `json:"id"`
	Tokens int    `json:"tokens"`
	Text   string `json:"text"`
}

// chunk is one line of a job's output, as a follower hands it over.
type chunk struct {
	id   string
	text string
}

// serveEvents serves GET /ui/events: Server-Sent Events. A "snapshot"
// event carries the page's data (as /ui/data.json) when the stream opens,
// when jobs change (at most every minGap) and every refresh; a "tokens"
// event carries the live output of running jobs as it arrives; a comment
// every heartbeat keeps proxies from closing an idle stream. The stream
// ends with the request or when Config.Done is closed.
func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case h.streams <- struct{}{}:
		defer func() { <-h.streams }()
	default:
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many dashboard streams are open; try again shortly", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives any write timeout
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	ctx, cancel := context.WithCancel(r.Context())
	st := &stream{h: h, w: w, rc: rc, ctx: ctx, followers: map[string]context.CancelFunc{},
		live: map[string]*tokens{}, chunks: make(chan chunk, 256)}
	defer func() {
		cancel()
		st.wg.Wait() // the followers
	}()
	if err := st.run(); err != nil && ctx.Err() == nil {
		h.cfg.Logger.Debug("dashboard: event stream ended", "remote", r.RemoteAddr, "err", err)
	}
}

// stream is one open event stream. Its state belongs to the goroutine
// running run; followers hand it output over chunks.
type stream struct {
	h   *Handler
	w   http.ResponseWriter
	rc  *http.ResponseController
	ctx context.Context

	followers map[string]context.CancelFunc // running jobs followed
	live      map[string]*tokens            // their output so far
	dirty     map[string]bool               // live entries not sent yet
	chunks    chan chunk
	wg        sync.WaitGroup
}

func (st *stream) run() error {
	t := st.h.t
	if err := st.write([]byte("retry: 3000\n\n")); err != nil {
		return err
	}
	var changed <-chan struct{}
	last := time.Time{}
	send := func() error {
		changed = st.h.cfg.Catalog.Changed()
		snap := st.h.snapshot()
		data, err := json.Marshal(snap)
		if err != nil {
			return err
		}
		last = time.Now()
		st.follow(snap)
		return st.event("snapshot", data)
	}
	if err := send(); err != nil {
		return err
	}
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	var gapC <-chan time.Time // armed while a snapshot waits for minGap
	refresh := time.NewTicker(t.refresh)
	defer refresh.Stop()
	heartbeat := time.NewTicker(t.heartbeat)
	defer heartbeat.Stop()
	flush := time.NewTicker(t.flush)
	defer flush.Stop()
	for {
		var err error
		select {
		case <-st.ctx.Done():
			return nil
		case <-st.h.cfg.Done:
			return nil
		case <-changed:
			changed = nil // until the next snapshot takes it again
			if wait := t.minGap - time.Since(last); wait > 0 {
				gap.Reset(wait)
				gapC = gap.C
			} else {
				err = send()
			}
		case <-gapC:
			gapC = nil
			err = send()
		case <-refresh.C:
			if gapC == nil && time.Since(last) >= t.refresh/2 {
				err = send()
			}
		case <-heartbeat.C:
			err = st.write([]byte(": ping\n\n"))
		case c := <-st.chunks:
			st.add(c)
		case <-flush.C:
			err = st.sendTokens()
		}
		if err != nil {
			return err
		}
	}
}

// follow starts following the output of the running jobs in snap (up to
// maxFollowed) and stops following those no longer running.
func (st *stream) follow(snap *Snapshot) {
	running := map[string]bool{}
	for _, j := range snap.Running.Jobs {
		running[j.ID] = true
	}
	for id, stop := range st.followers {
		if !running[id] {
			stop()
			delete(st.followers, id)
			delete(st.live, id)
			delete(st.dirty, id)
		}
	}
	for _, j := range snap.Running.Jobs {
		if len(st.followers) == maxFollowed {
			break
		}
		if _, ok := st.followers[j.ID]; ok {
			continue
		}
		ctx, stop := context.WithCancel(st.ctx)
		st.followers[j.ID] = stop
		st.live[j.ID] = &tokens{ID: j.ID}
		id := j.ID
		st.wg.Go(func() {
			defer stop()
			_, _ = st.h.cfg.Spool.Follow(ctx, id, func(line []byte) error {
				select {
				case st.chunks <- chunk{id: id, text: ollama.ChunkText(line)}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
		})
	}
}

// add counts a chunk of output against its job.
func (st *stream) add(c chunk) {
	l, ok := st.live[c.id]
	if !ok {
		return // no longer followed
	}
	l.Tokens++
	if c.text != "" {
		l.Text = tail(l.Text+c.text, textTail)
	}
	if st.dirty == nil {
		st.dirty = map[string]bool{}
	}
	st.dirty[c.id] = true
}

// sendTokens sends the live output that changed since it last did.
func (st *stream) sendTokens() error {
	if len(st.dirty) == 0 {
		return nil
	}
	list := make([]*tokens, 0, len(st.dirty))
	for id := range st.dirty {
		list = append(list, st.live[id])
	}
	st.dirty = nil
	data, err := json.Marshal(map[string]any{"jobs": list})
	if err != nil {
		return err
	}
	return st.event("tokens", data)
}

// event writes one event; data is one line of JSON.
func (st *stream) event(name string, data []byte) error {
	var b bytes.Buffer
	b.Grow(len(data) + len(name) + 16)
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	return st.write(b.Bytes())
}

func (st *stream) write(p []byte) error {
	if _, err := st.w.Write(p); err != nil {
		return err
	}
	return st.rc.Flush()
}
