package hooks

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/internal/yamlconf"
	"github.com/hopper-dev/hopper/spool"
)

// Config configures Hooks. Only Spool is required.
type Config struct {
	// Spool holds the outbox (SPOOL/.hopper/outbox/); its options decide
	// fsync and file modes. It must stay open while Hooks is used.
	Spool *spool.Spool
	// Dir holds the exec hooks (hooks.dir); empty: none.
	Dir string
	// Env names variables of hopper's environment that exec hooks get
	// besides the fixed set the package documents (hooks.env), such as
	// "http_proxy" or "SSL_CERT_FILE". Names starting with HOPPER_ are
	// refused: they are hopper's own settings, secrets among them.
	Env []string
	// Secret ("whsec_…", hooks.secret) signs deliveries to jobs' webhooks
	// and to configured webhooks without a secret of their own.
	Secret string
	// Allow lists host names ("hooks.internal", "*.lan"), addresses and
	// CIDRs that untrusted webhooks may reach although they are loopback,
	// private or link-local (hooks.allow).
	Allow []string
	// Webhooks receive every job's events (hooks.webhooks).
	Webhooks []Webhook

	// Schedule is the delay before each attempt: Schedule[0] before the
	// first, Schedule[n] after the nth failed; its length is the number of
	// attempts. Default: DefaultSchedule.
	Schedule []time.Duration
	// Timeout bounds one delivery attempt; default 15s.
	Timeout time.Duration
	// ExecTimeout bounds one exec hook; default 30s.
	ExecTimeout time.Duration
	// ShutdownGrace is how long, once Run's context ends, the exec hook
	// running and those queued may still run (each within ExecTimeout)
	// before they are killed; 0 kills them at once. hopper serve gives it
	// shutdown_grace, so the hook of a job that finished during the
	// runner's grace still runs.
	ShutdownGrace time.Duration
	// Workers is how many deliveries to one endpoint (scheme://host:port)
	// may be in flight at once; default 4.
	Workers int

	// Logger gets delivery outcomes and hook output; default: discarded.
	Logger *slog.Logger
	// HTTPClient sends trusted deliveries; its CheckRedirect is replaced,
	// since redirects are never followed. Untrusted deliveries use a clone
	// of its *http.Transport (or of http.DefaultTransport) whose dialer
	// refuses private addresses and which uses no proxy.
	HTTPClient *http.Client
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Jitter returns a number in [0, 1) that spreads each retry delay over
	// ±10%; default math/rand/v2's Float64.
	Jitter func() float64
}

// Webhook is a configured receiver of every job's events.
type Webhook struct {
	URL string
	// Secret signs its deliveries; empty: Config.Secret.
	Secret string
	// Events lists the event types it wants ("job.done"); empty: all.
	Events []string
}

// DefaultSchedule returns the Standard Webhooks retry schedule: at once,
// then 5s, 5m, 30m, 2h, 5h, 10h and 10h after each failure.
func DefaultSchedule() []time.Duration {
	return []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
		2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
}

// ConfigError reports a bad setting; Field is spelled as in the config file
// ("hooks.webhooks[0].url").
type ConfigError = yamlconf.KeyError[section]

// section begins the messages of ConfigError: "hooks: ".
type section struct{}

func (section) Section() string { return "hooks" }

// Validate checks every setting and returns a *ConfigError naming the first
// bad one. Zero values that have defaults are fine.
func (c Config) Validate() error {
	if c.Spool == nil {
		return &ConfigError{Field: "spool", Err: errors.New("is required")}
	}
	if err := c.ValidateSettings(); err != nil {
		return err
	}
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	for i, d := range c.Schedule {
		if d < 0 {
			return bad(fmt.Sprintf("schedule[%d]", i), "must not be negative, got %s", d)
		}
	}
	if c.Timeout < 0 {
		return bad("timeout", "must not be negative, got %s", c.Timeout)
	}
	if c.ExecTimeout < 0 {
		return bad("exec_timeout", "must not be negative, got %s", c.ExecTimeout)
	}
	if c.Workers < 0 {
		return bad("workers", "must not be negative, got %d", c.Workers)
	}
	return nil
}

