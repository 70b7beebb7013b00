package runner_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/runner"
)

// configured is a runner.Config as a configuration gives it: every setting
// set, no zero standing for a default.
func configured() runner.Config {
	return runner.Config{
		Targets:     []runner.TargetConfig{{Name: "gpu1", Parallel: 2, Models: []string{"llama3*"}}, {Name: "gpu2"}},
		Policy:      runner.Policy{Schedule: runner.ScheduleDrain, MaxWait: 10 * time.Minute, Pinned: []string{"m"}},
		KeepAlive:   "-1",
		MaxAttempts: 3, Timeout: 30 * time.Minute, ShutdownGrace: 30 * time.Second, Settle: 2 * time.Second,
		RetryBase: 5 * time.Second, RetryMax: 5 * time.Minute,
	}
}

func TestValidateNamesTheKeyAsHopperYAMLWritesIt(t *testing.T) {
	if err := configured().Validate(); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	for _, tc := range []struct {
		field string
		mod   func(*runner.Config)
	}{
		{"targets[0].name", func(c *runner.Config) { c.Targets[0].Name = "GPU" }},
		{"targets[1].name", func(c *runner.Config) { c.Targets[1].Name = "gpu1" }},
		{"targets[0].parallel", func(c *runner.Config) { c.Targets[0].Parallel = -1 }},
		{"targets[0].models[0]", func(c *runner.Config) { c.Targets[0].Models = []string{"["} }},
		{"keep_alive", func(c *runner.Config) { c.KeepAlive = "" }},
		{"keep_alive", func(c *runner.Config) { c.KeepAlive = "7d" }},
		{"schedule", func(c *runner.Config) { c.Policy.Schedule = "" }},
		{"pinned[0]", func(c *runner.Config) { c.Policy.Pinned = []string{" "} }},
		{"max_attempts", func(c *runner.Config) { c.MaxAttempts = 0 }},
		{"max_wait", func(c *runner.Config) { c.Policy.MaxWait = -1 }},
		{"timeout", func(c *runner.Config) { c.Timeout = 0 }},
		{"max_age", func(c *runner.Config) { c.MaxAge = -1 }},
		{"retention.failed", func(c *runner.Config) { c.RetainFailed = -1 }},
		{"settle", func(c *runner.Config) { c.Settle = 0 }},
		{"retry_backoff", func(c *runner.Config) { c.RetryBase = 0 }},
		{"retry_backoff_max", func(c *runner.Config) { c.RetryMax = time.Second }},
	} {
		c := configured()
		c.Targets = append([]runner.TargetConfig(nil), c.Targets...)
		tc.mod(&c)
		var ce *runner.ConfigError
		if err := c.Validate(); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("got %v, want a *ConfigError for %s", err, tc.field)
		}
	}
}

func TestNewChecksTargetsByTheSameRules(t *testing.T) {
	h := newHarness(t, func(c *runner.Config) {
		c.Targets = []runner.TargetConfig{{Name: "GPU", Target: c.Target}}
	})
	var ce *runner.ConfigError
	if _, err := runner.New(h.cfg); !errors.As(err, &ce) || ce.Field != "targets[0].name" {
		t.Errorf("got %v, want a *ConfigError for targets[0].name", err)
	}
	h.cfg.Targets[0].Name = "gpu"
	if _, err := runner.New(h.cfg); err != nil {
		t.Errorf("New gives zero settings their defaults: %v", err)
	}
}
