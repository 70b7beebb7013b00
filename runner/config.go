package runner

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/internal/yamlconf"
	"github.com/hopper-dev/hopper/ollama"
)

// ConfigError reports a bad setting; Field is its key in hopper.yaml
// ("max_attempts", "targets[1].name").
type ConfigError = yamlconf.KeyError[section]

// section begins the messages of ConfigError: "runner: ".
type section struct{}

func (section) Section() string { return "runner" }

// validTargetName is the form of a target's name, as records and metrics
// labels carry it.
var validTargetName = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)

// Validate checks the settings of c as a configuration gives them and
// returns a *ConfigError naming the first bad one. Unlike New, which gives
// a zero field its default, it takes every field as meant: max_attempts 0,
// timeout 0 or an empty schedule are mistakes in a configuration. What is
// not a setting (the spool, the targets' clients, the logger, the clock) is
// New's to check.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	if err := checkTargets(c.Targets, true); err != nil {
		return err
	}
	if strings.TrimSpace(c.KeepAlive) == "" || ollama.CheckKeepAlive(c.KeepAlive) != nil {
		return bad("keep_alive", `must be a number of seconds like "-1" or a duration like "5m", got %q`, c.KeepAlive)
	}
	if c.Policy.Schedule != ScheduleDrain && c.Policy.Schedule != ScheduleFIFO {
		return bad("schedule", "must be %s or %s, got %q", ScheduleDrain, ScheduleFIFO, c.Policy.Schedule)
	}
	for i, m := range c.Policy.Pinned {
		if strings.TrimSpace(m) == "" {
			return bad(fmt.Sprintf("pinned[%d]", i), "must name a model")
		}
	}
	if c.MaxAttempts < 1 {
		return bad("max_attempts", "must be at least 1, got %d", c.MaxAttempts)
	}
	for _, d := range []struct {
		field    string
		v        time.Duration
		positive bool
	}{
		{"max_wait", c.Policy.MaxWait, false},
		{"timeout", c.Timeout, true},
		{"max_age", c.MaxAge, false},
		{"shutdown_grace", c.ShutdownGrace, false},
		{"retention.done", c.RetainDone, false},
		{"retention.failed", c.RetainFailed, false},
		{"settle", c.Settle, true},
		{"retry_backoff", c.RetryBase, true},
		{"retry_backoff_max", c.RetryMax, true},
	} {
		switch {
		case d.positive && d.v <= 0:
			return bad(d.field, "must be positive, got %s", d.v)
		case d.v < 0:
			return bad(d.field, "must not be negative, got %s", d.v)
		}
	}
	if c.RetryMax < c.RetryBase {
		return bad("retry_backoff_max", "must not be less than retry_backoff (%s), got %s", c.RetryBase, c.RetryMax)
	}
	return nil
}

// checkTargets checks the targets' names (when named: several targets, or
// one from a configuration), slots and model patterns.
func checkTargets(targets []TargetConfig, named bool) error {
	seen := map[string]bool{}
	for i, t := range targets {
		key := fmt.Sprintf("targets[%d]", i)
		switch {
		case named && !validTargetName.MatchString(t.Name):
			return &ConfigError{Field: key + ".name", Err: fmt.Errorf("must be lowercase letters, digits and '-' like \"gpu1\", got %q", t.Name)}
		case seen[t.Name]:
			return &ConfigError{Field: key + ".name", Err: fmt.Errorf("%q names two targets", t.Name)}
		case t.Parallel < 0:
			return &ConfigError{Field: key + ".parallel", Err: fmt.Errorf("must be at least 1 (or 0 for the default), got %d", t.Parallel)}
		}
		seen[t.Name] = true
		for j, m := range t.Models {
			if _, err := matchGlob(m, ""); err != nil || strings.TrimSpace(m) == "" {
				return &ConfigError{Field: fmt.Sprintf("%s.models[%d]", key, j), Err: fmt.Errorf("must be a model name or a pattern like \"llama3*\", got %q", m)}
			}
		}
	}
	return nil
}
