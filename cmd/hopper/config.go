package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/hopper-dev/hopper/cluster"
	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/internal/yamlconf"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/runner"
)

// Config is hopper's configuration: one field per key of the config file
// (DESIGN §8). The tags are the key names users and scripts rely on.
// Load it with parseConfig; build one in code with Default and check it with
// Validate.
type Config struct {
	Spool         string         `yaml:"spool" mapstructure:"spool"`                   // the spool directory
	Ollama        string         `yaml:"ollama" mapstructure:"ollama"`                 // the target's base URL (when targets is empty)
	Targets       []Target       `yaml:"targets" mapstructure:"targets"`               // the Ollama servers, one lane each; empty: ollama
	Parallel      int            `yaml:"parallel" mapstructure:"parallel"`             // requests in flight per target unless it says
	HTTP          string         `yaml:"http" mapstructure:"http"`                     // the front's listen address, or "off"
	Tokens        []string       `yaml:"tokens" mapstructure:"tokens"`                 // bearer tokens for the front
	Origins       []string       `yaml:"origins" mapstructure:"origins"`               // web origins whose pages may call the front (as OLLAMA_ORIGINS)
	Fsync         bool           `yaml:"fsync" mapstructure:"fsync"`                   // fsync acknowledged jobs and records
	KeepAlive     string         `yaml:"keep_alive" mapstructure:"keep_alive"`         // "-1", "3600" (seconds) or a duration like "5m"
	Schedule      string         `yaml:"schedule" mapstructure:"schedule"`             // "drain" or "fifo"
	MaxWait       time.Duration  `yaml:"max_wait" mapstructure:"max_wait"`             // longest wait before the oldest job goes next
	Pinned        []string       `yaml:"pinned" mapstructure:"pinned"`                 // models that never count as resident
	MaxAttempts   int            `yaml:"max_attempts" mapstructure:"max_attempts"`     // attempts before a failing job is failed
	Timeout       time.Duration  `yaml:"timeout" mapstructure:"timeout"`               // longest run of one attempt
	MaxAge        time.Duration  `yaml:"max_age" mapstructure:"max_age"`               // queued longer than this: expired; 0: never
	ShutdownGrace time.Duration  `yaml:"shutdown_grace" mapstructure:"shutdown_grace"` // how long SIGTERM lets the current job finish
	Retention     Retention      `yaml:"retention" mapstructure:"retention"`
	Hooks         Hooks          `yaml:"hooks" mapstructure:"hooks"`
	FunctionsDir  string         `yaml:"functions_dir" mapstructure:"functions_dir"` // one YAML file per function
	Functions     map[string]any `yaml:"functions" mapstructure:"functions"`         // function definitions, keys as written (functions.Section)
	Log           Log            `yaml:"log" mapstructure:"log"`
	DirMode       fs.FileMode    `yaml:"dir_mode" mapstructure:"dir_mode"`         // permissions of spool directories
	FileMode      fs.FileMode    `yaml:"file_mode" mapstructure:"file_mode"`       // permissions of spool files
	Settle        time.Duration  `yaml:"settle" mapstructure:"settle"`             // how long an unparsable file in new/ must be quiet before it is bad input
	MaxJobSize    yamlconf.Size  `yaml:"max_job_size" mapstructure:"max_job_size"` // largest job file accepted
	MaxUpload     yamlconf.Size  `yaml:"max_upload" mapstructure:"max_upload"`     // largest file uploaded to POST /v1/files

	RetryBackoff    time.Duration `yaml:"retry_backoff" mapstructure:"retry_backoff"`         // first deferral after a failed attempt; doubles each attempt
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max" mapstructure:"retry_backoff_max"` // cap on that deferral

	Cluster cluster.Config `yaml:"cluster" mapstructure:"cluster"` // several hosts on NATS JetStream; unset: this one alone
}

// Target is one Ollama server (DESIGN §4).
type Target struct {
	Name     string   `yaml:"name" mapstructure:"name"`         // [a-z0-9-]+
	URL      string   `yaml:"url" mapstructure:"url"`           // as OLLAMA_HOST: "http://10.0.0.5:11434", "gpu1:11434"
	Parallel int      `yaml:"parallel" mapstructure:"parallel"` // 0: the top-level parallel
	Models   []string `yaml:"models" mapstructure:"models"`     // globs of models it may run; empty: any
}

// Retention says how long finished records are kept; 0 keeps them forever.
type Retention struct {
	Done   time.Duration `yaml:"done" mapstructure:"done"`
	Failed time.Duration `yaml:"failed" mapstructure:"failed"`
}

