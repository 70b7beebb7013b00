package realollama

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/realollama/gguf"
	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/spool"
)

// Version is the Ollama release the harness expects (see .ci/ollama.sh).
const Version = "0.17.4"

// Environment variables the harness reads.
const (
	// EnvBin names an ollama binary to use instead of the cached build.
	EnvBin = "HOPPER_OLLAMA_BIN"
	// EnvRequired, when "1", turns a missing binary into a test failure.
	EnvRequired = "HOPPER_REAL_OLLAMA"
)

// Modelfile parameters every created model gets.
const (
	NumPredict = 16
	Template   = `{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}
{{ end }}<|assistant|>`
)

// Binary returns the path of the ollama binary, or ends the test: t.Skip
// normally, t.Fatal when HOPPER_REAL_OLLAMA=1.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := binaryPath()
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("realollama: no ollama binary: %v; run `bash .ci/ollama.sh` to build ollama %s (about 5 minutes), or set %s", err, Version, EnvBin)
	if os.Getenv(EnvRequired) == "1" {
		t.Fatalf("%s (%s=1: a real Ollama server is required)", msg, EnvRequired)
	}
	t.Skip(msg)
	return ""
}

// CachePath is where .ci/ollama.sh puts the binary.
func CachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("realollama: %w", err)
	}
	return filepath.Join(dir, "hopper", "ollama-"+Version, "ollama"), nil
}

