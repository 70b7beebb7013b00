package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/google/renameio/v2"
	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/configs"
	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/hooks"

	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

func newInitCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the spool, an example hopper.yaml and a hooks directory",
		Long: `init creates the spool's directories, writes ./hopper.yaml (every setting,
documented, with its default; an existing file is kept) and the hooks
directory with a sample hook (hooks/done.sample), then says what to try next.`,
		Example: "  hopper init\n  hopper init --spool /var/spool/hopper",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			s, err := a.openSpool(true)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(a.stdout, "spool    %s\n", s.Path())
			conf := "hopper.yaml"
			if _, err := os.Stat(conf); err == nil {
				fmt.Fprintf(a.stdout, "config   %s (kept as it was)\n", conf)
			} else {
				example := bytes.Replace(configs.Example, []byte("\nspool: ./spool\n"), []byte("\nspool: "+cfg.Spool+"\n"), 1)
				if err := renameio.WriteFile(conf, example, 0o640); err != nil {
					return fmt.Errorf("write %s: %w", conf, err)
				}
				fmt.Fprintf(a.stdout, "config   %s (every setting, documented)\n", conf)
			}
			if err := os.MkdirAll(cfg.Hooks.Dir, cfg.DirMode); err != nil {
				return fmt.Errorf("create hooks directory: %w", err)
			}
			sample := filepath.Join(cfg.Hooks.Dir, "done.sample")
			if _, err := os.Stat(sample); err != nil {
				if err := renameio.WriteFile(sample, configs.SampleHook, 0o750); err != nil {
					return fmt.Errorf("write %s: %w", sample, err)
				}
			}
			fmt.Fprintf(a.stdout, "hooks    %s (see done.sample)\n\nnext:\n", cfg.Hooks.Dir)
			fmt.Fprintf(a.stdout, "  hopper serve &                                             # run jobs against Ollama at %s\n", cfg.Ollama)
			fmt.Fprintf(a.stdout, "  echo '{\"model\":\"llama3.2\",\"prompt\":\"hi\"}' | hopper submit -   # queue a job; prints its ID\n")
			fmt.Fprintf(a.stdout, "  hopper status                                              # what is queued, running, loaded\n")
			return nil
		},
	}
}

func newServeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the runner: claim queued jobs and run them against Ollama, one at a time",
		Long: `serve creates the spool if needed, takes its runner lock (one runner per
spool), finishes what a crash left behind, and runs queued jobs one at a time
against the Ollama target until SIGTERM or SIGINT. On the first signal it
claims nothing new and lets the running job finish within shutdown_grace;
after that the job is aborted and stays queued, with no attempt charged.`,
		Example: `  hopper serve
  hopper serve --ollama http://gpu-box:11434 --http off
  OLLAMA_HOST=127.0.0.1:11434 hopper serve --log-format json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			s, err := a.openSpool(true)
			if err != nil {
				return err
			}
			defer s.Close()
			client, err := ollama.New(cfg.Ollama, nil)
			if err != nil {
				return fmt.Errorf("config: ollama: %w", err)
			}
			// A generation that sends nothing for this long has stalled: the
			// attempt fails and is retried.
			client.StallTimeout = stallTimeout
			reg, err := functions.NewRegistry(cfg.Functions, cfg.FunctionsDir, a.logger.With("part", "functions"))
			if err != nil {
				return fmt.Errorf("functions: %w (check them with 'hopper functions validate')", err)
			}
			hk, err := hooks.New(hooksConfig(cfg, s, a.logger.With("part", "hooks")))
			if err != nil {
				return fmt.Errorf("hooks: %w", err)
			}
			rc := runnerConfig(cfg, s, client, a)
			rc.Functions, rc.Hooks = reg, hk
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
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a.printBanner(ctx, cfg, s, client, ln)
			go func() { _ = reg.Watch(ctx) }()
			// Deliveries go on until the runner has stopped, so the last
			// events are sent (or stay in the outbox for the next start).
			hctx, stopHooks := context.WithCancel(context.Background())
			hooksDone := make(chan struct{})
			go func() {
				defer close(hooksDone)
				if err := hk.Run(hctx); err != nil {
					a.logger.Error("hooks stopped", "err", err)
				}
			}()
			defer func() {
				stopHooks()
				<-hooksDone
			}()
			frontDone := make(chan error, 1)
			if ln != nil {
				go func() { frontDone <- a.serveFront(ctx, cfg, s, reg, ln) }()
			} else {
				frontDone <- nil
			}
			stopReload := a.reloadOnHUP(cfg, func(next Config) {
				rc := runnerConfig(next, s, client, a)
				rc.Functions, rc.Hooks = reg, hk
				r.Reconfigure(rc)
				if err := reg.Reload(); err != nil {
					a.logger.Error("SIGHUP: the functions have errors; keeping the last good ones", "err", err)
				}
			})
			defer stopReload()
			go func() {
				<-ctx.Done()
				sdNotify(a.env, "STOPPING=1")
			}()
			err = r.Run(ctx)
			stop() // the runner is done (or never started): stop the front too
			if ferr := <-frontDone; ferr != nil && err == nil {
				err = fmt.Errorf("http front: %w", ferr)
			}
			if errors.Is(err, spool.ErrLocked) {
				return err
			}
			a.logger.Info("stopped")
			return err
		},
	}
	f := cmd.Flags()
	f.String("http", Default().HTTP, `HTTP front address, or "off"`)
	f.String("ollama", Default().Ollama, "the Ollama target `URL` (default $OLLAMA_HOST, then http://127.0.0.1:11434)")
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
			for _, k := range []struct{ key, was, now string }{
				{"spool", current.Spool, next.Spool}, {"ollama", current.Ollama, next.Ollama}, {"http", current.HTTP, next.HTTP},
			} {
				if k.was != k.now {
					a.logger.Warn("SIGHUP: "+k.key+" changed; it takes effect at the next restart", "running", k.was, "configured", k.now)
				}
			}
			if !reflect.DeepEqual(current.Hooks, next.Hooks) {
				a.logger.Warn("SIGHUP: hooks settings changed; they take effect at the next restart")
			}
			apply(next)
			a.logger.Info("SIGHUP: configuration reloaded")
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// stallTimeout is how long a streaming answer may go silent.
const stallTimeout = 5 * time.Minute

func runnerConfig(cfg Config, s *spool.Spool, client *ollama.Client, a *app) runner.Config {
	return runner.Config{
		Spool:      s,
		Target:     client,
		TargetName: client.BaseURL(),
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
		Logger:        a.logger,
	}
}

// printBanner says at start what this runner serves and whether the target
// answers.
func (a *app) printBanner(ctx context.Context, cfg Config, s *spool.Spool, client *ollama.Client, ln net.Listener) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	target := client.BaseURL()
	if v, err := client.Version(ctx); err != nil {
		target += fmt.Sprintf("  NOT REACHABLE (%v): jobs wait until it answers", err)
	} else {
		target += "  up, Ollama " + v
		if ms, err := client.Running(ctx); err == nil && len(ms) > 0 {
			names := make([]string, len(ms))
			for i, m := range ms {
				names[i] = m.Name
			}
			target += ", loaded: " + strings.Join(names, ", ")
		}
	}
	paused := "no"
	if s.Paused() {
		paused = "YES: nothing runs until 'hopper resume'"
	}
	fmt.Fprintf(a.stdout, "hopper %s\n  spool   %s\n  target  %s\n  http    %s\n  paused  %s\n",
		buildVersion(debug.ReadBuildInfo()).Version, s.Path(), target, httpLine(ln), paused)
}

func httpLine(ln net.Listener) string {
	if ln == nil {
		return "off"
	}
	return "http://" + ln.Addr().String() + "  (jobs API, Ollama and OpenAI drop-in: OLLAMA_HOST=" + ln.Addr().String() + ")"
}
