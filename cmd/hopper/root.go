package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// app is what every subcommand shares: the injected writers and environment,
// the global flags, the configuration and the logger. Subcommands write to
// a.stdout, log with a.logger, and get settings from a.config().
type app struct {
	stdout, stderr io.Writer
	env            []string // the process environment, as os.Environ() gives it
	root           *cobra.Command
	logger         *slog.Logger // built from log.format and log.level before a subcommand runs
	json           bool         // --json: listing commands print JSON

	configFile string                   // --config
	flags      map[string][]*pflag.Flag // config key → the flags that override it
	started    bool                     // the command line parsed; the command began
	loadOnce   sync.Once
	cfg        Config
	cfgErr     error
}

// noConfigAnnotation marks a command that must work without a valid config
// (version, help): the config is not loaded before it runs.
const noConfigAnnotation = "hopper/no-config"

// newRootCmd builds the hopper command tree, writing to stdout and stderr and
// reading settings from env (os.Environ() in main).
func newRootCmd(stdout, stderr io.Writer, env []string) *cobra.Command {
	return newApp(stdout, stderr, env).root
}

func newApp(stdout, stderr io.Writer, env []string) *app {
	a := &app{
		stdout: stdout,
		stderr: stderr,
		env:    env,
		logger: newLogger(stderr, "text", "info"),
		flags:  map[string][]*pflag.Flag{},
	}
	root := &cobra.Command{
		Use:   "hopper",
		Short: "A maildir-style job queue in front of Ollama",
		Long: `hopper queues LLM jobs as plain files in a spool directory and runs them
one at a time against an Ollama server, so the GPU never thrashes between models.

Settings come from flags, then HOPPER_* environment variables (hooks.secret is
HOPPER_HOOKS_SECRET), then the config file (--config, $HOPPER_CONFIG, or the first
hopper.yaml in ., ./configs, $XDG_CONFIG_HOME/hopper, /etc/hopper), then defaults.
configs/hopper.yaml documents every setting.

Exit status: 0 ok, 1 failure, 2 usage.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.preRun,
	}
	a.root = root
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	pf := root.PersistentFlags()
	pf.String("spool", "", "the spool `DIR` (default $XDG_STATE_HOME/hopper/spool, i.e. ~/.local/state/hopper/spool)")
	pf.StringVar(&a.configFile, "config", "", "read settings from `FILE`")
	pf.BoolVar(&a.json, "json", false, "print JSON (listing commands)")
	pf.String("log-format", Default().Log.Format, "log `FORMAT`: text or json")
	pf.String("log-level", Default().Log.Level, "log `LEVEL`: debug, info, warn or error")
	a.bindFlag("spool", pf.Lookup("spool"))
	a.bindFlag("log.format", pf.Lookup("log-format"))
	a.bindFlag("log.level", pf.Lookup("log-level"))

	root.AddCommand(newVersionCmd(a))
	addCommands(root, a)
	a.chainPreRuns(root)
	return a
}

// bindFlag makes flag f, when given on the command line, override config key
// (as spelled in the file: "http", "max_wait", "hooks.secret"). A subcommand
// binds its own flags when it is built, e.g. serve's --http:
//
//	cmd.Flags().String("http", "", `listen address, or "off"`)
//	a.bindFlag("http", cmd.Flags().Lookup("http"))
func (a *app) bindFlag(key string, f *pflag.Flag) {
	if _, ok := configKeys()[key]; !ok || f == nil {
		panic(fmt.Sprintf("hopper: bindFlag(%q): no such config key or flag", key))
	}
	a.flags[key] = append(a.flags[key], f)
}

// config returns the configuration, loading it the first time: the config
// file, HOPPER_* variables and bound flags over the defaults, validated.
// The root's PersistentPreRunE has already loaded it for every command not
// marked with withoutConfig, so there a.config() cannot fail.
func (a *app) config() (Config, error) {
	a.loadOnce.Do(func() { a.cfg, a.cfgErr = a.loadConfig() })
	return a.cfg, a.cfgErr
}

func (a *app) loadConfig() (Config, error) {
	path, err := findConfig(a.configFile, a.env)
	if err != nil {
		return Config{}, err
	}
	var cfg Config
	if path == "" {
		cfg, err = parseConfig(nil, "", a.env, a.flags)
	} else {
		f, oerr := os.Open(path)
		if oerr != nil {
			return Config{}, fmt.Errorf("config: %w", oerr)
		}
		defer f.Close()
		cfg, err = parseConfig(f, path, a.env, a.flags)
	}
	if err != nil {
		return Config{}, err
	}
	placeDefaults(&cfg, a.env)
	return cfg, nil
}

// preRun runs before every command: it finishes the command-line checks cobra
// leaves until after the persistent hooks (so they count as usage errors), then
// loads the config and builds the logger from it.
func (a *app) preRun(cmd *cobra.Command, _ []string) error {
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return &usageError{err}
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return &usageError{err}
	}
	a.started = true
	if !needsConfig(cmd) {
		format, level := Default().Log.Format, Default().Log.Level
		if f := cmd.Flags().Lookup("log-format"); f != nil && f.Changed {
			format = f.Value.String()
		}
		if f := cmd.Flags().Lookup("log-level"); f != nil && f.Changed {
			level = f.Value.String()
		}
		a.logger = newLogger(a.stderr, format, level)
		return nil
	}
	cfg, err := a.config()
	if err != nil {
		return err
	}
	a.logger = newLogger(a.stderr, cfg.Log.Format, cfg.Log.Level)
	return nil
}

// chainPreRuns makes a subcommand's own PersistentPreRun(E), if it sets one,
// run after the root's instead of replacing it, as cobra would.
func (a *app) chainPreRuns(c *cobra.Command) {
	for _, sub := range c.Commands() {
		switch own, ownE := sub.PersistentPreRun, sub.PersistentPreRunE; {
		case ownE != nil:
			sub.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
				if err := a.preRun(cmd, args); err != nil {
					return err
				}
				return ownE(cmd, args)
			}
		case own != nil:
			sub.PersistentPreRun = nil
			sub.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
				if err := a.preRun(cmd, args); err != nil {
					return err
				}
				own(cmd, args)
				return nil
			}
		}
		a.chainPreRuns(sub)
	}
}

// withoutConfig marks cmd (and its subcommands) as runnable without loading
// the config, so a broken config file does not stop it. It returns cmd.
func withoutConfig(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[noConfigAnnotation] = "true"
	return cmd
}

func needsConfig(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Annotations[noConfigAnnotation] == "true" {
			return false
		}
		switch name := c.Name(); {
		case name == "help", name == "completion", strings.HasPrefix(name, "__complete"):
			return false // cobra's own commands
		}
	}
	return true
}

// newLogger returns a logger writing format ("text" or "json") to w from level
// up; anything unknown falls back to text and info.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// usageError marks a misuse of the command line; hopper exits 2 for it.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErrorf returns a usage error: hopper prints it with a pointer to
// --help and exits 2.
func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// versionInfo is what `hopper version --json` prints.
type versionInfo struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
}

// buildVersion reads the version from the build: the module version when
// installed with `go install …@version`, else the VCS revision, else "devel".
func buildVersion(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: "devel", Go: runtime.Version()}
	if !ok || bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	switch {
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		v.Version = bi.Main.Version
	case v.Revision != "":
		v.Version = v.Revision[:min(12, len(v.Revision))]
		if v.Modified {
			v.Version += "-dirty"
		}
	}
	return v
}

func newVersionCmd(a *app) *cobra.Command {
	return withoutConfig(&cobra.Command{
		Use:     "version",
		Short:   "Print hopper's version",
		Example: "  hopper version\n  hopper version --json | jq -r .version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := buildVersion(debug.ReadBuildInfo())
			if a.json {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			_, err := fmt.Fprintf(a.stdout, "hopper %s (%s)\n", v.Version, v.Go)
			return err
		},
	})
}

// name is how the user ran this binary, for the commands hopper suggests:
// "./hopper" as typed, "go run ./cmd/hopper" under go run, else its name.
func (a *app) name() string {
	arg0 := os.Args[0]
	switch {
	case strings.Contains(arg0, "go-build"):
		return "go run ./cmd/hopper"
	case !filepath.IsAbs(arg0) && strings.Contains(arg0, "/"):
		return arg0
	}
	return filepath.Base(arg0)
}
