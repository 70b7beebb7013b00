package runner_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// chattr makes dir immutable (or mutable again): nothing can be created in
// it, as on a full disk. It skips the test where that cannot be done.
func chattr(t *testing.T, flag, dir string) {
	t.Helper()
	if out, err := exec.Command("chattr", flag, dir).CombinedOutput(); err != nil {
		t.Skipf("chattr %s: %v %s (needs root on ext4 or the like)", flag, err, out)
	}
}

// A record that cannot be written when its job finishes (a full disk) is
// written once it can: the job is neither reported done early nor run
// again, and the runner says what is wrong meanwhile.
func TestARecordThatCannotBeWrittenIsWrittenOnceItCan(t *testing.T) {
	h := newHarness(t, nil, ollamatest.WithTokenDelay(20*time.Millisecond))
	h.start()
	h.drop("j", chat("m1", strings.Repeat("word ", 10)))
	eventually(t, "the job to run", func() bool { return h.fake.InFlight() > 0 })
	cur := h.path(spool.DirCur)
	chattr(t, "+i", cur)
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", cur).Run() })
	eventually(t, "the problem to be published", func() bool {
		pub, err := h.s.ReadTargets()
		return err == nil && strings.Contains(pub.Problem, "cannot write the record of j")
	})
	if _, err := os.Stat(h.path(spool.DirDone, "j.json")); err == nil {
		t.Fatal("the job is in done/ though its record could not be written")
	}
	chattr(t, "-i", cur)
	r := h.wait("j")
	if r.State != spool.StateDone || r.Attempts != 1 {
		t.Errorf("got %s after %d attempts, want done after 1", r.State, r.Attempts)
	}
	if n := len(h.fake.Requests()); n == 0 {
		t.Fatal("no request")
	}
	if chats := h.fake.RequestsTo("/api/chat"); chats != 1 {
		t.Errorf("the job ran %d times, want once", chats)
	}
	eventually(t, "the problem to clear", func() bool {
		pub, err := h.s.ReadTargets()
		return err == nil && pub.Problem == ""
	})
}
