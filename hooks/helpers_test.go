package hooks

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/spool"
)

// wait is how long a test waits for something that should happen at once.
const wait = 10 * time.Second

var (
	jobSecret    = "whsec_" + base64.StdEncoding.EncodeToString([]byte("hopper job secret, test only"))
	configSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("hopper endpoint secret, test"))
)

// tinySchedule retries quickly: four attempts, 10ms apart.
func tinySchedule() []time.Duration {
	return []time.Duration{0, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}
}

func newSpool(t *testing.T) *spool.Spool {
	t.Helper()
	s, err := spool.Init(filepath.Join(t.TempDir(), "spool"), spool.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// logRecord is one line a Hooks logged.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// logs collects what a Hooks logs, for tests to wait on.
type logs struct {
	t  *testing.T
	ch chan logRecord
}

func newLogs(t *testing.T) *logs { return &logs{t: t, ch: make(chan logRecord, 10000)} }

// handler is a slog.Handler that sends every record to l.ch (and the test
// log).
type handler struct {
	l     *logs
	attrs []slog.Attr
}

func (h *handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.l.t.Logf("%s %s %v", r.Level, r.Message, rec.attrs)
	select {
	case h.l.ch <- rec:
	default:
	}
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{l: h.l, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h *handler) WithGroup(string) slog.Handler { return h }

func (l *logs) logger() *slog.Logger { return slog.New(&handler{l: l}) }

// waitFor returns the first record with message msg (and, if set, the
// attribute values in attrs), failing the test after wait.
func (l *logs) waitFor(msg string, attrs ...string) logRecord {
	l.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case r := <-l.ch:
			if r.msg != msg {
				continue
			}
			ok := true
			for i := 0; i+1 < len(attrs); i += 2 {
				if r.attrs[attrs[i]] != attrs[i+1] {
					ok = false
				}
			}
			if ok {
				return r
			}
		case <-deadline:
			l.t.Fatalf("no log %q %v within %s", msg, attrs, wait)
			return logRecord{}
		}
	}
}

// until returns every record up to and including the first with message
// msg, failing the test after wait.
func (l *logs) until(msg string) []logRecord {
	l.t.Helper()
	var out []logRecord
	deadline := time.After(wait)
	for {
		select {
		case r := <-l.ch:
			out = append(out, r)
			if r.msg == msg {
				return out
			}
		case <-deadline:
			l.t.Fatalf("no log %q within %s", msg, wait)
			return nil
		}
	}
}

// newHooks returns Hooks on s with test defaults (a tiny schedule, no
// jitter, the logs) under cfg's settings.
func newHooks(t *testing.T, s *spool.Spool, l *logs, cfg Config) *Hooks {
	t.Helper()
	cfg.Spool = s
	if cfg.Schedule == nil {
		cfg.Schedule = tinySchedule()
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func() float64 { return 0.5 }
	}
	if cfg.Logger == nil {
		cfg.Logger = l.logger()
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// run runs h until the test ends, or until the returned stop is called.
func run(t *testing.T, h *Hooks) (stop func()) {
	t.Helper()
	return runtest.Start(t, "Run", wait, h.Run)
}

// hit is one request a receiver got.
type hit struct {
	id, timestamp, signature string
	body                     []byte
	env                      struct {
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
		Data      Event     `json:"data"`
	}
}

// receiver starts an HTTP server on 127.0.0.1 that verifies every request's
// signature with secret (unless empty) and answers with answer(hit), sending
// each hit on the returned channel.
func receiver(t *testing.T, secret string, answer func(w http.ResponseWriter, r *http.Request, h hit)) (*httptest.Server, <-chan hit) {
	t.Helper()
	var wh *standardwebhooks.Webhook
	if secret != "" {
		var err error
		if wh, err = standardwebhooks.NewWebhook(secret); err != nil {
			t.Fatal(err)
		}
	}
	hits := make(chan hit, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		h := hit{id: r.Header.Get("webhook-id"), timestamp: r.Header.Get("webhook-timestamp"), signature: r.Header.Get("webhook-signature"), body: body}
		if wh != nil {
			if err := wh.Verify(body, r.Header); err != nil {
				t.Errorf("signature of %s: %v", h.id, err)
			}
		}
		if err := json.Unmarshal(body, &h.env); err != nil {
			t.Errorf("body of %s: %v", h.id, err)
		}
		if answer != nil {
			answer(w, r, h)
		} else {
			w.WriteHeader(http.StatusNoContent)
		}
		if r.Context().Err() == nil { // not a request the sender gave up on
			hits <- h
		}
	}))
	t.Cleanup(srv.Close)
	return srv, hits
}

// next returns the next hit, failing the test after wait.
func next(t *testing.T, hits <-chan hit) hit {
	t.Helper()
	return runtest.Receive(t, hits, wait, "a request")
}

// event returns job id's event for entering state.
func event(id string, state, previous spool.State, attempt int) Event {
	return Event{
		Type: "job." + string(state), ID: id, State: state, PreviousState: previous,
		Timestamp: time.Now().UTC(), Model: "llama3.2", Attempt: attempt,
	}
}

func emit(t *testing.T, h *Hooks, ev Event, webhook string, untrusted bool) {
	t.Helper()
	if err := h.Emit(ev, webhook, untrusted); err != nil {
		t.Fatalf("Emit: %v", err)
	}
}

func mustLen[T any](t *testing.T, what string, s []T, n int) {
	t.Helper()
	if len(s) != n {
		t.Fatalf("%s: got %d, want %d: %s", what, len(s), n, fmt.Sprint(s))
	}
}
