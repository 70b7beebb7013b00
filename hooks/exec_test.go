//go:build unix

package hooks

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
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
	// Only the variables hopper sets, whatever HOPPER_* settings the test's
	// own environment holds (CI sets some): hooks never inherit those.
	lines := strings.Split(strings.TrimSpace(string(env)), "\n")
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

// hookOutput collects the output a hook logged up to the record with
// message until: its lines per stream.
func hookOutput(l *logs, hook, until string) map[string][]string {
	out := map[string][]string{}
	for _, r := range l.until(until) {
		if r.msg == "hook output" && r.attrs["hook"] == hook {
			out[r.attrs["stream"]] = append(out[r.attrs["stream"]], r.attrs["line"])
		}
	}
	return out
}

func TestExecHookOutputIsCutToItsHeadAndTail(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	dir := t.TempDir()
	// 8 MiB without a newline on stdout, 1 MiB on stderr: the hook must be
	// able to write all of it and exit on its own.
	writeHook(t, dir, "done", `printf 'FIRST\n'
head -c 8388608 /dev/zero | tr '\0' y
printf '\nLAST\n'
printf 'err-first\n' >&2
head -c 1048576 /dev/zero | tr '\0' z >&2
printf '\nerr-last\n' >&2
`, 0o755)
	h := newHooks(t, s, l, Config{Dir: dir})
	run(t, h)
	emit(t, h, event("j", spool.StateDone, spool.StateWorking, 1), "", false)
	got := hookOutput(l, "done", "hook ran")
	want := map[string][]string{
		"stdout": {"FIRST", strings.Repeat("y", 4090), "… 8380428 bytes omitted …", strings.Repeat("y", 4090), "LAST"},
		"stderr": {"err-first", strings.Repeat("z", 4086), "… 1040404 bytes omitted …", strings.Repeat("z", 4086), "err-last"},
	}
	for _, stream := range []string{"stdout", "stderr"} {
		logged := 0
		for _, line := range got[stream] {
			logged += len(line)
		}
		if logged > 9<<10 {
			t.Errorf("%s: %d bytes logged in %d lines, want at most a 4 KiB head and a 4 KiB tail", stream, logged, len(got[stream]))
			continue
		}
		if !slices.Equal(got[stream], want[stream]) {
			t.Errorf("%s: got %q\nwant %q", stream, got[stream], want[stream])
		}
	}
}

func TestHeadTailKeepsTheEndsOfWhatIsWritten(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
	}{
		{"Nothing", nil},
		{"LessThanTheHead", []string{"abc", "de"}},
		{"HeadAndTailExactly", []string{strings.Repeat("h", 4096), strings.Repeat("t", 4096)}},
		{"OneByteTooMany", []string{strings.Repeat("h", 4096) + "x", strings.Repeat("t", 4096)}},
		{"ManySmallWrites", slices.Repeat([]string{"0123456789"}, 10000)},
		{"WritesAcrossTheEndOfTheHead", []string{strings.Repeat("a", 4000), strings.Repeat("b", 200), strings.Repeat("c", 5000)}},
		{"OneHugeWrite", []string{"head" + strings.Repeat(".", 1<<20) + "tail"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w headTail
			for _, s := range tt.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(s))
				}
			}
			all := strings.Join(tt.writes, "")
			wantHead, wantOmitted, wantTail := all, 0, ""
			if len(all) > 8192 {
				wantHead, wantOmitted, wantTail = all[:4096], len(all)-8192, all[len(all)-4096:]
			}
			head, omitted, tail := w.parts()
			if string(head)+string(tail) != wantHead+wantTail || omitted != wantOmitted {
				t.Errorf("got a head of %d bytes, %d omitted, a tail of %d (%.20q…%.20q); want %d, %d, %d",
					len(head), omitted, len(tail), head, tail, len(wantHead), wantOmitted, len(wantTail))
			}
		})
	}
	if got := omittedLine(1); got != "… 1 byte omitted …" {
		t.Errorf("omittedLine(1) = %q", got)
	}
	if got := omittedLine(91808); got != "… 91808 bytes omitted …" {
		t.Errorf("omittedLine(91808) = %q", got)
	}
}

