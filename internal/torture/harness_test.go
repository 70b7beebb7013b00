package torture

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// binDir holds the binaries built for this test run; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// build is one hopper binary, built at most once per test run.
type build struct {
	once sync.Once
	path string
	err  error
}

var raceBuild, plainBuild build

// hopperBin returns the hopper binary: $HOPPER_TORTURE_BIN if set, else one
// built from this module, with the race detector when race is set (the
// tests) or without (the benchmarks, which must not pay for it).
func hopperBin(tb testing.TB, race bool) string {
	tb.Helper()
	if p := os.Getenv("HOPPER_TORTURE_BIN"); p != "" {
		return p
	}
	b, name, args := &plainBuild, "hopper", []string{"build"}
	if race {
		b, name, args = &raceBuild, "hopper-race", []string{"build", "-race"}
	}
	b.once.Do(func() {
		if binDir == "" {
			if binDir, b.err = os.MkdirTemp("", "hopper-torture-"); b.err != nil {
				return
			}
		}
		b.path = filepath.Join(binDir, name)
		args = append(args, "-o", b.path, "github.com/hopper-dev/hopper/cmd/hopper")
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// world is a spool, a fake Ollama, and the environment every hopper
// command of one test runs with.
type world struct {
	tb    testing.TB
	dir   string // the working directory of hopper commands; holds spool/ and logs/
	spool string
	fake  *ollamatest.Server // the target (with useTargets, the first)
	bin   string
	env   []string

	mu    sync.Mutex
	procs []*proc
	seq   int
}

// newWorld makes a spool under dir (a fresh temporary directory when dir is
// "") served by fake. settings are HOPPER_* variables that override the
// defaults set here.
func newWorld(tb testing.TB, race bool, fake *ollamatest.Server, dir string, settings ...string) *world {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and runs the hopper binary")
	}
	if dir == "" {
		dir = tb.TempDir()
	}
	w := &world{tb: tb, dir: dir, spool: filepath.Join(dir, "spool"), fake: fake, bin: hopperBin(tb, race)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOPPER_") && !strings.HasPrefix(kv, "OLLAMA_HOST=") {
			w.env = append(w.env, kv)
		}
	}
	w.env = append(w.env,
		"HOPPER_OLLAMA="+fake.URL,
		"HOPPER_SPOOL="+w.spool,
		"HOPPER_CONFIG=/dev/null",
		"HOPPER_HTTP=off",
		"HOPPER_RETRY_BACKOFF=20ms",
		"HOPPER_RETRY_BACKOFF_MAX=100ms",
	)
	if os.Getenv("GORACE") == "" {
		// A race-enabled binary sleeps a second at exit by default; every
		// hopper submit would pay it.
		w.env = append(w.env, "GORACE=atexit_sleep_ms=0")
	}
	w.env = append(w.env, settings...)
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o750); err != nil {
		tb.Fatal(err)
	}
	w.hopper("init")
	tb.Cleanup(w.stopAll)
	return w
}

// useTargets makes the hopper commands of the world drive fakes instead of
// its one fake: one lane each, with slots requests in flight, named t1,
// t2, ... in a config file that HOPPER_CONFIG points at. It returns the
// names. Call it before starting any command.
func (w *world) useTargets(slots int, fakes ...*ollamatest.Server) []string {
	w.tb.Helper()
	names := make([]string, len(fakes))
	var conf strings.Builder
	conf.WriteString("targets:\n")
	for i, f := range fakes {
		names[i] = fmt.Sprintf("t%d", i+1)
		fmt.Fprintf(&conf, "  - {name: %s, url: %q, parallel: %d}\n", names[i], f.URL, slots)
	}
	path := filepath.Join(w.dir, "lanes.yaml")
	if err := os.WriteFile(path, []byte(conf.String()), 0o640); err != nil {
		w.tb.Fatal(err)
	}
	for i, kv := range w.env {
		if strings.HasPrefix(kv, "HOPPER_CONFIG=") {
			w.env[i] = "HOPPER_CONFIG=" + path
		}
	}
	return names
}

