package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/hopper-dev/hopper/httpfront"
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
	Functions     map[string]any `yaml:"functions" mapstructure:"functions"`         // function definitions, keys as written
	Log           Log            `yaml:"log" mapstructure:"log"`
	DirMode       fs.FileMode    `yaml:"dir_mode" mapstructure:"dir_mode"`         // permissions of spool directories
	FileMode      fs.FileMode    `yaml:"file_mode" mapstructure:"file_mode"`       // permissions of spool files
	Settle        time.Duration  `yaml:"settle" mapstructure:"settle"`             // how long an unparsable file in new/ must be quiet before it is bad input
	MaxJobSize    ByteSize       `yaml:"max_job_size" mapstructure:"max_job_size"` // largest job file accepted
	MaxUpload     ByteSize       `yaml:"max_upload" mapstructure:"max_upload"`     // largest file uploaded to POST /v1/files

	RetryBackoff    time.Duration `yaml:"retry_backoff" mapstructure:"retry_backoff"`         // first deferral after a failed attempt; doubles each attempt
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max" mapstructure:"retry_backoff_max"` // cap on that deferral
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

// ByteSize is a number of bytes; the config accepts 33554432 or "32MiB".
type ByteSize int64

// String formats s as the config would: "32MiB", or plain bytes.
func (s ByteSize) String() string {
	for _, u := range []struct {
		n    ByteSize
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return fmt.Sprintf("%d%s", s/u.n, u.name)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// defaultOllama is the target when neither the config nor $OLLAMA_HOST names one.
const defaultOllama = "http://127.0.0.1:11434"

// Default returns the configuration hopper runs with when nothing is set.
// configs/hopper.yaml documents the same values; a test keeps them equal.
func Default() Config {
	return Config{
		Spool:         "", // $XDG_STATE_HOME/hopper/spool: see placeDefaults
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
		MaxAge:        0,
		ShutdownGrace: 30 * time.Second,
		Retention:     Retention{},
		Hooks: Hooks{
			Dir:      "", // $XDG_CONFIG_HOME/hopper/hooks: see placeDefaults
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
	var b strings.Builder
	b.WriteString("config")
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	b.WriteString(": ")
	var u *unknownKeyError
	switch {
	case errors.As(e.Err, &u):
		fmt.Fprintf(&b, "unknown key %q", e.Key)
		if u.suggestion != "" {
			fmt.Fprintf(&b, " (did you mean %q?)", u.suggestion)
		}
		return b.String()
	case e.Key != "":
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// unknownKeyError is the Err of a ConfigError for a key Config does not have.
type unknownKeyError struct{ suggestion string }

func (e *unknownKeyError) Error() string {
	if e.suggestion == "" {
		return "unknown key"
	}
	return fmt.Sprintf("unknown key (did you mean %q?)", e.suggestion)
}

// eventTypes are the events a configured webhook may ask for (DESIGN §6, §10).
var eventTypes = []string{
	"job.queued", "job.loading", "job.working", "job.deferred", "job.done", "job.failed",
	"batch.done",
}

// Validate checks every setting and returns a *ConfigError naming the first
// bad one. It does not resolve anything: Ollama must already be a URL.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Key: key, Err: fmt.Errorf(format, args...)}
	}
	if u, err := url.Parse(c.Ollama); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("ollama", "must be a URL like %q, got %q", defaultOllama, c.Ollama)
	}
	if c.Parallel < 1 {
		return bad("parallel", "must be at least 1, got %d", c.Parallel)
	}
	names := map[string]bool{}
	for i, t := range c.Targets {
		key := fmt.Sprintf("targets[%d]", i)
		switch {
		case !validTargetName(t.Name):
			return bad(key+".name", "must be lowercase letters, digits and '-' like \"gpu1\", got %q", t.Name)
		case names[t.Name]:
			return bad(key+".name", "%q names two targets", t.Name)
		case t.Parallel < 0:
			return bad(key+".parallel", "must be at least 1 (or 0 for the top-level parallel), got %d", t.Parallel)
		}
		names[t.Name] = true
		if u, err := url.Parse(t.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(key+".url", "must be a URL like %q, got %q", defaultOllama, t.URL)
		}
		for j, m := range t.Models {
			if _, err := path.Match(m, ""); err != nil || strings.TrimSpace(m) == "" {
				return bad(fmt.Sprintf("%s.models[%d]", key, j), "must be a model name or a pattern like \"llama3*\", got %q", m)
			}
		}
	}
	if c.HTTP != "off" {
		host, port, err := net.SplitHostPort(c.HTTP)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
			return bad("http", `must be host:port like "127.0.0.1:11435" or "off", got %q`, c.HTTP)
		}
		if !isLoopback(host) && len(c.Tokens) == 0 {
			return bad("http", "%q is not a loopback address: set tokens to serve it, or listen on 127.0.0.1", c.HTTP)
		}
	}
	for i, t := range c.Tokens {
		if strings.TrimSpace(t) == "" {
			return bad(fmt.Sprintf("tokens[%d]", i), "must not be empty")
		}
	}
	for i, o := range c.Origins {
		if err := httpfront.CheckOrigin(o); err != nil {
			return bad(fmt.Sprintf("origins[%d]", i), "%v", err)
		}
	}
	if !validKeepAlive(c.KeepAlive) {
		return bad("keep_alive", `must be a number of seconds like "-1" or a duration like "5m", got %q`, c.KeepAlive)
	}
	if c.Schedule != "drain" && c.Schedule != "fifo" {
		return bad("schedule", "must be drain or fifo, got %q", c.Schedule)
	}
	for i, m := range c.Pinned {
		if strings.TrimSpace(m) == "" {
			return bad(fmt.Sprintf("pinned[%d]", i), "must name a model")
		}
	}
	if c.MaxAttempts < 1 {
		return bad("max_attempts", "must be at least 1, got %d", c.MaxAttempts)
	}
	for _, d := range []struct {
		key      string
		v        time.Duration
		positive bool
	}{
		{"max_wait", c.MaxWait, false},
		{"timeout", c.Timeout, true},
		{"max_age", c.MaxAge, false},
		{"shutdown_grace", c.ShutdownGrace, false},
		{"retention.done", c.Retention.Done, false},
		{"retention.failed", c.Retention.Failed, false},
		{"settle", c.Settle, true},
		{"retry_backoff", c.RetryBackoff, true},
		{"retry_backoff_max", c.RetryBackoffMax, true},
	} {
		if d.v < 0 || (d.positive && d.v == 0) {
			want := "must not be negative"
			if d.positive {
				want = "must be positive"
			}
			return bad(d.key, "%s, got %s", want, d.v)
		}
	}
	if c.RetryBackoffMax < c.RetryBackoff {
		return bad("retry_backoff_max", "must not be less than retry_backoff (%s), got %s", c.RetryBackoff, c.RetryBackoffMax)
	}
	if err := validSecret(c.Hooks.Secret); err != nil {
		return &ConfigError{Key: "hooks.secret", Err: err}
	}
	for i, a := range c.Hooks.Allow {
		if !validAllow(a) {
			return bad(fmt.Sprintf("hooks.allow[%d]", i), "must be a host name, an IP address or a CIDR like \"10.0.0.0/8\", got %q", a)
		}
	}
	for i, w := range c.Hooks.Webhooks {
		key := fmt.Sprintf("hooks.webhooks[%d]", i)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(key+".url", "must be an http or https URL, got %q", w.URL)
		}
		if err := validSecret(w.Secret); err != nil {
			return &ConfigError{Key: key + ".secret", Err: err}
		}
		for j, e := range w.Events {
			if !slices.Contains(eventTypes, e) {
				return bad(fmt.Sprintf("%s.events[%d]", key, j), "must be one of %s, got %q", strings.Join(eventTypes, ", "), e)
			}
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	for _, m := range []struct {
		key        string
		v, needed  fs.FileMode
		neededText string
	}{
		{"dir_mode", c.DirMode, 0o700, "read, write and search (0700)"},
		{"file_mode", c.FileMode, 0o600, "read and write (0600)"},
	} {
		if m.v&^fs.ModePerm != 0 {
			return bad(m.key, "must be permission bits like \"0750\", got %#o", uint32(m.v))
		}
		if m.v&m.needed != m.needed {
			return bad(m.key, "must give the owner %s, got %04o", m.neededText, uint32(m.v))
		}
	}
	if c.MaxJobSize <= 0 {
		return bad("max_job_size", "must be positive, got %d", c.MaxJobSize)
	}
	if c.MaxUpload <= 0 {
		return bad("max_upload", "must be positive, got %d", c.MaxUpload)
	}
	return nil
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

// validTargetName accepts a target name as records and metrics labels use
// it: lowercase letters, digits and '-'.
func validTargetName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// TargetList is the targets hopper drives: the configured ones with their
// slot counts filled in, or the one target of the ollama shorthand, named
// "default".
func (c Config) TargetList() []Target {
	if len(c.Targets) == 0 {
		return []Target{{Name: "default", URL: c.Ollama, Parallel: c.Parallel}}
	}
	out := slices.Clone(c.Targets)
	for i := range out {
		if out[i].Parallel == 0 {
			out[i].Parallel = c.Parallel
		}
	}
	return out
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validKeepAlive accepts what Ollama accepts: a number of seconds (negative:
// forever) or a Go duration. Ollama does not know the day suffix.
func validKeepAlive(s string) bool {
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return true
	}
	_, err := time.ParseDuration(s)
	return err == nil
}

// validSecret accepts an empty secret (unsigned) or a Standard Webhooks
// secret: "whsec_" and base64.
func validSecret(s string) error {
	if s == "" {
		return nil
	}
	rest, ok := strings.CutPrefix(s, "whsec_")
	if !ok || rest == "" || !isBase64(rest) {
		return errors.New(`must be a Standard Webhooks secret like "whsec_" followed by base64`)
	}
	return nil
}

func isBase64(s string) bool {
	for _, r := range strings.TrimRight(s, "=") {
		if !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '+' || r == '/') {
			return false
		}
	}
	return true
}

func validAllow(s string) bool {
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.' || r == '*') {
			return false
		}
	}
	return true
}

// parseDuration parses a Go duration ("90s", "1h30m") or one with a leading
// day count ("7d", "1d12h", "1.5d"; a day is 24 hours). Its error is meant to
// follow a name: `max_wait: must be a duration like "10m", got "abc"`.
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("must be a duration like \"10m\", got %q", s)
	t := strings.TrimSpace(s)
	days, rest, ok := strings.Cut(t, "d")
	if !ok {
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, bad
		}
		return d, nil
	}
	neg := strings.HasPrefix(days, "-")
	days = strings.TrimPrefix(strings.TrimPrefix(days, "-"), "+")
	if days == "" || strings.Trim(days, "0123456789.") != "" {
		return 0, bad
	}
	n, err := strconv.ParseFloat(days, 64)
	if err != nil || n*24*float64(time.Hour) >= math.MaxInt64 {
		return 0, bad
	}
	d := time.Duration(n * 24 * float64(time.Hour))
	if rest != "" {
		if r := rest[0]; r < '0' || r > '9' {
			return 0, bad // "1d-3h", "1dd"
		}
		r, err := time.ParseDuration(rest)
		if err != nil || r > math.MaxInt64-d {
			return 0, bad
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}

// parseSize parses a byte count: "33554432", "32MiB", "512KB", "1.5GiB"
// (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024; case is ignored).
func parseSize(s string) (ByteSize, error) {
	bad := fmt.Errorf("must be a size like \"32MiB\", got %q", s)
	t := strings.TrimSpace(s)
	num, unit := t, ""
	if i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	var mult float64
	switch strings.ToLower(unit) {
	case "", "b":
		mult = 1
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "kib":
		mult = 1 << 10
	case "mib":
		mult = 1 << 20
	case "gib":
		mult = 1 << 30
	default:
		return 0, bad
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || n*mult >= 1<<62 || (mult == 1 && n != math.Trunc(n)) {
		return 0, bad
	}
	return ByteSize(n * mult), nil
}

// parseMode parses permission bits written in octal, as chmod takes them:
// "0750", "750" or "0o750".
func parseMode(s string) (fs.FileMode, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0o"), "0O")
	n, err := strconv.ParseUint(t, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("must be an octal mode like \"0750\", got %q", s)
	}
	return fs.FileMode(n), nil
}

// ollamaURL turns an address in $OLLAMA_HOST's format into a URL the way
// Ollama's own client does: "host" and "host:port" mean http with default port
// 11434; "http://host" and "https://host" default to ports 80 and 443.
func ollamaURL(s string) (string, error) {
	bad := fmt.Errorf("must be a URL like %q or a host[:port], got %q", defaultOllama, s)
	t := strings.Trim(strings.TrimSpace(s), `"'`)
	scheme, hostport, ok := strings.Cut(t, "://")
	port := "11434"
	switch {
	case !ok:
		scheme, hostport = "http", t
	case scheme == "http":
		port = "80"
	case scheme == "https":
		port = "443"
	default:
		return "", bad
	}
	hostport, path, _ := strings.Cut(hostport, "/")
	host, p, err := net.SplitHostPort(hostport)
	if err == nil {
		port = p
	} else {
		host = strings.Trim(hostport, "[]")
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", bad
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}
	if path = strings.TrimSuffix(path, "/"); path != "" {
		u.Path = "/" + path
	}
	if back, err := url.Parse(u.String()); err != nil || back.Hostname() != host {
		return "", bad
	}
	return u.String(), nil
}

// envName is the environment variable that sets key: "hooks.secret" is
// HOPPER_HOOKS_SECRET.
func envName(key string) string {
	return "HOPPER_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// configKeys lists every key of Config with its type, nested keys joined by
// dots and the fields of list elements under "[]": "retention.done",
// "hooks.webhooks", "hooks.webhooks[].url".
func configKeys() map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			key := prefix + f.Tag.Get("mapstructure")
			keys[key] = f.Type
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key+".")
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				walk(f.Type.Elem(), key+"[].")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
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
	xdg := getenv(env, "XDG_CONFIG_HOME")
	if xdg == "" {
		if home := getenv(env, "HOME"); home != "" {
			xdg = filepath.Join(home, ".config")
		}
	}
	paths := []string{"hopper.yaml", filepath.Join("configs", "hopper.yaml")}
	if xdg != "" {
		paths = append(paths, filepath.Join(xdg, "hopper", "hopper.yaml"))
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
		_, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("find config: %w", err)
		}
		return filepath.Abs(p)
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
	src := sources{file: name, lines: map[string]int{}, set: map[string]string{}}

	if r != nil {
		data, err := io.ReadAll(r)
		if err != nil {
			return Config{}, &ConfigError{Source: name, Err: err}
		}
		values, functions, err := readConfigFile(data, name, src.lines)
		if err != nil {
			return Config{}, err
		}
		if err := v.MergeConfigMap(values); err != nil {
			return Config{}, &ConfigError{Source: name, Err: err}
		}
		if functions != nil {
			cfg.Functions = functions
		}
	}
	for _, key := range envKeys() {
		if val := getenv(env, envName(key)); val != "" {
			v.Set(key, val)
			src.set[key] = "$" + envName(key)
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
			src.set[key] = "--" + f.Name
		}
	}

	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: decodeHook,
		Result:     &cfg,
		TagName:    "mapstructure",
	})
	if err != nil {
		return Config{}, err
	}
	if err := dec.Decode(v.AllSettings()); err != nil {
		ce := decodeError(err)
		ce.Source = src.of(ce.Key)
		return Config{}, ce
	}

	if cfg.Ollama == "" {
		cfg.Ollama = defaultOllama
		if host := getenv(env, "OLLAMA_HOST"); host != "" {
			cfg.Ollama = host
			src.set["ollama"] = "$OLLAMA_HOST"
		}
	}
	u, err := ollamaURL(cfg.Ollama)
	if err != nil {
		return Config{}, &ConfigError{Source: src.of("ollama"), Key: "ollama", Err: err}
	}
	cfg.Ollama = u
	for i := range cfg.Targets {
		key := fmt.Sprintf("targets[%d].url", i)
		if strings.TrimSpace(cfg.Targets[i].URL) == "" {
			return Config{}, &ConfigError{Source: src.of(key), Key: key, Err: fmt.Errorf("must name the target, like %q", defaultOllama)}
		}
		u, err := ollamaURL(cfg.Targets[i].URL)
		if err != nil {
			return Config{}, &ConfigError{Source: src.of(key), Key: key, Err: err}
		}
		cfg.Targets[i].URL = u
	}

	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && ce.Source == "" {
			ce.Source = src.of(ce.Key)
		}
		return Config{}, err
	}
	return cfg, nil
}