func TestExecHookGetsACleanEnvironment(t *testing.T) {
	s, l := newSpool(t), newLogs(t)
	dir, out := t.TempDir(), t.TempDir()
	// What hopper's own environment may hold: its settings, secrets and
	// tokens, and other programs' secrets. None of it reaches a hook.
	for k, v := range map[string]string{
		"HOPPER_HOOKS_SECRET":   configSecret,
		"HOPPER_TOKENS":         "tok-1,tok-2",
		"HOPPER_CONFIG":         "/etc/hopper/hopper.yaml",
		"HOPPER_SPOOL":          "/var/spool/other",
		"OLLAMA_HOST":           "10.0.0.5:11434",
		"AWS_SECRET_ACCESS_KEY": "do not leak",
		"NOT_LISTED":            "x",
		// What a hook gets.
		"HOME":        "/home/hopper",
		"LANG":        "C.UTF-8",
		"LC_TIME":     "en_GB.UTF-8",
		"TZ":          "Europe/Paris",
		"USER":        "hopper",
		"LOGNAME":     "hopper",
		"TMPDIR":      t.TempDir(),
		"PASSED_ON":   "yes, as hooks.env asks",
		"ALSO_PASSED": "",
	} {
		t.Setenv(k, v)
	}
	writeHook(t, dir, "failed", `env > "`+out+`/env"`+"\n", 0o755)
	h := newHooks(t, s, l, Config{Dir: dir, Env: []string{"PASSED_ON", "ALSO_PASSED", "NEVER_SET"}})
	run(t, h)
	emit(t, h, event("job-9", spool.StateFailed, spool.StateWorking, 3), "", false)
	l.waitFor("hook ran", "hook", "failed")

	b, err := os.ReadFile(filepath.Join(out, "env"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	delete(got, "PWD") // the shell's own
	want := map[string]string{
		"HOPPER_JOB_ID": "job-9",
		"HOPPER_STATE":  "failed",
		"HOPPER_EVENT":  "job.failed",
		"HOPPER_SPOOL":  s.Path(),
		"HOPPER_RECORD": filepath.Join(s.Path(), "failed", "job-9.json"),
		"PASSED_ON":     "yes, as hooks.env asks",
		"ALSO_PASSED":   "",
	}
	for _, k := range []string{"PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			want[k] = v
		}
	}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "LC_") {
			want[k] = v
		}
	}
	if !maps.Equal(got, want) {
		for k, v := range got {
			if w, ok := want[k]; !ok || w != v {
				t.Errorf("hook got %s=%q, want %q (set: %v)", k, v, w, ok)
			}
		}
		for k, v := range want {
			if _, ok := got[k]; !ok {
				t.Errorf("hook lacks %s=%q", k, v)
			}
		}
	}
}

func TestConfigEnvNamesOnlyVariablesToPassOn(t *testing.T) {
	s := newSpool(t)
	for _, tt := range []struct {
		env         []string
		field, says string // "" when valid
	}{
		{[]string{"PASSED_ON", "http_proxy", "LD_LIBRARY_PATH"}, "", ""},
		{[]string{"HOPPER_TOKENS"}, "hooks.env[0]", "hopper's own settings"},
		{[]string{"OK", "hopper_hooks_secret"}, "hooks.env[1]", "hopper's own settings"},
		{[]string{"A=B"}, "hooks.env[0]", "want a variable's name"},
		{[]string{""}, "hooks.env[0]", "want a variable's name"},
	} {
		err := Config{Spool: s, Env: tt.env}.Validate()
		var ce *ConfigError
		switch {
		case tt.says == "" && err != nil:
			t.Errorf("Env %q: %v", tt.env, err)
		case tt.says != "" && (!errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(err.Error(), tt.says)):
			t.Errorf("Env %q: got %v, want a *ConfigError on %s saying %q", tt.env, err, tt.field, tt.says)
		}
	}
}

// The hook of a job that finished just before hopper stopped still runs,
// within ShutdownGrace; without a grace it is killed.
func TestExecHooksFinishWithinTheShutdownGrace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		wantRan bool
	}{{"WithAGraceTheHookFinishes", 10 * time.Second, true}, {"WithoutOneItIsKilled", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, l := newSpool(t), newLogs(t)
			dir, out := t.TempDir(), t.TempDir()
			started := filepath.Join(out, "started")
			writeHook(t, dir, "done", `touch "`+started+`"; sleep 0.3; touch "`+out+`/finished"`, 0o755)
			h := newHooks(t, s, l, Config{Dir: dir, ShutdownGrace: tc.grace})
			stop := run(t, h)
			emit(t, h, event("job-1", spool.StateDone, spool.StateWorking, 1), "", false)
			if !runtest.Poll(wait, 5*time.Millisecond, func() bool { _, err := os.Stat(started); return err == nil }) {
				t.Fatal("the hook never started")
			}
			stop() // hopper stops while the hook runs
			_, err := os.Stat(filepath.Join(out, "finished"))
			if ran := err == nil; ran != tc.wantRan {
				t.Errorf("the hook finished: %v, want %v", ran, tc.wantRan)
			}
		})
	}
}
