package hooks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

func TestEventFor(t *testing.T) {
	now := time.Date(2026, 11, 27, 23, 10, 5, 0, time.UTC)
	t.Run("WorkingCarriesNoAnswer", func(t *testing.T) {
		rec := &spool.Record{ID: "j1", State: spool.StateWorking, Model: "llama3.2", Attempts: 1,
			Job: json.RawMessage(`{"model":"llama3.2","meta":{"ticket":42}}`), Response: json.RawMessage(`{"x":1}`)}
		ev := EventFor(rec, spool.StateLoading, nil, now)
		if ev.Type != TypeWorking || ev.PreviousState != spool.StateLoading || ev.Attempt != 1 || ev.Model != "llama3.2" {
			t.Errorf("got %+v", ev)
		}
		if string(ev.Meta) != `{"ticket":42}` {
			t.Errorf("meta: got %s, want the job's", ev.Meta)
		}
		if ev.Response != nil {
			t.Errorf("response on a working event: %s", ev.Response)
		}
	})
	t.Run("DoneCarriesResponseOutputAndFieldNamesOfDesign", func(t *testing.T) {
		rec := &spool.Record{ID: "j1", State: spool.StateDone, Attempts: 2,
			Response: json.RawMessage(`{"message":{"content":"hi"}}`), Output: json.RawMessage(`{"a":1}`)}
		ev := EventFor(rec, spool.StateWorking, json.RawMessage(`{"k":"v"}`), now)
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"type", "id", "state", "previous_state", "timestamp", "model", "attempt", "meta", "response", "output"} {
			if _, ok := m[k]; !ok {
				t.Errorf("no %q in %s", k, data)
			}
		}
		if m["type"] != "job.done" || m["timestamp"] != "2026-11-27T23:10:05Z" {
			t.Errorf("got %s", data)
		}
	})
	t.Run("FailedCarriesError", func(t *testing.T) {
		rec := &spool.Record{ID: "j1", State: spool.StateFailed, Error: &spool.JobError{Kind: spool.KindTimeout, Message: "too slow"}}
		ev := EventFor(rec, spool.StateWorking, nil, now)
		if ev.Error == nil || ev.Error.Kind != spool.KindTimeout || ev.Meta != nil {
			t.Errorf("got %+v", ev)
		}
	})
}

func TestSignaturesVerifyWithStandardWebhooksLibrary(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	jobSrv, jobHits := receiver(t, jobSecret, nil)
	cfgSrv, cfgHits := receiver(t, configSecret, nil)
	unsignedSrv, unsignedHits := receiver(t, "", nil)
	h := newHooks(t, s, l, Config{
		Secret: jobSecret,
		Webhooks: []Webhook{
			{URL: cfgSrv.URL + "/hook", Secret: configSecret, Events: []string{TypeDone}},
		},
	})
	run(t, h)
	ev := event("job-1", spool.StateDone, spool.StateWorking, 1)
	ev.Response = json.RawMessage(`{"message": {"content": "<b>&</b>"}}`)
	emit(t, h, ev, jobSrv.URL, false)
	emit(t, h, event("job-1", spool.StateWorking, spool.StateLoading, 1), jobSrv.URL, false) // not for the configured endpoint

	for _, hits := range []<-chan hit{jobHits, cfgHits} {
		got := next(t, hits)
		if got.env.Type != TypeDone || got.env.Data.ID != "job-1" || got.env.Data.State != spool.StateDone {
			t.Errorf("got body %s", got.body)
		}
		if !bytes.Contains(got.body, []byte(`{"message":{"content":"<b>&</b>"}}`)) {
			t.Errorf("response not passed through compact and unescaped: %s", got.body)
		}
	}
	if got := next(t, jobHits); got.env.Type != TypeWorking {
		t.Errorf("second event to the job's webhook: got %s", got.env.Type)
	}
	select {
	case got := <-cfgHits:
		t.Errorf("configured endpoint filtered to job.done got %s", got.env.Type)
	default:
	}

	t.Run("NoSecretNoSignature", func(t *testing.T) {
		h := newHooks(t, newSpool(t), l, Config{})
		run(t, h)
		emit(t, h, event("job-2", spool.StateQueued, "", 0), unsignedSrv.URL, false)
		if got := next(t, unsignedHits); got.signature != "" || got.id == "" || got.timestamp == "" {
			t.Errorf("got id %q timestamp %q signature %q", got.id, got.timestamp, got.signature)
		}
	})
}

