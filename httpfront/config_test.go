package httpfront_test

import (
	"errors"
	"testing"

	"github.com/hopper-dev/hopper/httpfront"
)

func TestValidateSettingsNeedsNoSpool(t *testing.T) {
	c := httpfront.Config{Addr: "127.0.0.1:0", Origins: []string{"https://app.example"}}
	c.Default()
	if err := c.ValidateSettings(); err != nil {
		t.Errorf("good settings: %v", err)
	}
	for _, tc := range []struct {
		field, reason string
		c             httpfront.Config
	}{
		{"http", `"0.0.0.0:11435" is not a loopback address: set tokens to serve it, or listen on 127.0.0.1`, httpfront.Config{Addr: "0.0.0.0:11435"}},
		{"tokens[0]", "a token must be non-empty and have no surrounding spaces", httpfront.Config{Tokens: []string{" t"}}},
		{"origins[0]", "", httpfront.Config{Origins: []string{"app.example"}}},
		{"hooks.allow[0]", "", httpfront.Config{WebhookAllow: []string{"https://x"}}},
		{"targets[0].models[0]", "", httpfront.Config{Targets: []httpfront.Target{{URL: "http://x:1", Models: []string{"["}}}}},
	} {
		tc.c.Default()
		err := tc.c.ValidateSettings()
		var ce *httpfront.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || (tc.reason != "" && ce.Reason != tc.reason) {
			t.Errorf("%+v: got %v, want a *ConfigError for %s", tc.c, err, tc.field)
			continue
		}
		if key, reason := ce.Setting(); key != tc.field || reason.Error() != ce.Reason {
			t.Errorf("Setting() = %q, %v; want %q, %q", key, reason, tc.field, ce.Reason)
		}
	}
}