// eventTypes are the events a configured webhook may ask for.
var eventTypes = []string{TypeQueued, TypeLoading, TypeWorking, TypeDeferred, TypeDone, TypeFailed, TypeBatchDone}

// ValidateSettings checks the settings hopper.yaml gives (its hooks:
// section) and returns a *ConfigError naming the first bad one. Unlike
// Validate it does not need Spool: a configuration is checked before the
// spool is open.
func (c Config) ValidateSettings() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	if _, err := decodeSecret(c.Secret); err != nil {
		return &ConfigError{Field: "hooks.secret", Err: err}
	}
	if _, err := parseAllow(c.Allow); err != nil {
		return err
	}
	for i, name := range c.Env {
		field := fmt.Sprintf("hooks.env[%d]", i)
		switch {
		case name == "" || strings.ContainsAny(name, "=\x00"):
			return bad(field, "want a variable's name, got %q", name)
		case strings.HasPrefix(strings.ToUpper(name), "HOPPER_"):
			return bad(field, "%s is one of hopper's own settings, which hooks never get; hooks get HOPPER_JOB_ID, HOPPER_STATE, HOPPER_EVENT, HOPPER_SPOOL and HOPPER_RECORD", name)
		}
	}
	for i, w := range c.Webhooks {
		field := fmt.Sprintf("hooks.webhooks[%d]", i)
		if checkURL(w.URL) != nil {
			return bad(field+".url", "must be an http or https URL, got %q", w.URL)
		}
		if _, err := decodeSecret(w.Secret); err != nil {
			return &ConfigError{Field: field + ".secret", Err: err}
		}
		for j, e := range w.Events {
			if !slices.Contains(eventTypes, e) {
				return bad(fmt.Sprintf("%s.events[%d]", field, j), "must be one of %s, got %q", strings.Join(eventTypes, ", "), e)
			}
		}
	}
	return nil
}

// decodeSecret returns a Standard Webhooks secret's key: the base64 after
// "whsec_". An empty secret has no key.
func decodeSecret(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(s, "whsec_")
	key, err := base64.StdEncoding.DecodeString(rest)
	if !ok || err != nil || len(key) == 0 {
		return nil, errors.New(`must be a Standard Webhooks secret like "whsec_" followed by base64`)
	}
	return key, nil
}

// checkURL accepts absolute http and https URLs.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("want an http or https URL, got %q", raw)
	}
	return nil
}

// allowList is Config.Allow parsed: exempt host names and networks.
type allowList struct {
	names    []string // lower case; "*.example.com" matches its subdomains
	prefixes []netip.Prefix
}

func parseAllow(entries []string) (allowList, error) {
	var a allowList
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if p, err := netip.ParsePrefix(e); err == nil {
			a.prefixes = append(a.prefixes, p.Masked())
			continue
		}
		if ip, err := netip.ParseAddr(e); err == nil {
			a.prefixes = append(a.prefixes, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		if e == "" || strings.ContainsAny(e, "/: ") {
			return a, &ConfigError{Field: fmt.Sprintf("hooks.allow[%d]", i),
				Err: fmt.Errorf("must be a host name, an IP address or a CIDR like %q, got %q", "10.0.0.0/8", e)}
		}
		a.names = append(a.names, strings.TrimSuffix(strings.ToLower(e), "."))
	}
	return a, nil
}

// host reports whether the host name is exempt.
func (a allowList) host(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, n := range a.names {
		if n == name {
			return true
		}
		if suffix, ok := strings.CutPrefix(n, "*"); ok && strings.HasSuffix(name, suffix) && len(name) > len(suffix) {
			return true
		}
	}
	return false
}

// addr reports whether the address is exempt.
func (a allowList) addr(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