// sources remembers where each setting came from, for error messages.
type sources struct {
	file  string
	lines map[string]int    // key → line in the file
	set   map[string]string // key → "$HOPPER_…" or "--flag", for keys the environment or a flag set
}

func (s sources) of(key string) string {
	base, _, _ := strings.Cut(key, "[")
	if where, ok := s.set[base]; ok {
		return where
	}
	for _, k := range []string{key, base} {
		if line, ok := s.lines[k]; ok {
			return fmt.Sprintf("%s:%d", s.file, line)
		}
	}
	return ""
}

// decodeHook converts the text of a setting (the config file's scalars, the
// environment and flags all arrive as text) to the field's type.
func decodeHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	s, ok := data.(string)
	if !ok {
		return data, nil
	}
	switch to {
	case reflect.TypeFor[time.Duration]():
		return parseDuration(s)
	case reflect.TypeFor[fs.FileMode]():
		return parseMode(s)
	case reflect.TypeFor[ByteSize]():
		return parseSize(s)
	}
	switch to.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("must be true or false, got %q", s)
		}
		return b, nil
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("must be an integer, got %q", s)
		}
		return n, nil
	case reflect.Slice:
		if to.Elem().Kind() == reflect.String {
			list := []string{}
			for item := range strings.SplitSeq(s, ",") {
				if item = strings.TrimSpace(item); item != "" {
					list = append(list, item)
				}
			}
			return list, nil
		}
	}
	return data, nil
}