// Hooks configures event delivery (DESIGN §6).
type Hooks struct {
	Dir      string    `yaml:"dir" mapstructure:"dir"`           // executables named after states
	Secret   string    `yaml:"secret" mapstructure:"secret"`     // "whsec_…": signs per-job webhooks
	Allow    []string  `yaml:"allow" mapstructure:"allow"`       // hosts and CIDRs HTTP-submitted webhooks may reach
	Env      []string  `yaml:"env" mapstructure:"env"`           // environment variables hook scripts get besides the clean set
	Webhooks []Webhook `yaml:"webhooks" mapstructure:"webhooks"` // receivers of every job's events
}

// Webhook is one configured receiver. No Events means every event.
type Webhook struct {
	URL    string   `yaml:"url" mapstructure:"url"`
	Secret string   `yaml:"secret" mapstructure:"secret"`
	Events []string `yaml:"events" mapstructure:"events"`
}

// Log configures the logger on stderr.
type Log struct {
	Format string `yaml:"format" mapstructure:"format"` // "text" or "json"
	Level  string `yaml:"level" mapstructure:"level"`   // "debug", "info", "warn" or "error"
}

// defaultOllama is the target when neither the config nor $OLLAMA_HOST names one.
const defaultOllama = "http://127.0.0.1:11434"

// Default returns the configuration hopper runs with when nothing is set.
// configs/hopper.yaml documents the same values; a test keeps them equal.
// Spool and Hooks.Dir stay empty: placeDefaults puts them in the user's
// directories.
func Default() Config {
	return Config{
		Ollama:        defaultOllama,
		Targets:       []Target{},
		Parallel:      1,
		HTTP:          "127.0.0.1:11435",
		Tokens:        []string{},
		Origins:       []string{},
		Fsync:         true,
		KeepAlive:     "-1",
		Schedule:      "drain",
		MaxWait:       10 * time.Minute,
		Pinned:        []string{},
		MaxAttempts:   3,
		Timeout:       30 * time.Minute,
		ShutdownGrace: 30 * time.Second,
		Hooks: Hooks{
			Allow:    []string{},
			Env:      []string{},
			Webhooks: []Webhook{},
		},
		FunctionsDir: "./configs/functions",
		Functions:    map[string]any{},
		Log:          Log{Format: "text", Level: "info"},
		DirMode:      0o750,
		FileMode:     0o640,
		Settle:       2 * time.Second,
		MaxJobSize:   32 << 20,
		MaxUpload:    512 << 20,

		RetryBackoff:    5 * time.Second,
		RetryBackoffMax: 5 * time.Minute,
		Cluster:         cluster.Config{Routes: []string{}},
	}
}

// ConfigError reports a bad setting. Key is spelled as in the config file
// ("max_wait", "hooks.webhooks[0].url"); Source says where the value came
// from when that is known: "hopper.yaml:12", "$HOPPER_MAX_WAIT" or "--spool".
type ConfigError struct {
	Source string
	Key    string
	Err    error
}

func (e *ConfigError) Error() string {
	where := strings.TrimSpace("config " + e.Source)
	if e.Key == "" || errors.Is(e.Err, yamlconf.ErrUnknownKey) { // that one names its key
		return where + ": " + e.Err.Error()
	}
	return where + ": " + e.Key + ": " + e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Validate checks every setting and returns a *ConfigError naming the first
// bad one. The packages check their sections as the commands build them;
// Validate checks the rest: the top-level parallel, http's "off", and log.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	if c.Parallel < 1 {
		return bad("parallel", "must be at least 1, got %d", c.Parallel)
	}
	if c.HTTP != "off" {
		_, port, err := net.SplitHostPort(c.HTTP)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			return bad("http", `must be host:port like "127.0.0.1:11435" or "off", got %q`, c.HTTP)
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	front := frontConfig(c, nil)
	if c.HTTP == "off" {
		front.Addr = "" // its settings are checked all the same
	}
	if len(c.Targets) == 0 { // the front calls the ollama shorthand's key ollama
		front.Targets, front.Target = nil, c.Ollama
	}
	front.Default()
	for _, err := range []error{
		spoolOptions(c).Validate(),
		runnerConfig(c, nil, c.TargetList(), nil).Validate(),
		hooksConfig(c, nil, nil).ValidateSettings(),
		front.ValidateSettings(),
		c.Cluster.Validate(),
	} {
		if err != nil {
			return keyed(err)
		}
	}
	return nil
}

