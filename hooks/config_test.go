package hooks

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateSettingsNeedsNoSpool(t *testing.T) {
	good := Config{
		Secret:   configSecret,
		Allow:    []string{"10.0.0.0/8", "fd00::1", "hooks.internal", "*.lan"},
		Env:      []string{"http_proxy"},
		Webhooks: []Webhook{{URL: "http://127.0.0.1:9/hook", Events: []string{TypeDone, TypeBatchDone}}},
	}
	if err := good.ValidateSettings(); err != nil {
		t.Errorf("good settings: %v", err)
	}
	var ce *ConfigError
	if err := good.Validate(); !errors.As(err, &ce) || ce.Field != "spool" {
		t.Errorf("Validate without a spool: got %v, want a *ConfigError for spool", err)
	}
}

func TestValidateSettingsNamesTheKey(t *testing.T) {
	for _, tc := range []struct {
		field, says string
		c           Config
	}{
		{"hooks.secret", `Standard Webhooks secret like "whsec_"`, Config{Secret: "hunter2"}},
		{"hooks.secret", `Standard Webhooks secret like "whsec_"`, Config{Secret: "whsec_abc"}},
		{"hooks.allow[1]", `got "https://x"`, Config{Allow: []string{"10.0.0.0/8", "https://x"}}},
		{"hooks.env[0]", "hopper's own settings", Config{Env: []string{"HOPPER_HOOKS_SECRET"}}},
		{"hooks.webhooks[0].url", `must be an http or https URL, got "ftp://b"`, Config{Webhooks: []Webhook{{URL: "ftp://b"}}}},
		{"hooks.webhooks[0].url", `got "http://a b"`, Config{Webhooks: []Webhook{{URL: "http://a b"}}}},
		{"hooks.webhooks[0].secret", "whsec_", Config{Webhooks: []Webhook{{URL: "https://x", Secret: "s"}}}},
		{"hooks.webhooks[0].events[1]", `must be one of job.queued, `, Config{Webhooks: []Webhook{{URL: "https://x", Events: []string{TypeDone, "job.finished"}}}}},
	} {
		err := tc.c.ValidateSettings()
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: got %v, want a *ConfigError for %s saying %q", tc.c, err, tc.field, tc.says)
		}
	}
}
