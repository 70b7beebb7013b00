package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// The end-to-end tests run the built hopper binary as a real subprocess
// against an in-process fake Ollama over loopback.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// hopperBin builds the hopper binary once per test run.
func hopperBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hopper-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "hopper")
		out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// world is a spool, a fake Ollama and the environment for hopper commands.
type world struct {
	t     *testing.T
	dir   string // the working directory of every hopper command
	spool string
	fake  *ollamatest.Server
	env   []string
}

func newWorld(t *testing.T, opts ...ollamatest.Option) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	opts = append([]ollamatest.Option{ollamatest.WithModels("m1", "m2", "m3")}, opts...)
	dir := t.TempDir()
	w := &world{t: t, dir: dir, spool: filepath.Join(dir, "spool"), fake: ollamatest.NewServer(t, opts...)}
	w.env = append(os.Environ(),
		"HOPPER_OLLAMA="+w.fake.URL,
		"HOPPER_SPOOL="+w.spool,
		"HOPPER_HTTP=off",
		"HOPPER_RETRY_BACKOFF=20ms",
		"HOPPER_RETRY_BACKOFF_MAX=100ms",
		"HOPPER_SETTLE=100ms",
		"HOPPER_CONFIG=/dev/null",
		// Defaults that are places (hooks, init's config) stay in the test.
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_STATE_HOME="+filepath.Join(dir, "state"),
	)
	w.hopper("init")
	return w
}

// hopper runs a command to completion and returns its standard output.
func (w *world) hopper(args ...string) string {
	w.t.Helper()
	out, err := w.hopperErr(args...)
	if err != nil {
		w.t.Fatalf("hopper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (w *world) hopperErr(args ...string) (string, error) {
	cmd := exec.Command(hopperBin(w.t), args...)
	cmd.Env, cmd.Dir = w.env, w.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// server is a running hopper serve.
type server struct {
	cmd  *exec.Cmd
	done chan error
	log  logFile
}

// logFile is a file something writes to while the test runs (a process's
// output, a hook's log); String is what it holds so far.
type logFile string

func (f logFile) String() string {
	data, _ := os.ReadFile(string(f))
	return string(data)
}

func (w *world) serve(extra ...string) *server {
	w.t.Helper()
	return w.start(append([]string{"serve"}, extra...)...)
}

// start runs a long-running hopper command until the test ends.
func (w *world) start(args ...string) *server {
	w.t.Helper()
	cmd := exec.Command(hopperBin(w.t), args...)
	cmd.Env, cmd.Dir = w.env, w.dir
	log := logFile(filepath.Join(w.t.TempDir(), "output"))
	out, err := os.Create(string(log))
	if err != nil {
		w.t.Fatal(err)
	}
	defer out.Close() // the process has its own copy
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	s := &server{cmd: cmd, done: make(chan error, 1), log: log}
	go func() { s.done <- cmd.Wait() }()
	w.t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		if w.t.Failed() {
			w.t.Logf("hopper %s output:\n%s", args[0], s.log.String())
		}
	})
	return s
}

// startFront runs hopper cmd (serve, or http for the front alone) with its
// HTTP front on a free loopback port, waits until the front answers
// /healthz, and returns the process and the front's base URL.
func (w *world) startFront(cmd string, extra ...string) (*server, string) {
	w.t.Helper()
	addr := runtest.FreeAddr(w.t)
	s := w.start(append([]string{cmd, "--http", addr}, extra...)...)
	base := "http://" + addr
	waitFor(w.t, "the front to answer /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s, base
}

// stop sends sig and waits for the process to exit.
func (s *server) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("hopper serve did not exit after %v", sig)
	}
}

// kill SIGKILLs the process, as a crash would end it, and waits for it to
// exit.
func (s *server) kill(t *testing.T) {
	t.Helper()
	s.stop(t, syscall.SIGKILL)
}

// writeFile writes path, creating its directory, or fails the test.
func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

