package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/configs"
	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/hooks"

	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

func newInitCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the spool, an example hopper.yaml and a hooks directory",
		Long: `init creates the spool's directories (default ~/.local/state/hopper/spool),
writes hopper.yaml (every setting, documented, with its default; an existing
file is kept) to --config or $HOPPER_CONFIG if given, else
~/.config/hopper/hopper.yaml, and the hooks directory (default
~/.config/hopper/hooks) with a sample hook, prints every path it wrote, then
says what to try next. It never writes into the current directory unless a
path tells it to.

init refuses a spool directory that holds other files and is not a hopper
spool yet (say, --spool / or --spool $HOME), unless --force.`,
		Example: "  hopper init\n  hopper init --spool /var/spool/hopper --config /etc/hopper/hopper.yaml",
		Args:    exactArgs(0),
		RunE: a.withConfig(func(cmd *cobra.Command, args []string, cfg Config) error {
			if cfg.Spool == "" {
				return errNoSpool
			}
			o := spoolOptions(cfg)
			o.Force = force
			s, err := spool.Init(cfg.Spool, o)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(a.stdout, "spool    %s\n", s.Path())
			conf := a.configFile
			if conf == "" {
				conf = getenv(a.env, "HOPPER_CONFIG")
			}
			if conf == "" {
				conf = defaultConfigPath(a.env)
			}
			switch _, err := os.Stat(conf); {
			case conf == "":
				fmt.Fprintf(a.stdout, "config   none written: no $HOME or $XDG_CONFIG_HOME (use --config FILE)\n")
			case err == nil:
				fmt.Fprintf(a.stdout, "config   %s (kept as it was)\n", conf)
			default:
				if err := os.MkdirAll(filepath.Dir(conf), cfg.DirMode); err != nil {
					return fmt.Errorf("create %s: %w", filepath.Dir(conf), err)
				}
				example := bytes.Replace(configs.Example, []byte("\nspool: \"\"\n"), []byte("\nspool: "+s.Path()+"\n"), 1)
				if err := spool.WriteFileAtomic(conf, example, 0o640); err != nil {
					return fmt.Errorf("write %s: %w", conf, err)
				}
				fmt.Fprintf(a.stdout, "config   %s (every setting, documented)\n", conf)
			}
			if cfg.Hooks.Dir != "" {
				if err := os.MkdirAll(cfg.Hooks.Dir, cfg.DirMode); err != nil {
					return fmt.Errorf("create hooks directory: %w", err)
				}
				sample := filepath.Join(cfg.Hooks.Dir, "done.sample")
				if _, err := os.Stat(sample); err != nil {
					if err := spool.WriteFileAtomic(sample, configs.SampleHook, 0o750); err != nil {
						return fmt.Errorf("write %s: %w", sample, err)
					}
				}
				fmt.Fprintf(a.stdout, "hooks    %s (see %s)\n", cfg.Hooks.Dir, sample)
			}
			fmt.Fprintf(a.stdout, "\nnext:\n")
			fmt.Fprintf(a.stdout, "  %s serve &                                             # run jobs against Ollama at %s\n", a.name(), cfg.Ollama)
			fmt.Fprintf(a.stdout, "  echo '{\"model\":\"llama3.2\",\"prompt\":\"hi\"}' | %s submit -   # queue a job; prints its ID\n", a.name())
			fmt.Fprintf(a.stdout, "  %s status                                              # what is queued, running, loaded\n", a.name())
			return nil
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "make the spool in a directory that holds other files")
	return cmd
}

func newServeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the runner: claim queued jobs and run them on your Ollama servers",
		Long: `serve creates the spool if needed, takes its runner lock (one runner per
spool), finishes what a crash left behind, and runs queued jobs on every
target (targets:, or the one of --ollama / $OLLAMA_HOST) until SIGTERM or
SIGINT: one lane per target, up to its parallel slots in flight, all for one
model. On the first signal it claims nothing new and lets the running jobs
finish within shutdown_grace; after that they are aborted and stay queued,
with no attempt charged.`,
		Example: `  hopper serve
  hopper serve --ollama http://gpu-box:11434 --http off
  OLLAMA_HOST=127.0.0.1:11434 hopper serve --log-format json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Signals first: a SIGTERM while serve starts stops it cleanly.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg, s, targets, err := a.openTargets(true)
			if err != nil {
				return err
			}
			defer s.Close()
			// The lock comes first: a second serve refuses before it opens
			// any port or prints a banner.
			lock, err := s.Lock(lockLines(targets)...)
			if err != nil {
				return err
			}
			defer lock.Unlock()
			reg, err := functions.NewRegistry(cfg.Functions, cfg.FunctionsDir, a.logger.With("part", "functions"))
			if err != nil {
				return fmt.Errorf("functions: %w (check them with 'hopper functions validate')", err)
			}
			hk, err := hooks.New(hooksConfig(cfg, s, a.logger.With("part", "hooks")))
			if err != nil {
				return fmt.Errorf("hooks: %w", err)
			}
			node, lanes, err := joinCluster(cfg, s, targets, a.logger)
			if err != nil {
				return err
			}
			if node != nil {
				defer node.Close()
			}
			rc := runnerConfig(cfg, s, lanes, a.logger)
			rc.Functions, rc.Hooks, rc.Locked = reg, hk, true
			rc.Ready = func() { sdNotify(a.env, "READY=1") }
			r, err := runner.New(rc)
			if err != nil {
				return err
			}
			var ln net.Listener
			if cfg.HTTP != "off" {
				if ln, err = listenFront(cfg); err != nil {
					return err
				}
			}
			a.printBanner(ctx, s, targets, ln)
			a.warnMissingModels(ctx, reg.Current(), targets)

			// One run group: every goroutine serve starts is waited for.
			var group sync.WaitGroup
			defer group.Wait()
			group.Go(func() { _ = reg.Watch(ctx) })
			// Deliveries go on until the runner has stopped, so the last
			// events are sent (or stay in the outbox for the next start).
			hctx, stopHooks := context.WithCancel(context.Background())
			hooksDone := make(chan struct{})
			group.Go(func() {
				defer close(hooksDone)
				if err := hk.Run(hctx); err != nil {
					a.logger.Error("hooks stopped", "err", err)
				}
			})
			defer func() {
				stopHooks()
				<-hooksDone
			}()
			frontDone := make(chan error, 1)
			if ln != nil {
				group.Go(func() { frontDone <- a.serveFront(ctx, cfg, s, reg, ln) })
			} else {
				frontDone <- nil
			}
			clusterDone := make(chan error, 1)
			if node != nil {
				fmt.Fprintf(a.stdout, "  cluster %s\n", clusterURL(cfg.Cluster))
				group.Go(func() { clusterDone <- runCluster(ctx, node, cfg, s, targets, a.logger) })
			} else {
				clusterDone <- nil
			}
			stopReload := a.reloadOnHUP(cfg, func(next Config) {
				rc := runnerConfig(next, s, lanes, a.logger)
				rc.Functions, rc.Hooks = reg, hk
				r.Reconfigure(rc)
				a.reloadFunctions(reg, next)
			})
			defer stopReload()
			group.Go(func() {
				<-ctx.Done()
				sdNotify(a.env, "STOPPING=1")
			})
			err = r.Run(ctx)
			stop() // the runner is done (or never started): stop the front too
			if ferr := <-frontDone; ferr != nil && err == nil {
				err = fmt.Errorf("http front: %w", ferr)
			}
			if cerr := <-clusterDone; cerr != nil && err == nil {
				err = cerr
			}
			if node != nil {
				node.Close()
			}
			a.logger.Info("stopped")
			return err
		},
	}
	f := cmd.Flags()
	f.String("http", Default().HTTP, `HTTP front address, or "off"`)
	// No flag default: the help says what it is, once.
	f.String("ollama", "", "the Ollama target `URL` (default $OLLAMA_HOST, then http://127.0.0.1:11434)")
	a.bindFlag("http", f.Lookup("http"))
	a.bindFlag("ollama", f.Lookup("ollama"))
	return cmd
}

// reloadOnHUP re-reads the configuration on every SIGHUP and hands it to
// apply; a bad configuration is logged and the running one kept. It returns
// a function that stops listening.
func (a *app) reloadOnHUP(current Config, apply func(Config)) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			next, err := a.loadConfig()
			if err != nil {
				a.logger.Error("SIGHUP: the configuration has an error; keeping the running one", "err", err)
				continue
			}
			warnRestartOnly(a.logger, current, next)
			apply(next)
			a.logger.Info("SIGHUP: configuration reloaded")
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// reloadFunctions hands reg the functions section next holds, keeping the
// last good set when they have errors.
func (a *app) reloadFunctions(reg *functions.Registry, next Config) {
	if err := reg.ReloadFrom(next.Functions); err != nil {
		a.logger.Error("SIGHUP: the functions have errors; keeping the last good ones", "err", err)
	}
}

// restartOnly are the settings serve takes only as it starts: the spool,
// the targets and their lanes, the HTTP front, hooks, the cluster and the
// logger. SIGHUP applies the others (the runner's, and the functions).
var restartOnly = []string{"spool", "ollama", "targets", "parallel", "http", "tokens", "origins", "fsync",
	"dir_mode", "file_mode", "settle", "max_job_size", "max_upload", "functions_dir", "hooks", "log", "cluster"}

// warnRestartOnly logs each restart-only setting that differs between the
// running configuration and the one SIGHUP read, with both values when
// they are plain ones (lists and sections may hold secrets).
func warnRestartOnly(log *slog.Logger, running, next Config) {
	was, now := reflect.ValueOf(running), reflect.ValueOf(next)
	for i := range was.NumField() {
		key := strings.Split(was.Type().Field(i).Tag.Get("mapstructure"), ",")[0]
		w, n := was.Field(i), now.Field(i)
		if !slices.Contains(restartOnly, key) || reflect.DeepEqual(w.Interface(), n.Interface()) {
			continue
		}
		var values []any
		if k := w.Kind(); k != reflect.Slice && k != reflect.Map && k != reflect.Struct {
			values = []any{"running", w.Interface(), "configured", n.Interface()}
		}
		log.Warn("SIGHUP: "+key+" changed; it takes effect at the next restart", values...)
	}
}

// stallTimeout is how long a streaming answer may go silent.
const stallTimeout = 5 * time.Minute

// newTargets makes a client for every target the configuration names.
// openTargets reads the config, opens the spool (with create, creating it
// first if need be) and builds the targets; the caller closes the spool.
func (a *app) openTargets(create bool) (Config, *spool.Spool, []runner.TargetConfig, error) {
	cfg, err := a.config()
	if err != nil {
		return Config{}, nil, nil, err
	}
	s, err := a.openSpool(create)
	if err != nil {
		return Config{}, nil, nil, err
	}
	targets, err := newTargets(cfg)
	if err != nil {
		s.Close()
		return Config{}, nil, nil, err
	}
	return cfg, s, targets, nil
}

func newTargets(cfg Config) ([]runner.TargetConfig, error) {
	out := cfg.TargetList()
	for i, t := range out {
		client, err := ollama.New(t.URL, nil) // parseConfig checked it
		if err != nil {
			return nil, err
		}
		// A generation that sends nothing for this long has stalled: the
		// attempt fails and is retried.
		client.StallTimeout = stallTimeout
		out[i].URL, out[i].Target = client.BaseURL(), client
	}
	return out, nil
}

// lockLines are what the runner lock file says of each target.
func lockLines(targets []runner.TargetConfig) []string {
	out := make([]string, len(targets))
	for i, t := range targets {
		out[i] = t.LockLine()
	}
	return out
}

// runnerConfig turns the configuration into the runner's.
func runnerConfig(cfg Config, s *spool.Spool, targets []runner.TargetConfig, logger *slog.Logger) runner.Config {
	return runner.Config{
		Spool:   s,
		Targets: targets,
		Policy: runner.Policy{
			Schedule: cfg.Schedule,
			MaxWait:  cfg.MaxWait,
			Pinned:   cfg.Pinned,
		},
		KeepAlive:     cfg.KeepAlive,
		MaxAttempts:   cfg.MaxAttempts,
		Timeout:       cfg.Timeout,
		MaxAge:        cfg.MaxAge,
		ShutdownGrace: cfg.ShutdownGrace,
		Settle:        cfg.Settle,
		RetainDone:    cfg.Retention.Done,
		RetainFailed:  cfg.Retention.Failed,
		RetryBase:     cfg.RetryBackoff,
		RetryMax:      cfg.RetryBackoffMax,
		Logger:        logger,
	}
}

// printBanner says at start what this runner serves and whether each
// target answers, and what to try next.
func (a *app) printBanner(ctx context.Context, s *spool.Spool, targets []runner.TargetConfig, ln net.Listener) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	probed := probeTargets(ctx, targets)
	paused := "no"
	if s.Paused() {
		paused = "YES: nothing runs until 'hopper resume'"
	}
	fmt.Fprintf(a.stdout, "hopper %s\n  spool   %s\n", buildVersion(debug.ReadBuildInfo()).Version, s.Path())
	for _, t := range probed {
		fmt.Fprintf(a.stdout, "  target  %s\n", targetLine(t, len(targets) > 1))
	}
	fmt.Fprintf(a.stdout, "  http    %s\n  paused  %s\n", httpLine(ln), paused)
	fmt.Fprintf(a.stdout, "  try     echo '{\"model\":\"llama3.2\",\"prompt\":\"hi\"}' | %s submit --wait -\n", a.name())
	if ln != nil {
		fmt.Fprintf(a.stdout, "          OLLAMA_HOST=%s ollama run llama3.2   # any Ollama client, through the queue\n", ln.Addr())
	}
}

// warnMissingModels logs each function whose model no target has
// installed (say, the example functions' llama3.2 on a server that has
// other models): its jobs would fail with "model not found". It says
// nothing when a target cannot be asked.
func (a *app) warnMissingModels(ctx context.Context, set *functions.Set, targets []runner.TargetConfig) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	have := map[string]bool{}
	for _, t := range targets {
		tg, ok := t.Target.(interface {
			Tags(context.Context) ([]ollama.Model, error)
		})
		if !ok {
			return
		}
		models, err := tg.Tags(ctx)
		if err != nil {
			return
		}
		for _, m := range models {
			have[ollama.NormalizeModel(m.Name)] = true
		}
	}
	for _, name := range set.Names() {
		if f, ok := set.Get(name); ok && f.Model != "" && !have[ollama.NormalizeModel(f.Model)] {
			a.logger.Warn("function "+name+" names model "+f.Model+", which no target has: its jobs will fail until it is pulled (ollama pull "+f.Model+")", "function", name, "source", f.Source)
		}
	}
}

// targetLine describes one probed target for the banner.
func targetLine(t spool.TargetStatus, named bool) string {
	line := t.URL
	if named {
		line = t.Name + " " + t.URL
	}
	if t.Slots > 1 {
		line += fmt.Sprintf(" (%d slots)", t.Slots)
	}
	if !t.Up {
		return line + fmt.Sprintf("  NOT REACHABLE (%s): its jobs wait until it answers", t.Error)
	}
	line += "  up, Ollama " + t.Version
	if len(t.Resident) > 0 {
		line += ", loaded: " + strings.Join(t.Resident, ", ")
	}
	return line
}

func httpLine(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return "http://" + ln.Addr().String() + "  (jobs API, Ollama and OpenAI drop-in: OLLAMA_HOST=" + ln.Addr().String() + ")"
}