// keyed turns a package's error about one of its settings (the ConfigError
// of spool, runner, hooks and httpfront names its key) into a *ConfigError.
func keyed(err error) *ConfigError {
	var s interface {
		Setting() (key string, err error)
	}
	if !errors.As(err, &s) {
		return &ConfigError{Err: err}
	}
	key, err := s.Setting()
	return &ConfigError{Key: key, Err: err}
}

// placeDefaults fills the settings whose defaults are places in the user's
// directories (DESIGN §8), never the current directory: the spool under
// $XDG_STATE_HOME (~/.local/state/hopper/spool), hooks under
// $XDG_CONFIG_HOME (~/.config/hopper/hooks).
//
// Without $HOME and the XDG variables they stay empty: no hook scripts, and
// a command that needs the spool says to set it (errNoSpool).
func placeDefaults(cfg *Config, env []string) {
	if state := xdgDir(env, "XDG_STATE_HOME", ".local/state"); cfg.Spool == "" && state != "" {
		cfg.Spool = filepath.Join(state, "hopper", "spool")
	}
	if conf := xdgDir(env, "XDG_CONFIG_HOME", ".config"); cfg.Hooks.Dir == "" && conf != "" {
		cfg.Hooks.Dir = filepath.Join(conf, "hopper", "hooks")
	}
}

// errNoSpool is what a command that needs the spool says when none is
// configured and there is no $HOME to put the default in.
var errNoSpool = &ConfigError{Key: "spool", Err: errors.New("has no default without $HOME or $XDG_STATE_HOME: set it (--spool DIR or $HOPPER_SPOOL)")}

// xdgDir is $NAME, else $HOME/fallback, else "".
func xdgDir(env []string, name, fallback string) string {
	if d := getenv(env, name); d != "" && filepath.IsAbs(d) {
		return d
	}
	if home := getenv(env, "HOME"); home != "" {
		return filepath.Join(home, fallback)
	}
	return ""
}

// defaultConfigPath is where init writes hopper.yaml when no --config or
// $HOPPER_CONFIG names one: $XDG_CONFIG_HOME/hopper/hopper.yaml.
func defaultConfigPath(env []string) string {
	if conf := xdgDir(env, "XDG_CONFIG_HOME", ".config"); conf != "" {
		return filepath.Join(conf, "hopper", "hopper.yaml")
	}
	return ""
}

// TargetList is the targets hopper drives as the runner takes them (without
// their clients): the configured ones with their slots filled in from the
// top-level parallel, or the one of the ollama shorthand, named "default".
func (c Config) TargetList() []runner.TargetConfig {
	if len(c.Targets) == 0 {
		return []runner.TargetConfig{{Name: "default", URL: c.Ollama, Parallel: c.Parallel}}
	}
	out := make([]runner.TargetConfig, len(c.Targets))
	for i, t := range c.Targets {
		out[i] = runner.TargetConfig{Name: t.Name, URL: t.URL, Parallel: cmp.Or(t.Parallel, c.Parallel), Models: t.Models}
	}
	return out
}

// ollamaURL turns an address in $OLLAMA_HOST's format into the URL the
// ollama client dials: "host" and "host:port" mean http with port 11434;
// "http://host" and "https://host" default to ports 80 and 443.
func ollamaURL(s string) (string, error) {
	c, err := ollama.New(strings.Trim(strings.TrimSpace(s), `"'`), nil)
	if err != nil {
		return "", fmt.Errorf("must be a URL like %q or a host[:port], got %q", defaultOllama, s)
	}
	return c.BaseURL(), nil
}