// config writes yaml as the configuration file of every later hopper
// command, and returns its path.
func (w *world) config(yaml string) string {
	w.t.Helper()
	path := filepath.Join(w.dir, "hopper.yaml")
	writeFile(w.t, path, yaml, 0o640)
	w.env = append(w.env, "HOPPER_CONFIG="+path)
	return path
}

// functions writes each definition as NAME.yaml in the functions_dir of
// every later hopper command.
func (w *world) functions(defs map[string]string) {
	w.t.Helper()
	dir := filepath.Join(w.dir, "functions")
	for name, def := range defs {
		writeFile(w.t, filepath.Join(dir, name+".yaml"), def, 0o640)
	}
	w.env = append(w.env, "HOPPER_FUNCTIONS_DIR="+dir)
}

// drop writes a job file rsync-style: a dot-named temp, then a rename.
func (w *world) drop(name, body string) {
	w.t.Helper()
	dir := filepath.Join(w.spool, "new")
	tmp := filepath.Join(dir, "."+name+".Xa1b2c")
	if err := os.WriteFile(tmp, []byte(body), 0o640); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name+".json")); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) count(dir string) int {
	entries, _ := os.ReadDir(filepath.Join(w.spool, dir))
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			n++
		}
	}
	return n
}

func (w *world) record(dir, id string) *spool.Record {
	w.t.Helper()
	data, err := os.ReadFile(filepath.Join(w.spool, dir, id+".json"))
	if err != nil {
		w.t.Fatal(err)
	}
	r, err := spool.ParseRecord(data)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// records reads the records in dir/ that can be read now.
func (w *world) records(dir string) []*spool.Record {
	paths, _ := filepath.Glob(filepath.Join(w.spool, dir, "*.json"))
	var out []*spool.Record
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if r, err := spool.ParseRecord(data); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// status is what hopper status --json says.
func (w *world) status() status {
	w.t.Helper()
	var st status
	if err := json.Unmarshal([]byte(w.hopper("status", "--json")), &st); err != nil {
		w.t.Fatal(err)
	}
	return st
}

// waitFor polls cond until it holds, or fails the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !runtest.Poll(60*time.Second, 10*time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func chatJob(model, text string) string {
	return fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}]}`, model, text)
}

func answer(t *testing.T, r *spool.Record) string {
	var resp struct {
		Message struct{ Content string } `json:"message"`
	}
	if err := json.Unmarshal(r.Response, &resp); err != nil {
		t.Fatalf("%s: response %s: %v", r.ID, r.Response, err)
	}
	return resp.Message.Content
}

// modelChanges counts how often consecutive chat requests at the fake named
// different models.
func modelChanges(fake *ollamatest.Server) int {
	changes, last := 0, ""
	for _, req := range fake.Requests() {
		if req.Path != "/api/chat" {
			continue
		}
		var m struct{ Model string }
		_ = json.Unmarshal(req.Body, &m)
		if m.Model != last {
			changes, last = changes+1, m.Model
		}
	}
	return changes
}

func runInterleaved(t *testing.T, schedule string, n int) *world {
	w := newWorld(t, ollamatest.WithMaxLoaded(1), ollamatest.WithLoadDelay(5*time.Millisecond))
	w.env = append(w.env, "HOPPER_SCHEDULE="+schedule)
	w.hopper("pause")
	w.serve()
	models := []string{"m1", "m2", "m3"}
	for i := range n {
		w.drop(fmt.Sprintf("job%04d", i), chatJob(models[i%3], fmt.Sprintf("question %d", i)))
	}
	w.hopper("resume")
	waitFor(t, fmt.Sprintf("%d jobs in done/", n), func() bool { return w.count("done") == n })
	for i := range n {
		id := fmt.Sprintf("job%04d", i)
		r := w.record("done", id)
		if got := answer(t, r); !strings.Contains(got, fmt.Sprintf("question %d", i)) || r.Model != models[i%3] {
			t.Errorf("%s: got answer %q from %s, want the reply to question %d from %s", id, got, r.Model, i, models[i%3])
		}
	}
	if got := w.fake.MaxInFlight(); got != 1 {
		t.Errorf("got %d requests in flight at the target at once, want 1", got)
	}
	if w.count("failed") != 0 || w.count("new") != 0 || w.count("cur") != 0 {
		t.Errorf("got failed=%d new=%d cur=%d, want all empty", w.count("failed"), w.count("new"), w.count("cur"))
	}
	return w
}

func TestServeDrainByModel200JobsLoadEachModelOnce(t *testing.T) {
	w := runInterleaved(t, "drain", 200)
	if got := w.fake.Loads(); got > 3 {
		t.Errorf("got %d model loads for 3 models, want at most 3", got)
	}
}

func TestServeFIFOLoadsOnEveryModelChange(t *testing.T) {
	w := runInterleaved(t, "fifo", 200)
	if loads, changes := w.fake.Loads(), modelChanges(w.fake); loads != changes || changes != 200 {
		t.Errorf("got %d loads and %d model changes, want 200 of each", loads, changes)
	}
}

func TestServeColdModelWaitsNoLongerThanMaxWaitPlusOneJob(t *testing.T) {
	w := newWorld(t, ollamatest.WithMaxLoaded(1), ollamatest.WithTokens(4), ollamatest.WithTokenDelay(10*time.Millisecond))
	w.env = append(w.env, "HOPPER_MAX_WAIT=300ms")
	w.serve()
	w.drop("warm000", chatJob("m1", "w"))
	waitFor(t, "the warm model to be loaded", func() bool { return w.count("done") == 1 })
	w.drop("cold", chatJob("m2", "c"))
	// Keep jobs for the resident model arriving after the cold one, as a
	// busy chat window would: drain-by-model alone would starve the cold job.
	n := 1
	waitFor(t, "the cold job to finish", func() bool {
		if w.count("new") < 2 && n < 500 {
			w.drop(fmt.Sprintf("warm%03d", n), chatJob("m1", "w"))
			n++
		}
		return w.count("done")+w.count("failed") == n+1 || w.count("failed") > 0 || fileExists(filepath.Join(w.spool, "done", "cold.json"))
	})
	cold := w.record("done", "cold")
	limit := cold.SubmittedAt.Add(300 * time.Millisecond)
	// The warm job running when the cold job's max_wait ran out is the last
	// one allowed before it: no later warm job may start between the limit
	// and the cold job's start.
	var late []string
	for i := 1; i < n; i++ {
		r, err := readRecord(w.spool, fmt.Sprintf("warm%03d", i))
		if err != nil || r.StartedAt == nil {
			continue // still queued: it runs after the cold job
		}
		if r.StartedAt.After(limit) && r.StartedAt.Before(*cold.StartedAt) {
			late = append(late, r.ID)
		}
	}
	if len(late) > 0 {
		t.Errorf("warm jobs %v started after the cold job's max_wait ran out and before it", late)
	}
	if n < 3 {
		t.Errorf("only %d warm jobs arrived after the cold one; the test proves nothing", n-1)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readRecord reads job id's record from whichever directory holds it.
func readRecord(spoolDir, id string) (*spool.Record, error) {
	for _, d := range []string{"done", "failed", "cur", "deferred"} {
		data, err := os.ReadFile(filepath.Join(spoolDir, d, id+".json"))
		if err == nil {
			return spool.ParseRecord(data)
		}
	}
	return nil, os.ErrNotExist
}

func TestServeSIGKILLMidJobThenRestartCompletesItOnce(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(40), ollamatest.WithTokenDelay(25*time.Millisecond))
	s := w.serve()
	w.drop("victim", chatJob("m1", "survive"))
	waitFor(t, "the job to reach the target", func() bool { return w.fake.InFlight() == 1 })
	s.kill(t)
	if w.count("cur") != 1 {
		t.Fatalf("got %d records in cur/ after the kill, want 1", w.count("cur"))
	}
	w.serve()
	waitFor(t, "the job in done/", func() bool { return w.count("done") == 1 })
	r := w.record("done", "victim")
	if r.Attempts != 2 || !strings.Contains(answer(t, r), "survive") {
		t.Errorf("got attempts %d, answer %q; want 2 attempts and the full answer", r.Attempts, answer(t, r))
	}
	if n := w.count("cur") + w.count("failed") + w.count("new") + w.count("deferred"); n != 0 {
		t.Errorf("got %d other records, want exactly one record in all", n)
	}
}

func TestServeSIGTERMLetsTheRunningJobFinish(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(20), ollamatest.WithTokenDelay(20*time.Millisecond))
	s := w.serve()
	w.drop("current", chatJob("m1", "finish me"))
	w.drop("next", chatJob("m1", "not me"))
	waitFor(t, "the job to reach the target", func() bool { return w.fake.InFlight() == 1 })
	s.stop(t, syscall.SIGTERM)
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("got exit code %d, want 0", code)
	}
	if w.count("done") != 1 {
		t.Fatalf("got %d jobs in done/, want the running one", w.count("done"))
	}
	if w.count("new") != 1 {
		t.Errorf("got %d queued, want the next job left queued", w.count("new"))
	}
}

func TestServeTargetRestartMidRunFailsNothing(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(5), ollamatest.WithTokenDelay(5*time.Millisecond))
	w.serve()
	for i := range 20 {
		w.drop(fmt.Sprintf("j%02d", i), chatJob("m1", "x"))
	}
	waitFor(t, "some jobs done", func() bool { return w.count("done") >= 3 })
	w.fake.Stop()
	// The lane stops until the target answers again; the job it was
	// running goes back to the queue (deferred/) or waits in cur/.
	waitFor(t, "the runner to see the target down", func() bool {
		st := w.status()
		return len(st.Targets) == 1 && !st.Targets[0].Up
	})
	w.fake.Start()
	waitFor(t, "all jobs done", func() bool { return w.count("done") == 20 })
	for i := range 20 {
		if r := w.record("done", fmt.Sprintf("j%02d", i)); r.Attempts > 2 {
			t.Errorf("%s: got %d attempts", r.ID, r.Attempts)
		}
	}
	if w.count("failed") != 0 {
		t.Errorf("got %d failed jobs, want none", w.count("failed"))
	}
}

func TestCLISubmitWaitTailAndCancel(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(8), ollamatest.WithTokenDelay(5*time.Millisecond))
	w.serve()
	out := w.hopper("submit", "--wait", "-m", "m1", "-p", "hello there")
	lines := strings.SplitN(out, "\n", 2)
	if !spool.ValidID(lines[0]) || !strings.Contains(lines[1], "hello there") {
		t.Errorf("submit --wait printed %q, want the ID then the answer", out)
	}
	if got := w.hopper("cat", lines[0]); got != lines[1] {
		t.Errorf("cat printed %q, want %q", got, lines[1])
	}

	w.fake.HangNext(1)
	id := strings.TrimSpace(w.hopper("submit", "-m", "m2", "-p", "hang"))
	waitFor(t, "the job to reach the target", func() bool { return w.fake.InFlight() == 1 })
	if got := w.hopper("cancel", id); !strings.Contains(got, "abort") {
		t.Errorf("cancel printed %q", got)
	}
	if out, err := w.hopperErr("tail", id); err == nil || !strings.Contains(out, "canceled") {
		t.Errorf("tail of a canceled job: got %q, %v; want a failure naming the cancel", out, err)
	}
	r := w.record("failed", id)
	if r.Error == nil || r.Error.Kind != spool.KindCanceled {
		t.Errorf("got %+v, want canceled", r.Error)
	}
}

func TestServeSIGHUPReloadsSettingsWithoutDroppingTheRunningJob(t *testing.T) {
	w := newWorld(t, ollamatest.WithTokens(20), ollamatest.WithTokenDelay(20*time.Millisecond))
	conf := w.config("max_attempts: 3\n")
	s := w.serve()
	w.drop("long", chatJob("m1", "keep going"))
	waitFor(t, "the job to reach the target", func() bool { return w.fake.InFlight() == 1 })
	writeFile(t, conf, "max_attempts: 1\n", 0o640)
	_ = s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to be logged", func() bool { return strings.Contains(s.log.String(), "configuration reloaded") })
	waitFor(t, "the running job to finish", func() bool { return fileExists(filepath.Join(w.spool, "done", "long.json")) })
	if r := w.record("done", "long"); r.Attempts != 1 {
		t.Errorf("the running job: got %d attempts, want 1 (not dropped by the reload)", r.Attempts)
	}
	// The new max_attempts applies to the next job: one 500 now fails it.
	w.fake.FailNext(1, 500, "boom")
	w.drop("after", chatJob("m1", "x"))
	waitFor(t, "the next job to fail", func() bool { return fileExists(filepath.Join(w.spool, "failed", "after.json")) })
	if r := w.record("failed", "after"); r.Attempts != 1 {
		t.Errorf("got %d attempts, want 1 after reloading max_attempts: 1", r.Attempts)
	}
	// Functions defined in hopper.yaml reload; a restart-only setting says
	// it waits for the restart.
	writeFile(t, conf, "max_attempts: 1\nparallel: 3\nfunctions:\n  greet:\n    model: m1\n    prompt: \"Say hi to {{.name}}\"\n    vars: {name: {required: true}}\n", 0o640)
	_ = s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the restart-only change to be logged", func() bool {
		return strings.Contains(s.log.String(), "SIGHUP: parallel changed; it takes effect at the next restart")
	})
	w.drop("greeted", `{"function":"greet","vars":{"name":"Ada"}}`)
	waitFor(t, "a job calling the new function to run", func() bool { return fileExists(filepath.Join(w.spool, "done", "greeted.json")) })
	// A broken config is refused and the running settings kept.
	writeFile(t, conf, "max_atempts: 2\n", 0o640)
	_ = s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal to be logged", func() bool { return strings.Contains(s.log.String(), "keeping the running one") })
}

// TestHTTPFrontReloadsOnSIGHUP: the front alone (hopper http) takes
// SIGHUP as serve does, instead of dying of it: it keeps serving, reloads
// the functions section, and says which of its settings wait for a restart.
func TestHTTPFrontReloadsOnSIGHUP(t *testing.T) {
	w := newWorld(t)
	conf := w.config("max_attempts: 3\n")
	s, base := w.startFront("http")
	writeFile(t, conf, "tokens: [t0k3n-for-the-test]\nfunctions:\n  greet:\n    model: m1\n    prompt: \"Say hi to {{.name}}\"\n    vars: {name: {required: true}}\n", 0o640)
	_ = s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to be logged", func() bool { return strings.Contains(s.log.String(), "SIGHUP: configuration reloaded") })
	if !strings.Contains(s.log.String(), "SIGHUP: tokens changed; it takes effect at the next restart") {
		t.Errorf("the front did not say its tokens wait for a restart:\n%s", s.log.String())
	}
	status, _, body := runtest.Call(t, 10*time.Second, "GET", base+"/functions", nil)
	if status != http.StatusOK || !strings.Contains(string(body), `"greet"`) {
		t.Errorf("GET /functions after the reload: %d %s, want greet listed (and no token asked yet)", status, body)
	}
	s.stop(t, syscall.SIGTERM)
}

func TestServeTellsSystemdItIsReady(t *testing.T) {
	w := newWorld(t)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w.env = append(w.env, "NOTIFY_SOCKET="+sock)
	s := w.serve()
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		t.Fatalf("got %q, %v; want READY=1", buf[:n], err)
	}
	s.stop(t, syscall.SIGTERM)
	n, err = conn.Read(buf)
	if err != nil || string(buf[:n]) != "STOPPING=1" {
		t.Errorf("got %q, %v; want STOPPING=1", buf[:n], err)
	}
}
