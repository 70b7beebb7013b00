package spool

import (
	"fmt"
	"io/fs"

	"github.com/hopper-dev/hopper/internal/yamlconf"
)

// ConfigError reports a bad option; Field is its key in hopper.yaml
// ("dir_mode").
type ConfigError = yamlconf.KeyError[section]

// section begins the messages of ConfigError: "spool: ".
type section struct{}

func (section) Section() string { return "spool" }

// Validate checks options as a configuration gives them and returns a
// *ConfigError naming the first bad one. It takes every field as meant:
// where Open and Init give a zero field its default, a configuration that
// says 0 for a mode or a size is wrong, so start from DefaultOptions.
func (o Options) Validate() error {
	for _, m := range []struct {
		field      string
		v, needed  fs.FileMode
		neededText string
	}{
		{"dir_mode", o.DirMode, 0o700, "read, write and search (0700)"},
		{"file_mode", o.FileMode, 0o600, "read and write (0600)"},
	} {
		if m.v&^fs.ModePerm != 0 {
			return &ConfigError{Field: m.field, Err: fmt.Errorf("must be permission bits like \"0750\", got %#o", uint32(m.v))}
		}
		if m.v&m.needed != m.needed {
			return &ConfigError{Field: m.field, Err: fmt.Errorf("must give the owner %s, got %04o", m.neededText, uint32(m.v))}
		}
	}
	if o.MaxJobSize <= 0 {
		return &ConfigError{Field: "max_job_size", Err: fmt.Errorf("must be positive, got %d", o.MaxJobSize)}
	}
	return nil
}