// envName is the environment variable that sets key: "hooks.secret" is
// HOPPER_HOOKS_SECRET.
func envName(key string) string {
	return "HOPPER_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// configKeys lists every key of Config with its type (see yamlconf.Keys).
func configKeys() map[string]reflect.Type {
	return yamlconf.Keys(reflect.TypeFor[Config](), "mapstructure")
}

// envKeys lists the keys the environment can set: those holding a value or a
// list of values (comma-separated). Webhooks and functions are file-only.
func envKeys() []string {
	var keys []string
	for key, t := range configKeys() {
		if strings.Contains(key, "[]") || t.Kind() == reflect.Struct || t.Kind() == reflect.Map ||
			(t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct) {
			continue
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// getenv returns the last value of name in env, as the process would see it.
func getenv(env []string, name string) string {
	for _, kv := range slices.Backward(env) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// configSearchPath is where hopper looks for hopper.yaml when neither --config
// nor $HOPPER_CONFIG names a file; the first one that exists is used.
func configSearchPath(env []string) []string {
	paths := []string{"hopper.yaml", filepath.Join("configs", "hopper.yaml")}
	if p := defaultConfigPath(env); p != "" {
		paths = append(paths, p)
	}
	return append(paths, "/etc/hopper/hopper.yaml")
}

// findConfig returns the config file to read: explicit (from --config), else
// $HOPPER_CONFIG, else the first file on configSearchPath, else "" (no file;
// that is fine). Relative paths are made absolute so errors name them clearly.
func findConfig(explicit string, env []string) (string, error) {
	if explicit == "" {
		explicit = getenv(env, "HOPPER_CONFIG")
	}
	if explicit != "" {
		return filepath.Abs(explicit)
	}
	for _, p := range configSearchPath(env) {
		if _, err := os.Stat(p); err == nil {
			return filepath.Abs(p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("find config: %w", err)
		}
	}
	return "", nil
}

// parseConfig builds the configuration from its layers, each overriding the
// one before: Default(), the YAML file read from r (nil: no file; name is how
// errors refer to it), the HOPPER_* variables of env, and the flags given on
// the command line (flags maps a config key to the flags that set it; flags
// not given are ignored). Empty environment variables count as unset. Ollama
// falls back to $OLLAMA_HOST, then http://127.0.0.1:11434, and is normalised
// to a URL. The result is validated; every error is a *ConfigError.
func parseConfig(r io.Reader, name string, env []string, flags map[string][]*pflag.Flag) (Config, error) {
	cfg := Default()
	cfg.Ollama = "" // so the fallback can tell whether a layer set it
	v := viper.New()
	var file *yamlconf.File    // nil: none
	set := map[string]string{} // key → "$HOPPER_…" or "--flag", where the environment or a flag set it
	fail := func(err error) (Config, error) {
		var fe *yamlconf.Error
		ce, ok := err.(*ConfigError)
		switch {
		case ok:
		case errors.As(err, &fe):
			ce = &ConfigError{Source: fe.Where(), Key: fe.Key, Err: fe.Err}
		default:
			ce = &ConfigError{Err: err}
		}
		if where, ok := set[strings.Split(ce.Key, "[")[0]]; ok {
			ce.Source = where
		} else if ce.Source == "" {
			ce.Source = file.Where(ce.Key)
		}
		return Config{}, ce
	}

	if r != nil {
		data, err := io.ReadAll(r)
		if err != nil {
			return fail(&ConfigError{Source: name, Err: err})
		}
		var values map[string]any
		if file, err = yamlconf.Parse(name, data); err == nil {
			values, err = file.Settings(reflect.TypeFor[Config](), "mapstructure")
		}
		if err == nil {
			err = v.MergeConfigMap(values)
		}
		if err == nil { // as written (viper would lower-case the names), with their lines
			cfg.Functions, err = functions.Section(file, "functions")
		}
		if err != nil {
			return fail(err)
		}
	}
	for _, key := range envKeys() {
		if val := getenv(env, envName(key)); val != "" {
			v.Set(key, val)
			set[key] = "$" + envName(key)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(flags)) {
		for _, f := range flags[key] {
			if !f.Changed {
				continue
			}
			var val any = f.Value.String()
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				val = sv.GetSlice()
			}
			v.Set(key, val)
			set[key] = "--" + f.Name
		}
	}
	if err := yamlconf.Fill(&cfg, "mapstructure", v.AllSettings()); err != nil {
		return fail(err)
	}

	if host := getenv(env, "OLLAMA_HOST"); cfg.Ollama == "" && host != "" {
		cfg.Ollama, set["ollama"] = host, "$OLLAMA_HOST"
	}
	cfg.Ollama = cmp.Or(cfg.Ollama, defaultOllama)
	for i := -1; i < len(cfg.Targets); i++ {
		key, u := "ollama", &cfg.Ollama
		if i >= 0 {
			key, u = fmt.Sprintf("targets[%d].url", i), &cfg.Targets[i].URL
		}
		norm, err := ollamaURL(*u)
		if strings.TrimSpace(*u) == "" {
			err = fmt.Errorf("must name the target, like %q", defaultOllama)
		}
		if err != nil {
			return fail(&ConfigError{Key: key, Err: err})
		}
		*u = norm
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	return cfg, nil
}