// decodeError turns the first of mapstructure's errors into a ConfigError
// naming the key.
func decodeError(err error) *ConfigError {
	var de *mapstructure.DecodeError
	if !errors.As(err, &de) {
		return &ConfigError{Err: err}
	}
	for {
		var inner *mapstructure.DecodeError
		if !errors.As(de.Unwrap(), &inner) {
			break
		}
		de = inner
	}
	ce := &ConfigError{Key: de.Name(), Err: de.Unwrap()}
	var ut *mapstructure.UnconvertibleTypeError
	var pe *mapstructure.ParseError
	switch {
	case errors.As(ce.Err, &ut):
		ce.Err = fmt.Errorf("must be %s, got %s", describeType(ut.Expected.Type()), describeValue(ut.Value))
	case errors.As(ce.Err, &pe):
		ce.Err = fmt.Errorf("must be %s, got %s", describeType(pe.Expected.Type()), describeValue(pe.Value))
	}
	return ce
}

func describeType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return `a duration like "10m"`
	case reflect.TypeFor[fs.FileMode]():
		return `an octal mode like "0750"`
	case reflect.TypeFor[ByteSize]():
		return `a size like "32MiB"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Uint32:
		return "an integer"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return "a string"
}

func describeValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprint(v)
}

// readConfigFile parses a config file. It checks the keys against Config
// (unknown keys are errors, with a suggestion) and the shape of each value
// (mappings, lists, scalars), records the line of every key in lines, and
// returns the settings with every scalar as its text, ready for viper, plus the
// functions section decoded as written: viper would lower-case its keys.
func readConfigFile(data []byte, name string, lines map[string]int) (values, functions map[string]any, err error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, &ConfigError{Source: name, Err: err}
	}
	values = map[string]any{}
	if len(doc.Content) == 0 {
		return values, nil, nil // empty or only comments
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return values, nil, nil
	}
	p := &fileReader{name: name, lines: lines, merging: map[*yaml.Node]bool{}}
	if root.Kind != yaml.MappingNode {
		return nil, nil, &ConfigError{Source: p.at(root), Err: errors.New("must be a mapping of settings")}
	}
	if err := p.fields(root, reflect.TypeFor[Config](), "", values); err != nil {
		return nil, nil, err
	}
	return values, p.functions, nil
}

type fileReader struct {
	name      string
	lines     map[string]int
	functions map[string]any
	merging   map[*yaml.Node]bool // mappings being read, to refuse "<<" loops
}

func (p *fileReader) at(n *yaml.Node) string { return fmt.Sprintf("%s:%d", p.name, n.Line) }

// fields reads mapping n into m, checking its keys against struct type t.
// YAML merge keys ("<<: *base") are read first, so the mapping's own keys win.
func (p *fileReader) fields(n *yaml.Node, t reflect.Type, prefix string, m map[string]any) error {
	if p.merging[n] {
		return &ConfigError{Source: p.at(n), Key: strings.TrimSuffix(prefix, "."), Err: errors.New("<< merges a mapping into itself")}
	}
	p.merging[n] = true
	defer delete(p.merging, n)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag != "!!merge" {
			continue
		}
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		targets := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			targets = v.Content
		}
		for _, tn := range targets {
			if tn.Kind == yaml.AliasNode {
				tn = tn.Alias
			}
			if tn.Kind != yaml.MappingNode {
				return &ConfigError{Source: p.at(tn), Key: strings.TrimSuffix(prefix, "."), Err: errors.New("<< must merge a mapping")}
			}
			if err := p.fields(tn, t, prefix, m); err != nil {
				return err
			}
		}
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			continue
		}
		key := prefix + k.Value
		f, ok := fieldByTag(t, k.Value)
		if !ok {
			return &ConfigError{Source: p.at(k), Key: key, Err: &unknownKeyError{suggestion: suggestKey(t, prefix, k.Value)}}
		}
		if first, dup := seen[k.Value]; dup {
			return &ConfigError{Source: p.at(k), Key: key, Err: fmt.Errorf("set twice (first on line %d)", first.Line)}
		}
		seen[k.Value] = k
		if t == reflect.TypeFor[Config]() && k.Value == "functions" {
			if err := p.readFunctions(v); err != nil {
				return err
			}
			continue
		}
		val, err := p.value(v, f.Type, key)
		if err != nil {
			return err
		}
		if val != nil {
			m[k.Value] = val
		} else {
			delete(m, k.Value)
		}
	}
	return nil
}

// value reads node n, the value of key, whose field has type t.
func (p *fileReader) value(n *yaml.Node, t reflect.Type, key string) (any, error) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	p.lines[key] = n.Line
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil, nil // an empty value leaves the default
	}
	mismatch := func(want string) error {
		got := strconv.Quote(n.Value)
		switch n.Kind {
		case yaml.MappingNode:
			got = "a mapping"
		case yaml.SequenceNode:
			got = "a list"
		}
		return &ConfigError{Source: p.at(n), Key: key, Err: fmt.Errorf("must be %s, got %s", want, got)}
	}
	switch {
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil, mismatch("a mapping")
		}
		m := map[string]any{}
		return m, p.fields(n, t, key+".", m)
	case t.Kind() == reflect.Slice:
		if n.Kind == yaml.ScalarNode && t.Elem().Kind() != reflect.Struct {
			return n.Value, nil // "a, b": a list written as the environment writes it
		}
		if n.Kind != yaml.SequenceNode {
			return nil, mismatch("a list")
		}
		list := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			v, err := p.value(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i))
			if err != nil {
				return nil, err
			}
			if v == nil {
				return nil, &ConfigError{Source: p.at(item), Key: fmt.Sprintf("%s[%d]", key, i), Err: errors.New("must not be empty")}
			}
			list = append(list, v)
		}
		return list, nil
	default:
		if n.Kind != yaml.ScalarNode {
			return nil, mismatch(describeType(t))
		}
		return n.Value, nil
	}
}

func (p *fileReader) readFunctions(n *yaml.Node) error {
	p.lines["functions"] = n.Line
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	fns := map[string]any{}
	if err := n.Decode(&fns); err != nil {
		return &ConfigError{Source: p.at(n), Key: "functions", Err: errors.New("must be a mapping of function names to definitions")}
	}
	p.functions = fns
	return nil
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if f.Tag.Get("mapstructure") == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggestKey finds the key the user probably meant by name (under prefix, in
// struct t): a sibling a typo or two away, else the same name elsewhere
// ("format" → "log.format").
func suggestKey(t reflect.Type, prefix, name string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	best, bestDist := "", len(name)/3+1
	for f := range t.Fields() {
		tag := f.Tag.Get("mapstructure")
		if d := editDistance(norm(name), tag); d < bestDist {
			best, bestDist = prefix+tag, d
		}
	}
	if best != "" {
		return best
	}
	var found []string
	for key := range configKeys() {
		if !strings.Contains(key, "[]") && (key == norm(name) || strings.HasSuffix(key, "."+norm(name))) {
			found = append(found, key)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return ""
}

// editDistance counts the insertions, deletions, substitutions and swaps of
// adjacent characters that turn a into b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