// hopper runs a command to completion and returns its standard output; it
// fails the test if the command fails.
func (w *world) hopper(args ...string) string {
	w.tb.Helper()
	out, err := w.hopperErr(context.Background(), "", args...)
	if err != nil {
		w.tb.Fatalf("hopper %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// hopperErr runs a command with stdin and returns its standard output, or
// its output and standard error with the error.
func (w *world) hopperErr(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Env, cmd.Dir = w.env, w.dir
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// proc is a long-running hopper command (serve, http) whose output goes to
// a log file.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   string
	done  chan struct{}
	state *os.ProcessState
}

// start runs a long-running hopper command with extra environment
// settings. It is stopped (SIGKILL) when the test ends, if it still runs.
func (w *world) start(extraEnv []string, args ...string) *proc {
	w.tb.Helper()
	w.mu.Lock()
	w.seq++
	name := fmt.Sprintf("%s-%03d", args[0], w.seq)
	w.mu.Unlock()
	logPath := filepath.Join(w.dir, "logs", name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		w.tb.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(w.bin, args...)
	cmd.Env, cmd.Dir = append(w.env[:len(w.env):len(w.env)], extraEnv...), w.dir
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		w.tb.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// term sends SIGTERM and returns the exit code, failing the test if the
// process does not exit within a minute.
func (p *proc) term(tb testing.TB) int {
	tb.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.kill()
		tb.Fatalf("%s did not exit within a minute of SIGTERM", p.name)
	}
	return p.state.ExitCode()
}

// peakRSS is the largest resident set of an exited process, in bytes.
func (p *proc) peakRSS() int64 {
	if ru, ok := p.state.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024 // kilobytes on Linux
	}
	return 0
}

func (w *world) stopAll() {
	w.mu.Lock()
	procs := w.procs
	w.mu.Unlock()
	for _, p := range procs {
		if !p.exited() {
			p.kill()
		}
	}
	w.checkLogs()
}

// logAlarms are lines no hopper process may ever print.
var logAlarms = []string{"WARNING: DATA RACE", "panic:", "fatal error:"}

// checkLogs fails the test if any hopper process raced or panicked, and
// shows the logs of every process when the test failed.
func (w *world) checkLogs() {
	w.mu.Lock()
	procs := w.procs
	w.mu.Unlock()
	for _, p := range procs {
		data, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		for _, alarm := range logAlarms {
			if i := strings.Index(string(data), alarm); i >= 0 {
				w.tb.Errorf("%s printed %q:\n%s", p.name, alarm, excerpt(string(data), i))
				break
			}
		}
	}
	if w.tb.Failed() && len(procs) > 0 {
		last := procs[len(procs)-1]
		data, _ := os.ReadFile(last.log)
		w.tb.Logf("logs are in %s; the last one (%s) ends:\n%s", filepath.Join(w.dir, "logs"), last.name, tail(string(data), 40))
	}
}

func excerpt(s string, i int) string {
	return s[max(0, i-200):min(len(s), i+3000)]
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(parts[max(0, len(parts)-lines):], "\n")
}

// waitFor polls cond every few milliseconds until it holds, or fails the
// test after limit.
func waitFor(tb testing.TB, limit time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !runtest.Poll(limit, 5*time.Millisecond, cond) {
		tb.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// watch reports what happens in dirs until the test ends.
func watch(tb testing.TB, dirs ...string) *fsnotify.Watcher {
	tb.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			tb.Fatal(err)
		}
	}
	return w
}

// killAt kills serve the moment a file that hit accepts is created in or
// renamed into a directory watcher watches, and returns the file's path.
// It fails the test if none comes within a minute; what names the file.
func killAt(tb testing.TB, watcher *fsnotify.Watcher, serve *proc, what string, hit func(path string) bool) string {
	tb.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case ev := <-watcher.Events:
			if ev.Op&(fsnotify.Create|fsnotify.Rename) != 0 && hit(ev.Name) {
				serve.kill()
				return ev.Name
			}
		case <-deadline:
			tb.Fatalf("no %s within a minute", what)
		}
	}
}

// waitHealthy waits until the front at base answers /healthz.
func waitHealthy(tb testing.TB, base string) {
	tb.Helper()
	waitFor(tb, time.Minute, "the front at "+base+" to answer /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// names lists the entries of a spool directory, or fails the test.
func (w *world) names(dir string) []string {
	w.tb.Helper()
	entries, err := os.ReadDir(filepath.Join(w.spool, dir))
	if err != nil {
		w.tb.Fatal(err)
	}
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Name()
	}
	return out
}

// count is the number of entries in a spool directory (0 if unreadable).
func (w *world) count(dir string) int {
	entries, _ := os.ReadDir(filepath.Join(w.spool, dir))
	return len(entries)
}

// records reads every record in done/ and failed/.
func (w *world) records() []*spool.Record {
	w.tb.Helper()
	var out []*spool.Record
	for _, d := range []string{spool.DirDone, spool.DirFailed} {
		for _, name := range w.names(d) {
			if !strings.HasSuffix(name, ".json") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(w.spool, d, name))
			if err != nil {
				w.tb.Fatal(err)
			}
			r, err := spool.ParseRecord(data)
			if err != nil {
				w.tb.Fatalf("%s/%s: %v", d, name, err)
			}
			if r.ID+".json" != name {
				w.tb.Errorf("%s/%s holds the record of %q", d, name, r.ID)
			}
			if (d == spool.DirDone) != (r.State == spool.StateDone) || !r.State.Terminal() {
				w.tb.Errorf("%s/%s: state %q in %s/", d, name, r.State, d)
			}
			out = append(out, r)
		}
	}
	return out
}

// promptOf is the text a job asks about: the last message's content, or
// the prompt.
func promptOf(job []byte) string {
	var v struct {
		Prompt   string `json:"prompt"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
	}
	_ = json.Unmarshal(job, &v)
	if n := len(v.Messages); n > 0 {
		return v.Messages[n-1].Content
	}
	return v.Prompt
}

// answerOf is the text of a record's response: a chat message's content or
// a generation.
func answerOf(resp json.RawMessage) string {
	var v struct {
		Response string `json:"response"`
		Message  struct {
			Content string `json:"content"`
		} `json:"message"`
	}
	_ = json.Unmarshal(resp, &v)
	return v.Message.Content + v.Response
}

// inference reports whether a request path at the target runs a model.
func inference(path string) bool {
	switch path {
	case "/api/chat", "/api/generate", "/api/embed", "/api/embeddings",
		"/v1/chat/completions", "/v1/completions", "/v1/embeddings":
		return true
	}
	return false
}

// run is one inference request a target received: which of the world's
// fakes, and when.
type run struct {
	target int
	at     time.Time
}

// runs lists the inference requests the fakes received, by prompt, oldest
// first.
func runs(fakes ...*ollamatest.Server) map[string][]run {
	out := map[string][]run{}
	for i, f := range fakes {
		for _, r := range f.Requests() {
			if inference(r.Path) {
				p := promptOf(r.Body)
				out[p] = append(out[p], run{target: i, at: r.Time})
			}
		}
	}
	for _, rs := range out {
		slices.SortStableFunc(rs, func(a, b run) int { return a.at.Compare(b.at) })
	}
	return out
}
