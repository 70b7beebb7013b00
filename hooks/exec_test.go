//go:build unix

package hooks

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// writeHook writes an executable hook script.
func writeHook(t *testing.T, dir, name, script string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), mode); err != nil {
		t.Fatal(err)
	}
}

func TestExecHookGetsEventOnStdinAndEnvironment(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	dir, out := t.TempDir(), t.TempDir()
	writeHook(t, dir, "done", `
cat > "`+out+`/stdin"
env | grep '^HOPPER_' | sort > "`+out+`/env"
echo "hello from the hook"
echo "oops" >&2
exit 3
`, 0o755)
	h := newHooks(t, s, l, Config{Dir: dir})
	run(t, h)
	ev := event("job-1", spool.StateDone, spool.StateWorking, 2)
	ev.Response = json.RawMessage(`{"response":"42"}`)
	ev.Meta = json.RawMessage(`{"ticket":7}`)
	emit(t, h, ev, "", false)
	recs := l.until("hook failed")
	if failed := recs[len(recs)-1]; !strings.Contains(failed.attrs["err"], "exit status 3") {
		t.Errorf("hook failed: got %v", failed.attrs)
	}
	var output []string
	for _, r := range recs {
		if r.msg == "hook output" && r.attrs["hook"] == "done" && r.attrs["job"] == "job-1" {
			output = append(output, r.attrs["stream"]+": "+r.attrs["line"])
		}
	}
	slices.Sort(output)
	if want := []string{"stderr: oops", "stdout: hello from the hook"}; !slices.Equal(output, want) {
		t.Errorf("hook output logged: got %q, want %q", output, want)
	}

	stdin, err := os.ReadFile(filepath.Join(out, "stdin"))
	if err != nil {
		t.Fatal(err)
	}
	var got Event
	if err := json.Unmarshal(stdin, &got); err != nil {
		t.Fatalf("stdin %s: %v", stdin, err)
	}
	if got.Type != TypeDone || got.ID != "job-1" || got.Attempt != 2 || string(got.Response) != `{"response":"42"}` || string(got.Meta) != `{"ticket":7}` {
		t.Errorf("stdin: got %s", stdin)
	}
	env, err := os.ReadFile(filepath.Join(out, "env"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"HOPPER_EVENT=job.done",
		"HOPPER_JOB_ID=job-1",
		"HOPPER_RECORD=" + filepath.Join(s.Path(), "done", "job-1.json"),
		"HOPPER_SPOOL=" + s.Path(),
		"HOPPER_STATE=done",
	}
	// Only the variables hopper sets: the test's own environment may hold
	// other HOPPER_* settings (CI sets some), which a hook inherits.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		if slices.ContainsFunc(want, func(w string) bool { return strings.SplitN(w, "=", 2)[0] == strings.SplitN(l, "=", 2)[0] }) {
			lines = append(lines, l)
		}
	}
	if !slices.Equal(lines, want) {
		t.Errorf("environment:\ngot  %q\nwant %q", lines, want)
	}
}

func TestMissingOrNonExecutableHookIsSkipped(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	dir := t.TempDir()
	writeHook(t, dir, "failed", "exit 0\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "working"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHooks(t, s, l, Config{Dir: dir})
	run(t, h)
	emit(t, h, event("j", spool.StateQueued, "", 0), "", false)
	l.waitFor("no hook", "hook", "queued")
	emit(t, h, event("j", spool.StateWorking, spool.StateQueued, 1), "", false)
	l.waitFor("hook is not an executable file; skipped", "hook", "working")
	emit(t, h, event("j", spool.StateFailed, spool.StateWorking, 1), "", false)
	l.waitFor("hook is not an executable file; skipped", "hook", "failed")
}

func TestRunawayHookIsKilledWithItsProcessGroup(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	dir := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The hook and its background child both hold the FIFO open: it reads
	// EOF only when both are dead.
	writeHook(t, dir, "failed", `exec 3>"`+fifo+`"
sleep 1000 &
sleep 1000
`, 0o755)
	closed := make(chan error, 1)
	go func() {
		f, err := os.Open(fifo)
		if err == nil {
			_, err = io.Copy(io.Discard, f)
			f.Close()
		}
		closed <- err
	}()
	h := newHooks(t, s, l, Config{Dir: dir, ExecTimeout: 200 * time.Millisecond})
	run(t, h)
	emit(t, h, event("j", spool.StateFailed, spool.StateWorking, 1), "", false)
	l.waitFor("hook killed with its process group: it ran longer than the exec timeout", "hook", "failed")
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("the hook's background child outlived it")
	}
}

func TestHooksRunOneAtATimeInEventOrder(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	dir := t.TempDir()
	for _, st := range []string{"queued", "loading", "working", "done"} {
		writeHook(t, dir, st, `echo "$HOPPER_STATE"`+"\n", 0o755)
	}
	h := newHooks(t, s, l, Config{Dir: dir})
	var prev spool.State
	for _, st := range []spool.State{spool.StateQueued, spool.StateLoading, spool.StateWorking, spool.StateDone} {
		emit(t, h, event("j", st, prev, 1), "", false)
		prev = st
	}
	run(t, h)
	for _, st := range []string{"queued", "loading", "working", "done"} {
		got := l.waitFor("hook output")
		if got.attrs["line"] != st {
			t.Errorf("got output %q, want %q", got.attrs["line"], st)
		}
	}
}
