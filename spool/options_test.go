package spool_test

import (
	"errors"
	"testing"

	"github.com/hopper-dev/hopper/spool"
)

func TestOptionsValidateTakesEveryFieldAsMeant(t *testing.T) {
	if err := spool.DefaultOptions().Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
	for _, tc := range []struct {
		field string
		mod   func(*spool.Options)
	}{
		{"dir_mode", func(o *spool.Options) { o.DirMode = 0o1777 }},
		{"dir_mode", func(o *spool.Options) { o.DirMode = 0o600 }},
		{"file_mode", func(o *spool.Options) { o.FileMode = 0o440 }},
		{"file_mode", func(o *spool.Options) { o.FileMode = 0 }},
		{"max_job_size", func(o *spool.Options) { o.MaxJobSize = 0 }},
	} {
		o := spool.DefaultOptions()
		tc.mod(&o)
		var ce *spool.ConfigError
		if err := o.Validate(); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("got %v, want a *ConfigError for %s", err, tc.field)
		}
	}
}