func binaryPath() (string, error) {
	path := os.Getenv(EnvBin)
	if path == "" {
		var err error
		if path, err = CachePath(); err != nil {
			return "", err
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", path)
	}
	return path, nil
}

// Option configures Start.
type Option func(*config)

type config struct {
	maxLoaded int
	env       []string
	grace     time.Duration
	ready     time.Duration
}

// WithMaxLoadedModels sets OLLAMA_MAX_LOADED_MODELS (default: unset, Ollama's
// own default). With 1, every switch between models is a real unload + load.
func WithMaxLoadedModels(n int) Option {
	return func(c *config) { c.maxLoaded = n }
}

// WithEnv adds KEY=VALUE variables to the server's environment, after the
// harness's own (so they win), e.g. "OLLAMA_KEEP_ALIVE=1s".
func WithEnv(kv ...string) Option {
	return func(c *config) { c.env = append(c.env, kv...) }
}

// Server is a running `ollama serve`.
type Server struct {
	// URL is the server's base URL, http://127.0.0.1:PORT, without a slash.
	URL string
	// Host is 127.0.0.1:PORT, the form OLLAMA_HOST takes.
	Host string
	// Log is the path of the file receiving the server's stdout and stderr.
	Log string

	bin  string
	home string
	env  []string

	mu      sync.Mutex
	created map[string]int64 // model name -> seed
}

// Answer is what tests read from an answer of /api/chat or /api/generate,
// or from a line of its stream.
type Answer struct {
	Model   string `json:"model"`
	Message struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"message"`
	Response      string        `json:"response"`
	Done          bool          `json:"done"`
	DoneReason    string        `json:"done_reason"`
	LoadDuration  time.Duration `json:"load_duration"`
	EvalCount     int           `json:"eval_count"`
	TotalDuration time.Duration `json:"total_duration"`
}

// Start starts a server for the test and stops it in the test's cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := Binary(t)
	cfg := config{grace: 10 * time.Second, ready: 60 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}

	root := t.TempDir()
	home := filepath.Join(root, "home")
	models := filepath.Join(root, "models")
	for _, d := range []string{home, models} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatalf("realollama: %v", err)
		}
	}

	// The port is picked by binding :0 and releasing it, so another process
	// may take it first; a server that exits before it answers is retried on
	// a new port.
	var lastErr error
	for attempt := range 3 {
		s := &Server{bin: bin, home: home, created: map[string]int64{}}
		s.Log = filepath.Join(root, fmt.Sprintf("server-%d.log", attempt))
		s.Host = runtest.FreeAddr(t)
		s.URL = "http://" + s.Host
		s.env = append(baseEnv(home),
			"OLLAMA_HOST="+s.Host,
			"OLLAMA_MODELS="+models,
			"OLLAMA_NO_CLOUD=1",
			"GIN_MODE=release", // no route table in the log
		)
		if cfg.maxLoaded > 0 {
			s.env = append(s.env, "OLLAMA_MAX_LOADED_MODELS="+strconv.Itoa(cfg.maxLoaded))
		}
		s.env = append(s.env, cfg.env...)

		exited, err := s.start(t, cfg)
		if err == nil {
			return s
		}
		lastErr = err
		if !exited {
			break
		}
	}
	t.Fatalf("realollama: %v", lastErr)
	return nil
}

// start runs the process and waits until it answers. exited reports whether
// the process ended by itself (so a retry may help).
func (s *Server) start(t testing.TB, cfg config) (exited bool, err error) {
	t.Helper()
	logf, err := os.Create(s.Log)
	if err != nil {
		return false, err
	}
	cmd := exec.Command(s.bin, "serve")
	cmd.Env = s.env
	cmd.Dir = s.home
	cmd.Stdout = logf
	cmd.Stderr = logf
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return false, fmt.Errorf("start %s serve: %w", s.bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); _ = logf.Close() }()

	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		signalGroup(cmd, false)
		select {
		case <-done:
		case <-time.After(cfg.grace):
			signalGroup(cmd, true)
			<-done
		}
		// Runners were in the same group; make sure none is left behind even
		// if the server exited on its own.
		signalGroup(cmd, true)
	}

	if err := s.waitReady(done, cfg.ready); err != nil {
		var exit *exitError
		exited = errors.As(err, &exit)
		stop()
		return exited, fmt.Errorf("%w\n%s", err, tail(s.Log, 40))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("realollama: server log %s (tail):\n%s", s.Log, tail(s.Log, 60))
		}
	})
	return false, nil
}

type exitError struct{ err error }

func (e *exitError) Error() string {
	return fmt.Sprintf("ollama serve exited before answering: %v", e.err)
}
func (e *exitError) Unwrap() error { return e.err }

func (s *Server) waitReady(done <-chan error, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/", nil)
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-done:
			return &exitError{err: err}
		case <-ctx.Done():
			return fmt.Errorf("ollama serve on %s did not answer GET / within %v", s.Host, limit)
		case <-tick.C:
		}
	}
}

// CreateModel creates model name from the tiny GGUF of seed on this server.
// Creating a name that already exists here with the same seed does nothing;
// with another seed it fails the test.
func (s *Server) CreateModel(t testing.TB, name string, seed int64) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.created[name]; ok {
		if prev != seed {
			t.Fatalf("realollama: model %q already created with seed %d, not %d", name, prev, seed)
		}
		return
	}
	dir, err := modelFiles(seed)
	if err != nil {
		t.Fatalf("realollama: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, "create", name, "-f", filepath.Join(dir, "Modelfile"))
	cmd.Dir = dir
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("realollama: ollama create %s (seed %d): %v\n%s", name, seed, err, out)
	}
	s.created[name] = seed
}

// Modelfile returns the Modelfile CreateModel uses, for a GGUF file at path
// (relative paths are taken from the Modelfile's directory).
func Modelfile(path string) string {
	return fmt.Sprintf("FROM %s\nTEMPLATE \"\"\"%s\"\"\"\nPARAMETER num_predict %d\nPARAMETER temperature 0\n",
		path, Template, NumPredict)
}

var (
	filesMu  sync.Mutex
	filesDir = map[int64]string{}
)

// modelFiles writes tiny.gguf and a Modelfile for seed into a directory
// under the user cache directory (keyed by the seed) and returns it. Each test
// binary checks the files once per seed and rewrites them only if their bytes
// differ from what this build of the harness would write, so files left by an
// earlier run are reused and stale ones are replaced.
func modelFiles(seed int64) (string, error) {
	filesMu.Lock()
	defer filesMu.Unlock()
	if dir, ok := filesDir[seed]; ok {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "hopper", "ollama-"+Version, "models", fmt.Sprintf("tiny-seed-%d", seed))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("model files: %w", err)
	}
	var model bytes.Buffer
	if err := gguf.Write(&model, gguf.Tiny(seed)); err != nil {
		return "", fmt.Errorf("model files: %w", err)
	}
	for name, want := range map[string][]byte{
		"tiny.gguf": model.Bytes(),
		"Modelfile": []byte(Modelfile("./tiny.gguf")),
	} {
		path := filepath.Join(dir, name)
		if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
			continue
		}
		if err := spool.WriteFileAtomic(path, want, 0o640); err != nil {
			return "", fmt.Errorf("model files: %w", err)
		}
	}
	filesDir[seed] = dir
	return dir, nil
}

// baseEnv is the test process's environment without OLLAMA_* and HOME.
func baseEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OLLAMA_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