func TestRefusingReceiverGetsEachJobsEventsInOrderWithStableIDs(t *testing.T) {
	const refusals = 2
	s, l := newSpool(t), newLogs(t)
	var mu sync.Mutex
	tries := map[string]int{}          // webhook-id → requests
	bodies := map[string][]byte{}      // webhook-id → first body
	seen := map[string][]spool.State{} // job → states received, refused ones too
	accepted := make(chan hit, 100)
	srv, _ := receiver(t, jobSecret, func(w http.ResponseWriter, r *http.Request, h hit) {
		mu.Lock()
		defer mu.Unlock()
		tries[h.id]++
		if b, ok := bodies[h.id]; ok && !bytes.Equal(b, h.body) {
			t.Errorf("%s: body changed between attempts:\n%s\n%s", h.id, b, h.body)
		}
		bodies[h.id] = h.body
		seen[h.env.Data.ID] = append(seen[h.env.Data.ID], h.env.Data.State)
		if tries[h.id] <= refusals {
			http.Error(w, "not yet", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
		accepted <- h
	})
	h := newHooks(t, s, l, Config{Secret: jobSecret})
	states := []spool.State{spool.StateQueued, spool.StateLoading, spool.StateWorking, spool.StateDone}
	emitJob := func(id string) {
		var prev spool.State
		for _, st := range states {
			emit(t, h, event(id, st, prev, 1), srv.URL, false)
			prev = st
		}
	}
	emitJob("a") // before Run: found by its first scan
	run(t, h)
	emitJob("b")
	emitJob("c")

	order := map[string][]spool.State{}
	for range 12 {
		got := <-accepted
		order[got.env.Data.ID] = append(order[got.env.Data.ID], got.env.Data.State)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{"a", "b", "c"} {
		if !slices.Equal(order[id], states) {
			t.Errorf("job %s: delivered %v, want %v", id, order[id], states)
		}
		// Refused attempts included, no event came before an earlier one
		// was accepted.
		var want []spool.State
		for _, st := range states {
			for range refusals + 1 {
				want = append(want, st)
			}
		}
		if !slices.Equal(seen[id], want) {
			t.Errorf("job %s: received %v, want %v", id, seen[id], want)
		}
	}
	if len(tries) != 12 {
		t.Errorf("got %d distinct webhook-ids, want 12 (one per event, stable across retries)", len(tries))
	}
	for id, n := range tries {
		if n != refusals+1 {
			t.Errorf("%s: %d requests, want %d", id, n, refusals+1)
		}
	}
}

func TestRetryAfterHoldsTheNextAttemptBack(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	now := time.Now().Truncate(time.Second)
	srv, _ := receiver(t, "", func(w http.ResponseWriter, r *http.Request, h hit) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	h := newHooks(t, s, l, Config{Now: func() time.Time { return now }})
	run(t, h)
	emit(t, h, event("j", spool.StateDone, spool.StateWorking, 1), srv.URL, false)
	l.waitFor("webhook attempt failed; will retry")
	ds, err := h.Pending()
	if err != nil {
		t.Fatal(err)
	}
	mustLen(t, "pending", ds, 1)
	if want := now.Add(120 * time.Second); !ds[0].NextAttemptAt.Equal(want) {
		t.Errorf("next_attempt_at: got %s, want %s (Retry-After: 120)", ds[0].NextAttemptAt, want)
	}
	if ds[0].Attempts != 1 || ds[0].LastStatus != 503 {
		t.Errorf("got attempts %d, last_status %d; want 1, 503", ds[0].Attempts, ds[0].LastStatus)
	}
}

func TestNextAttempt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &Hooks{cfg: Config{Schedule: DefaultSchedule()}}
	for _, tc := range []struct {
		name       string
		attempts   int
		jitter     float64
		retryAfter time.Duration
		want       time.Duration
	}{
		{"SecondAttemptAfterFiveSeconds", 1, 0.5, 0, 5 * time.Second},
		{"JitterTakesTenPercentOff", 1, 0, 0, 4500 * time.Millisecond},
		{"JitterAddsUpToTenPercent", 2, 1, 0, 330 * time.Second},
		{"LongerRetryAfterWins", 1, 0.5, time.Minute, time.Minute},
		{"ShorterRetryAfterDoesNotHurry", 2, 0.5, time.Second, 5 * time.Minute},
		{"RetryAfterIsCappedAtADay", 1, 0.5, 1000 * time.Hour, 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.cfg.Jitter = func() float64 { return tc.jitter }
			if got := h.nextAttempt(now, tc.attempts, tc.retryAfter).Sub(now); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"120", 2 * time.Minute},
		{" 7 ", 7 * time.Second},
		{"-5", 0},
		{"soon", 0},
		{"Thu, 01 Jan 2026 00:01:30 GMT", 90 * time.Second},
		{"Wed, 31 Dec 2025 23:00:00 GMT", 0},
		{"99999999999", 24 * time.Hour},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q): got %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestGivenUpDeliveryIsRedeliveredFromAnotherProcess(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	var accept atomic.Bool
	srv, hits := receiver(t, jobSecret, func(w http.ResponseWriter, r *http.Request, h hit) {
		if !accept.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	h := newHooks(t, s, l, Config{Secret: jobSecret, Schedule: []time.Duration{0, 10 * time.Millisecond}})
	run(t, h)
	emit(t, h, event("j", spool.StateFailed, spool.StateWorking, 3), srv.URL, false)
	l.waitFor("webhook failed; giving up")

	// hopper hooks, in another process, sees the same files.
	other := newHooks(t, s, l, Config{Secret: jobSecret})
	failed, err := other.Failed()
	if err != nil {
		t.Fatal(err)
	}
	mustLen(t, "failed", failed, 1)
	d := failed[0]
	if d.Attempts != 2 || d.LastStatus != http.StatusBadGateway || d.State != StateFailed || !strings.Contains(d.LastError, "502") {
		t.Errorf("failed delivery: got %+v", d)
	}
	if st, err := other.Status(); err != nil || st.Pending != 0 || st.Failed != 1 {
		t.Errorf("Status: got %+v, %v", st, err)
	}
	if _, err := other.Redeliver("msg_00000000000000000000000"); !errors.Is(err, ErrNoDelivery) {
		t.Errorf("Redeliver of an unknown ID: got %v, want ErrNoDelivery", err)
	}
	if _, err := other.Redeliver("no-such-job"); !errors.Is(err, ErrNoDelivery) {
		t.Errorf("Redeliver of an unknown job: got %v, want ErrNoDelivery", err)
	}

	// Hits of the refused attempts.
	next(t, hits)
	next(t, hits)
	accept.Store(true)
	if n, err := other.Redeliver("j"); err != nil || n != 1 {
		t.Fatalf("Redeliver by job ID: got %d, %v", n, err)
	}
	if got := next(t, hits); got.id != d.ID {
		t.Errorf("redelivered with webhook-id %q, want %q", got.id, d.ID)
	}
	l.waitFor("webhook delivered", "id", d.ID)
	if st, err := other.Status(); err != nil || st.Pending != 0 || st.Failed != 0 {
		t.Errorf("Status after redelivery: got %+v, %v", st, err)
	}
}

func TestEmittedButNeverRunIsDeliveredByTheNextProcess(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	srv, hits := receiver(t, jobSecret, nil)
	first := newHooks(t, s, l, Config{Secret: jobSecret})
	emit(t, first, event("j", spool.StateQueued, "", 0), srv.URL, false)
	emit(t, first, event("j", spool.StateLoading, spool.StateQueued, 1), srv.URL, false)
	pending, err := first.Pending()
	if err != nil {
		t.Fatal(err)
	}
	mustLen(t, "pending", pending, 2)
	if st, err := first.Status(); err != nil || st.Pending != 2 || st.OldestPending == nil {
		t.Errorf("Status: got %+v, %v", st, err)
	}
	// first is dropped without running, as a crash would.

	second := newHooks(t, s, l, Config{Secret: jobSecret})
	run(t, second)
	for i, want := range []spool.State{spool.StateQueued, spool.StateLoading} {
		got := next(t, hits)
		if got.env.Data.State != want || got.id != pending[i].ID {
			t.Errorf("delivery %d: got %s %s, want %s %s", i, got.env.Data.State, got.id, want, pending[i].ID)
		}
	}
}

// A kill after a job's final event was recorded but before its record left
// cur/ makes the next runner emit the event again. It must be the same
// delivery (the same webhook-id), so a receiver can tell it has it already.
func TestFinalEventEmittedAgainKeepsItsWebhookID(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	srv, hits := receiver(t, jobSecret, nil)
	finished := time.Date(2026, 11, 28, 7, 34, 10, 278351000, time.UTC)
	rec := &spool.Record{ID: "j", State: spool.StateDone, Model: "llama3.2", Attempts: 1, FinishedAt: &finished,
		Job: json.RawMessage(`{"model":"llama3.2","prompt":"hi"}`), Response: json.RawMessage(`{"response":"hello"}`)}

	first := newHooks(t, s, l, Config{Secret: jobSecret})
	if err := first.EmitJob(rec, spool.StateWorking, &spool.Job{Model: "llama3.2", Webhook: srv.URL}); err != nil {
		t.Fatal(err)
	}
	stop := run(t, first)
	got := next(t, hits) // delivered before the "kill"
	l.waitFor("webhook delivered", "id", got.id)
	stop()

	second := newHooks(t, s, l, Config{Secret: jobSecret})
	if err := second.EmitJob(rec, spool.StateWorking, &spool.Job{Model: "llama3.2", Webhook: srv.URL}); err != nil {
		t.Fatal(err)
	}
	if err := second.EmitJob(rec, spool.StateWorking, &spool.Job{Model: "llama3.2", Webhook: srv.URL}); err != nil {
		t.Fatal(err)
	}
	pending, err := second.Pending()
	if err != nil {
		t.Fatal(err)
	}
	mustLen(t, "pending after emitting twice", pending, 1)
	run(t, second)
	again := next(t, hits)
	if again.id != got.id || !bytes.Equal(again.body, got.body) {
		t.Errorf("emitted again: webhook-id %s body %s, want %s %s", again.id, again.body, got.id, got.body)
	}
	if !got.env.Data.Timestamp.Equal(finished) {
		t.Errorf("event timestamp %v, want finished_at %v", got.env.Data.Timestamp, finished)
	}

	// Another round of the same job (a retry) is another event.
	later := finished.Add(time.Minute)
	rec.FinishedAt = &later
	if err := second.EmitJob(rec, spool.StateWorking, &spool.Job{Model: "llama3.2", Webhook: srv.URL}); err != nil {
		t.Fatal(err)
	}
	if third := next(t, hits); third.id == got.id {
		t.Errorf("the next round's done event has the first round's webhook-id %s", got.id)
	}
}

// TestHelperEmitter is the process TestSIGKILLLosesNoWebhook kills.
func TestHelperEmitter(t *testing.T) {
	if os.Getenv("HOPPER_HOOKS_TEST_CHILD") != "1" {
		t.Skip("run by TestSIGKILLLosesNoWebhook")
	}
	s, err := spool.Open(os.Getenv("HOPPER_HOOKS_TEST_SPOOL"), spool.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Spool: s, Secret: jobSecret, Schedule: []time.Duration{0, time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	go h.Run(context.Background())
	var prev spool.State
	for _, st := range []spool.State{spool.StateQueued, spool.StateLoading, spool.StateWorking, spool.StateDone} {
		if err := h.Emit(event("k", st, prev, 1), os.Getenv("HOPPER_HOOKS_TEST_URL"), false); err != nil {
			t.Fatal(err)
		}
		prev = st
	}
	os.Stdout.WriteString("emitted\n")
	// Wait to be killed: the parent holds stdin open.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

func TestSIGKILLLosesNoWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	s, l := newSpool(t), newLogs(t)
	var killed atomic.Bool
	inFlight := make(chan string, 10)
	srv, hits := receiver(t, jobSecret, func(w http.ResponseWriter, r *http.Request, h hit) {
		if !killed.Load() {
			inFlight <- h.id
			<-r.Context().Done() // hang until the child dies
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	child := exec.Command(os.Args[0], "-test.run=^TestHelperEmitter$")
	child.Env = append(os.Environ(), "HOPPER_HOOKS_TEST_CHILD=1",
		"HOPPER_HOOKS_TEST_SPOOL="+s.Path(), "HOPPER_HOOKS_TEST_URL="+srv.URL)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(wait)
	for emitted := false; !emitted; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the child exited before emitting")
			}
			emitted = line == "emitted"
		case <-deadline:
			t.Fatal("the child did not emit")
		}
	}
	var hungID string
	select {
	case hungID = <-inFlight:
	case <-time.After(wait):
		t.Fatal("the child sent nothing")
	}
	killed.Store(true)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	h := newHooks(t, s, l, Config{Secret: jobSecret})
	run(t, h)
	want := []spool.State{spool.StateQueued, spool.StateLoading, spool.StateWorking, spool.StateDone}
	for i, st := range want {
		got := next(t, hits)
		if got.env.Data.State != st {
			t.Errorf("delivery %d after the restart: got %s, want %s", i, got.env.Data.State, st)
		}
		if i == 0 && got.id != hungID {
			t.Errorf("the interrupted delivery came back as %q, want webhook-id %q", got.id, hungID)
		}
	}
}

func TestUntrustedWebhooks(t *testing.T) {
	var count atomic.Int32
	srv, _ := receiver(t, "", func(w http.ResponseWriter, r *http.Request, h hit) {
		count.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	redirector, _ := receiver(t, "", func(w http.ResponseWriter, r *http.Request, h hit) {
		http.Redirect(w, r, srv.URL+"/private", http.StatusTemporaryRedirect)
	})
	redirectorPort := redirector.URL[strings.LastIndex(redirector.URL, ":")+1:]

	failedWith := func(t *testing.T, h *Hooks, l *logs, url string) *Delivery {
		t.Helper()
		run(t, h)
		emit(t, h, event("j", spool.StateDone, spool.StateWorking, 1), url, true)
		l.waitFor("webhook failed; giving up")
		failed, err := h.Failed()
		if err != nil {
			t.Fatal(err)
		}
		mustLen(t, "failed", failed, 1)
		return failed[0]
	}
	delivered := func(t *testing.T, h *Hooks, l *logs, url string) {
		t.Helper()
		run(t, h)
		emit(t, h, event("j", spool.StateDone, spool.StateWorking, 1), url, true)
		l.waitFor("webhook delivered")
	}

	t.Run("LoopbackAddressIsRefusedWithoutRetry", func(t *testing.T) {
		l := newLogs(t)
		before := count.Load()
		d := failedWith(t, newHooks(t, newSpool(t), l, Config{}), l, srv.URL)
		if !strings.Contains(d.LastError, "refused") || !strings.Contains(d.LastError, "loopback") || d.Attempts != 1 {
			t.Errorf("got attempts %d, last_error %q", d.Attempts, d.LastError)
		}
		if n := count.Load() - before; n != 0 {
			t.Errorf("the receiver got %d requests, want 0", n)
		}
	})
	t.Run("NameResolvingToLoopbackIsRefused", func(t *testing.T) {
		l := newLogs(t)
		before := count.Load()
		d := failedWith(t, newHooks(t, newSpool(t), l, Config{}), l, "http://localhost:"+port+"/")
		if !strings.Contains(d.LastError, "refused to connect to localhost") {
			t.Errorf("last_error: got %q", d.LastError)
		}
		if n := count.Load() - before; n != 0 {
			t.Errorf("the receiver got %d requests, want 0", n)
		}
	})
	t.Run("RedirectToPrivateAddressIsNotFollowed", func(t *testing.T) {
		l := newLogs(t)
		before := count.Load()
		// The redirector itself is allowed by name; its target is not
		// reached, since no redirect is followed.
		h := newHooks(t, newSpool(t), l, Config{Allow: []string{"localhost"}, Schedule: []time.Duration{0, 10 * time.Millisecond}})
		d := failedWith(t, h, l, "http://localhost:"+redirectorPort+"/")
		if d.LastStatus != http.StatusTemporaryRedirect || !strings.Contains(d.LastError, "not followed") {
			t.Errorf("got last_status %d, last_error %q", d.LastStatus, d.LastError)
		}
		if n := count.Load() - before; n != 0 {
			t.Errorf("the redirect target got %d requests, want 0", n)
		}
	})
	t.Run("AllowedCIDRIsReached", func(t *testing.T) {
		l := newLogs(t)
		delivered(t, newHooks(t, newSpool(t), l, Config{Allow: []string{"127.0.0.0/8", "::1"}}), l, srv.URL)
	})
	t.Run("AllowedHostNameIsReached", func(t *testing.T) {
		l := newLogs(t)
		delivered(t, newHooks(t, newSpool(t), l, Config{Allow: []string{"LocalHost."}}), l, "http://localhost:"+port+"/")
	})
	t.Run("TrustedWebhookGoesAnywhere", func(t *testing.T) {
		l := newLogs(t)
		h := newHooks(t, newSpool(t), l, Config{})
		run(t, h)
		emit(t, h, event("j", spool.StateDone, spool.StateWorking, 1), srv.URL, false)
		l.waitFor("webhook delivered")
	})
	t.Run("InvalidURLFailsAtOnce", func(t *testing.T) {
		l := newLogs(t)
		d := failedWith(t, newHooks(t, newSpool(t), l, Config{}), l, "file:///etc/passwd")
		if d.Attempts != 1 {
			t.Errorf("got %d attempts, want 1", d.Attempts)
		}
	})
}

func TestGoneDisablesConfiguredEndpoint(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	var gone atomic.Bool
	gone.Store(true)
	srv, hits := receiver(t, configSecret, func(w http.ResponseWriter, r *http.Request, h hit) {
		if gone.Load() {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	url := srv.URL + "/gone"
	h := newHooks(t, s, l, Config{Webhooks: []Webhook{{URL: url, Secret: configSecret}}})
	run(t, h)
	emit(t, h, event("j", spool.StateQueued, "", 0), "", false)
	l.waitFor("webhook endpoint answered 410 Gone: disabled (hopper hooks enable URL)")
	next(t, hits)

	st, err := h.Status()
	if err != nil {
		t.Fatal(err)
	}
	mustLen(t, "disabled", st.Disabled, 1)
	if st.Disabled[0].URL != url || st.Disabled[0].Status != http.StatusGone || st.Failed != 1 {
		t.Errorf("Status: got %+v", st)
	}
	emit(t, h, event("j", spool.StateLoading, spool.StateQueued, 1), "", false)
	if p, err := h.Pending(); err != nil || len(p) != 0 {
		t.Errorf("an event for a disabled endpoint was spooled: %v, %v", p, err)
	}

	gone.Store(false)
	if err := h.Enable(url); err != nil {
		t.Fatal(err)
	}
	if err := h.Enable(url); !errors.Is(err, ErrNotDisabled) {
		t.Errorf("Enable twice: got %v, want ErrNotDisabled", err)
	}
	emit(t, h, event("j", spool.StateWorking, spool.StateLoading, 1), "", false)
	if got := next(t, hits); got.env.Type != TypeWorking {
		t.Errorf("after Enable: got %s, want job.working", got.env.Type)
	}
}

func TestJobWebhookGoneFailsOnlyThatDelivery(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	srv, _ := receiver(t, "", func(w http.ResponseWriter, r *http.Request, h hit) { w.WriteHeader(http.StatusGone) })
	h := newHooks(t, s, l, Config{})
	run(t, h)
	emit(t, h, event("j", spool.StateQueued, "", 0), srv.URL, false)
	l.waitFor("webhook failed; giving up")
	if st, err := h.Status(); err != nil || len(st.Disabled) != 0 || st.Failed != 1 {
		t.Errorf("Status: got %+v, %v", st, err)
	}
}

func TestHangingReceiverDoesNotReduceOtherDeliveries(t *testing.T) {
	const jobs, workers = 20, 2
	count := func(t *testing.T, hang bool) (delivered int, maxHanging int32) {
		s, l := newSpool(t), newLogs(t)
		var hanging, most atomic.Int32
		stuck, _ := receiver(t, "", func(w http.ResponseWriter, r *http.Request, h hit) {
			if !hang {
				return
			}
			n := hanging.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-r.Context().Done()
			hanging.Add(-1)
		})
		fine, hits := receiver(t, "", nil)
		h := newHooks(t, s, l, Config{
			Webhooks: []Webhook{{URL: stuck.URL}},
			Timeout:  time.Minute, // the stuck receiver holds on for the whole test
			Workers:  workers,
		})
		run(t, h)
		for i := range jobs {
			emit(t, h, event("job-"+string(rune('a'+i)), spool.StateDone, spool.StateWorking, 1), fine.URL, false)
		}
		for range jobs {
			next(t, hits)
			delivered++
		}
		return delivered, most.Load()
	}
	baseline, _ := count(t, false)
	withHang, hung := count(t, true)
	if withHang != baseline || withHang != jobs {
		t.Errorf("delivered %d with a hanging receiver, %d without; want %d", withHang, baseline, jobs)
	}
	if hung > workers {
		t.Errorf("%d requests hung at once on one endpoint, want at most %d", hung, workers)
	}
}

func TestFailedFileLeftInPendingByACrashIsMovedOn(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	h := newHooks(t, s, l, Config{})
	emit(t, h, event("j", spool.StateDone, spool.StateWorking, 1), "http://192.0.2.1/", false)
	p, err := h.Pending()
	if err != nil {
		t.Fatal(err)
	}
	mustLen(t, "pending", p, 1)
	p[0].State = StateFailed
	if err := h.saveDelivery(dirPending, p[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path()+"/"+dirPending+"/msg_ffffffffffffffff00000000.json", []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	run(t, h)
	l.waitFor("unreadable delivery set aside as failed/msg_ffffffffffffffff00000000.bad")
	st, err := h.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.Failed != 1 {
		t.Errorf("Status: got %+v, want 0 pending, 1 failed", st)
	}
}

func TestOneDispatcherPerOutbox(t *testing.T) {
	s, la, lb := newSpool(t), newLogs(t), newLogs(t)
	var mu sync.Mutex
	got := map[string]int{}
	srv, hits := receiver(t, "", func(w http.ResponseWriter, r *http.Request, h hit) {
		mu.Lock()
		got[h.id]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	a, b := newHooks(t, s, la, Config{}), newHooks(t, s, lb, Config{})
	a.poll, b.poll = 20*time.Millisecond, 20*time.Millisecond
	stopA := run(t, a)
	emit(t, a, event("first", spool.StateQueued, "", 0), srv.URL, false)
	next(t, hits) // a holds the lock
	run(t, b)
	lb.waitFor("another process delivers this spool's webhooks; this one waits to take over")

	for i := range 10 {
		emit(t, a, event("a", spool.StateWorking, spool.StateLoading, i), srv.URL, false)
		emit(t, b, event("b", spool.StateWorking, spool.StateLoading, i), srv.URL, false)
	}
	for range 20 {
		next(t, hits)
	}
	// Stopped mid-attempt, a would leave that delivery for b to send again
	// (at least once); wait until a has recorded all of them.
	for range 21 {
		la.waitFor("webhook delivered")
	}
	stopA()
	lb.waitFor("delivering webhooks: the other dispatcher is gone")
	emit(t, b, event("b", spool.StateDone, spool.StateWorking, 10), srv.URL, false)
	if h := next(t, hits); h.env.Data.ID != "b" || h.env.Data.State != spool.StateDone {
		t.Errorf("after the takeover: got %s %s", h.env.Data.ID, h.env.Data.State)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 22 {
		t.Errorf("got %d distinct deliveries, want 22", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("%s delivered %d times, want once", id, n)
		}
	}
}
