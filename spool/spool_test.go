package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/spooltest"
)

// job is a valid generate job.
const job = `{"model":"llama3.2","prompt":"Why is the sky blue?"}`

// testOptions are the defaults without fsync, which most tests do not need
// and which would make them slow.
func testOptions() Options {
	o := DefaultOptions()
	o.Fsync = false
	return o
}

// newSpool initializes a spool under t.TempDir().
func newSpool(t testing.TB, edit ...func(*Options)) *Spool {
	t.Helper()
	o := testOptions()
	for _, e := range edit {
		e(&o)
	}
	s, err := Init(filepath.Join(t.TempDir(), "spool"), o)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readRec parses dir/name as a record.
func readRec(t testing.TB, s *Spool, dir, name string) *Record {
	t.Helper()
	return spooltest.ReadAs(t, s, dir, name, ParseRecord)
}

func submit(t testing.TB, s *Spool, data string) string {
	t.Helper()
	id, err := s.Submit([]byte(data), SubmitOptions{})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return id
}

func claim(t testing.TB, s *Spool, dir, name string) *Claimed {
	t.Helper()
	c, err := s.Claim(Entry{Dir: dir, Name: name})
	if err != nil {
		t.Fatalf("Claim %s/%s: %v", dir, name, err)
	}
	return c
}

// finish ends a claimed job in state st.
func finish(t testing.TB, s *Spool, r *Record, st State, e *JobError) {
	t.Helper()
	now := time.Now()
	r.State, r.Error, r.FinishedAt = st, e, &now
	if err := s.Finish(r); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

func TestInit(t *testing.T) {
	for _, mode := range []fs.FileMode{0o750, 0o770, 0o700} {
		t.Run(fmt.Sprintf("creates every directory with mode %04o", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool")
			o := testOptions()
			o.DirMode = mode
			s, err := Init(path, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, d := range append([]string{"."}, Dirs...) {
				fi, err := os.Stat(filepath.Join(path, d))
				if err != nil {
					t.Fatal(err)
				}
				if !fi.IsDir() || fi.Mode().Perm() != mode {
					t.Errorf("%s: got %v, want a directory with mode %04o", d, fi.Mode(), mode)
				}
			}
		})
	}

	t.Run("writes job files with the configured file mode", func(t *testing.T) {
		s := newSpool(t, func(o *Options) { o.FileMode = 0o660 })
		id := submit(t, s, job)
		fi, err := os.Stat(filepath.Join(s.Path(), DirNew, id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o660 {
			t.Errorf("got mode %04o, want 0660", got)
		}
	})

	t.Run("is idempotent on an existing spool", func(t *testing.T) {
		s := newSpool(t)
		id := submit(t, s, job)
		s2, err := Init(s.Path(), testOptions())
		if err != nil {
			t.Fatalf("second Init: %v", err)
		}
		defer s2.Close()
		if _, err := s2.Find(id); err != nil {
			t.Errorf("job lost by a second Init: %v", err)
		}
	})
}

func TestOpen(t *testing.T) {
	t.Run("a missing spool says to run hopper init", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope")
		_, err := Open(path, testOptions())
		if !errors.Is(err, ErrNotInitialized) {
			t.Fatalf("got %v, want ErrNotInitialized", err)
		}
		if !strings.Contains(err.Error(), "hopper init") || !strings.Contains(err.Error(), path) {
			t.Errorf("got %q, want it to name %s and say to run hopper init", err, path)
		}
	})

	t.Run("a spool missing one directory names it", func(t *testing.T) {
		s := newSpool(t)
		if err := os.Remove(filepath.Join(s.Path(), DirCur)); err != nil {
			t.Fatal(err)
		}
		_, err := Open(s.Path(), testOptions())
		if !errors.Is(err, ErrNotInitialized) || !strings.Contains(err.Error(), "cur/") || !strings.Contains(err.Error(), "hopper init") {
			t.Errorf("got %v, want ErrNotInitialized naming cur/ and hopper init", err)
		}
	})

	t.Run("a file where a directory belongs is refused", func(t *testing.T) {
		s := newSpool(t)
		p := filepath.Join(s.Path(), DirHold)
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(s.Path(), testOptions()); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("got %v, want an error saying hold is not a directory", err)
		}
	})

	t.Run("fills in defaults", func(t *testing.T) {
		s := newSpool(t, func(o *Options) { *o = Options{} })
		o := s.Options()
		if o.DirMode != 0o750 || o.FileMode != 0o640 || o.MaxJobSize != 32<<20 || o.Now == nil {
			t.Errorf("got %+v, want the documented defaults", o)
		}
	})
}

func TestLock(t *testing.T) {
	t.Run("a second lock on the same spool fails naming the spool and the holder's pid", func(t *testing.T) {
		s := newSpool(t)
		l, err := s.Lock("http://127.0.0.1:11434")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock()
		s2, err := Open(s.Path(), testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		l2, err := s2.Lock("http://127.0.0.1:11434")
		if !errors.Is(err, ErrLocked) {
			l2.Unlock()
			t.Fatalf("got %v, want ErrLocked", err)
		}
		pid := fmt.Sprintf("pid %d", os.Getpid())
		if !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), pid) {
			t.Errorf("got %q, want it to name %s and %s", err, s.Path(), pid)
		}
	})

	t.Run("unlocking twice is safe and frees the lock", func(t *testing.T) {
		s := newSpool(t)
		l, err := s.Lock("a")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Errorf("first Unlock: %v", err)
		}
		if err := l.Unlock(); err != nil {
			t.Errorf("second Unlock: %v", err)
		}
		l2, err := s.Lock("b")
		if err != nil {
			t.Fatalf("Lock after Unlock: %v", err)
		}
		l2.Unlock()
	})

	t.Run("a nil lock unlocks without panicking", func(t *testing.T) {
		var l *Lock
		if err := l.Unlock(); err != nil {
			t.Errorf("got %v, want nil", err)
		}
	})
}

func TestPause(t *testing.T) {
	s := newSpool(t)
	if s.Paused() {
		t.Fatal("a new spool is paused")
	}
	for i := range 2 {
		if err := s.Pause(); err != nil {
			t.Fatalf("Pause %d: %v", i+1, err)
		}
		if !s.Paused() {
			t.Fatalf("not paused after Pause %d", i+1)
		}
	}
	for i := range 2 {
		if err := s.Resume(); err != nil {
			t.Fatalf("Resume %d: %v", i+1, err)
		}
		if s.Paused() {
			t.Fatalf("still paused after Resume %d", i+1)
		}
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"daily", true},
		{"20261127T231005.123456Z-7f3a9c", true},
		{"a.b_c-d", true},
		{"9", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{".hidden", false},
		{"-dash", false},
		{"bad name!", false},
		{"a/b", false},
		{"..", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q): got %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestNewIDsIncreaseAndAreValid(t *testing.T) {
	// A frozen clock still gives strictly increasing IDs.
	at := time.Date(2026, 11, 27, 23, 10, 5, 123456789, time.UTC)
	s := newSpool(t, func(o *Options) { o.Now = func() time.Time { return at } })
	prev := ""
	for range 1000 {
		id := s.NewID()
		if !ValidID(id) {
			t.Fatalf("NewID gave %q, not a valid ID", id)
		}
		if id <= prev {
			t.Fatalf("got %q after %q, want IDs to increase", id, prev)
		}
		prev = id
	}
	if !strings.HasPrefix(prev, "20261127T231005.") {
		t.Errorf("got %q, want it to start with the UTC time", prev)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 27, 23, 10, 5, 0, time.UTC)
	raw := "not json <&>"
	r := &Record{ID: "a", State: StateFailed, JobRaw: &raw, Attempts: 2, SubmittedAt: now,
		Error: &JobError{Kind: KindTarget, Message: "boom", Status: 500}}
	data, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) || data[len(data)-1] != '\n' || !strings.Contains(string(data), "<&>") {
		t.Errorf("got %s, want indented JSON ending in a newline with <&> unescaped", data)
	}
	back, err := ParseRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != r.ID || back.State != r.State || *back.JobRaw != raw || back.Error.Status != 500 || !back.SubmittedAt.Equal(now) {
		t.Errorf("got %+v, want %+v", back, r)
	}
	if _, err := ParseRecord([]byte(job)); err == nil {
		t.Error("ParseRecord accepted a job without id and state")
	}
}

func TestInitRefusesADirectoryThatIsNotASpool(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "important.txt"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, Options{}); !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), "important.txt") {
		t.Fatalf("got %v, want ErrNotEmpty naming a file", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DirNew)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Init created new/ in a foreign directory")
	}
	s, err := Init(dir, Options{Force: true})
	if err != nil {
		t.Fatalf("with Force: %v", err)
	}
	s.Close()
	// A spool is a spool: Init opens it again without Force.
	s, err = Init(dir, Options{})
	if err != nil {
		t.Fatalf("Init on an existing spool: %v", err)
	}
	s.Close()
	// An empty directory becomes a spool.
	if s, err := Init(t.TempDir(), Options{}); err != nil {
		t.Errorf("Init on an empty directory: %v", err)
	} else {
		s.Close()
	}
}
