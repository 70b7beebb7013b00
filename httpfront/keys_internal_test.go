package httpfront

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// A front killed after claiming an idempotency key and before writing the
// job leaves the key naming a job that never came. The client's retry must
// not get 409 "still being handled" for keyInFlight: that front is gone,
// so the key is free at once. A key claimed by a front that still runs is
// still being handled.
func TestIdempotencyKeyOfAFrontThatDiedIsFreeAtOnce(t *testing.T) {
	sp, err := spool.Init(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	srv, err := New(Config{Spool: sp, Target: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	const job = `{"model": "m", "prompt": "p"}`
	post := func(key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/jobs", strings.NewReader(job))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, req)
		return w
	}
	// claimAs claims key for a job that is never written, as another front
	// process on the spool would between claiming and submitting, and
	// returns that front's release: what its exit (or the kernel, when it
	// is killed) does to its lock.
	claimAs := func(t *testing.T, key string) (release func()) {
		t.Helper()
		other, err := spool.Open(sp.Path(), spool.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		front, release, err := other.HoldFront()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(release)
		k, err := newKeyStore(other, front, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		if old, err := k.claim(key, bodyHash([]byte(job)), other.NewID()); old != nil || err != nil {
			t.Fatalf("claim: got %+v, %v", old, err)
		}
		return release
	}

	t.Run("AKeyClaimedByARunningFrontIsStillBeingHandled", func(t *testing.T) {
		claimAs(t, "alive")
		if w := post("alive"); w.Code != http.StatusConflict || w.Header().Get("Retry-After") == "" {
			t.Errorf("got %d %s, want 409 with Retry-After", w.Code, w.Body)
		}
	})
	t.Run("AKeyClaimedByAFrontThatDiedIsFreeAtOnce", func(t *testing.T) {
		claimAs(t, "orphan")()
		w := post("orphan")
		if w.Code != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202: the key's front is gone", w.Code, w.Body)
		}
		first := w.Header().Get("Location")
		if w := post("orphan"); w.Code != http.StatusOK || w.Header().Get("Location") != first {
			t.Errorf("again: got %d at %q, want 200 at %q (the key now names the new job)", w.Code, w.Header().Get("Location"), first)
		}
	})
}
