package httpfront

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/hooks"
	"github.com/hopper-dev/hopper/spool"
)

// Defaults for the zero fields of a Config.
const (
	DefaultAddr              = "127.0.0.1:11435"
	DefaultTarget            = "http://127.0.0.1:11434"
	DefaultMaxBody           = 32 << 20
	DefaultDropInPriority    = 100
	DefaultMaxWaiters        = 1024
	DefaultMaxPollers        = 1024
	DefaultMaxPollersPerIP   = 64
	DefaultMaxWait           = 5 * time.Minute
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = time.Minute
	DefaultShutdownGrace     = 10 * time.Second
)

// ErrInsecure means the front was asked to listen on an address other
// machines can reach without any bearer token.
var ErrInsecure = errors.New("refusing to listen on a non-loopback address without a bearer token")

// Config sets up a Server. Zero fields take the defaults above.
type Config struct {
	// Spool is the open spool the front reads and writes. Required.
	Spool *spool.Spool
	// Addr is where ListenAndServe listens ("127.0.0.1:11435").
	Addr string
	// Tokens are the accepted bearer tokens. Empty means no auth, which is
	// allowed only on a loopback address.
	Tokens []string
	// Target is the Ollama base URL the read-only and model-management
	// endpoints are proxied to: the shorthand for one target, used when
	// Targets is empty.
	Target string
	// Targets are the Ollama servers hopper drives, in the order of the
	// configuration (targets); the front answers for all of them (see
	// models.go): pulls and creates run on each target that may run the
	// model, deletes and copies on each that has it, reads merge or pick.
	// When set, Target is ignored and Default sets it to the first's URL.
	Targets []Target
	// MaxBody caps a request body in bytes (default 32 MiB); larger is 413.
	MaxBody int64
	// BodyBudget caps the request body bytes held in memory at once, by all
	// requests together (default 4 × MaxBody; at least MaxBody). A request
	// whose body does not fit while others hold theirs is answered 503 with
	// Retry-After. Uploads to POST /v1/files stream to disk and do not
	// count.
	BodyBudget int64
	// MaxUpload caps a file uploaded to POST /v1/files in bytes (default
	// 512 MiB); larger is 413. Uploads are not bound by MaxBody.
	MaxUpload int64
	// DropInPriority is the priority of jobs queued by the Ollama and
	// OpenAI drop-in endpoints (default 100; 0 means the default). The
	// X-Hopper-Priority header overrides it per request.
	DropInPriority int
	// MaxWaiters caps the requests waiting on jobs they queued: drop-in
	// requests and POST /functions/{name} answered when done. Over it the
	// front answers 503. Long-polls and output streams never count here.
	MaxWaiters int
	// MaxPollers caps the long-polls (GET /jobs/{id}?wait=) and output
	// streams (GET /jobs/{id}/out) open at once (default 1024); over it
	// they are answered 503. MaxPollersPerIP caps those of one client
	// address (an IPv6 client by its /64; default 64); over it, 429.
	MaxPollers      int
	MaxPollersPerIP int
	// MaxWait caps the ?wait= of a long-poll (default 5m).
	MaxWait time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a request's body (default 1m); it does not
	// limit how long a response may stream.
	ReadTimeout time.Duration
	// ShutdownGrace is how long Serve lets drop-in requests finish once
	// its context ends (default 10s); those still waiting then have their
	// jobs canceled.
	ShutdownGrace time.Duration
	// Origins are the web origins whose pages may call the front from a
	// browser (origins; as OLLAMA_ORIGINS): "https://app.example.com",
	// "https://*.example.com", "http://localhost:*", or "*" for any.
	// Ollama's defaults are always allowed (http and https on localhost,
	// 127.0.0.1 and 0.0.0.0 with any port, app://, file://, tauri://,
	// vscode-webview://, vscode-file:// and browser extensions), as is
	// the front's own origin. A request with any other Origin is 403.
	// The host names of Origins are also accepted in the Host header; "*"
	// accepts any origin and any Host.
	Origins []string
	// WebhookAllow lists the hosts and CIDRs that webhooks of jobs
	// submitted over HTTP may reach although they are loopback, private or
	// link-local (hooks.allow): other such webhooks are refused at submit.
	WebhookAllow []string
	// Functions resolves POST /functions/{name}; nil: no functions.
	Functions Functions
	// Logger receives the front's logs (default: discarded).
	Logger *slog.Logger
	// HTTPClient is used for the proxied endpoints and the target probe of
	// /metrics (default: a client with http.DefaultTransport).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time

	hooks testHooks // for tests
}

// Target is one Ollama server (targets[] in hopper.yaml).
type Target struct {
	// Name names the target in progress lines and errors ("gpu1");
	// required and unique when there are several.
	Name string
	// URL is the server's base URL ("http://10.0.0.5:11434"; a bare
	// host:port means http).
	URL string
	// Models are globs of the models the target may run (matched as the
	// runner matches them: "llama3*", "qwen2.5:7b"); empty: any.
	Models []string
}

// testHooks let tests see what the front is doing without sleeping.
type testHooks struct {
	// onWait is called with a job's ID when a request starts waiting on it.
	onWait func(id string)
	// onLanded is called once a record landing in done/ or failed/ has
	// been observed for the metrics.
	onLanded func(id string)
}

// ConfigError names the setting of a Config that is wrong, by its key in
// hopper.yaml where it has one.
type ConfigError struct {
	Field  string
	Reason string
	Err    error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("http front: %s: %s", e.Field, e.Reason)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Setting returns the key and what is wrong with its value.
func (e *ConfigError) Setting() (key string, err error) { return e.Field, errors.New(e.Reason) }

// Default fills the zero fields of c with the defaults.
func (c *Config) Default() {
	setDefault(&c.Addr, DefaultAddr)
	if len(c.Targets) > 0 {
		c.Target = c.Targets[0].URL
	} else if c.Target == "" {
		c.Target = DefaultTarget
	}
	setDefault(&c.MaxBody, DefaultMaxBody)
	setDefault(&c.MaxUpload, DefaultMaxUpload)
	setDefault(&c.DropInPriority, DefaultDropInPriority)
	if c.BodyBudget == 0 && c.MaxBody > 0 {
		c.BodyBudget = 4 * c.MaxBody
	}
	setDefault(&c.MaxWaiters, DefaultMaxWaiters)
	setDefault(&c.MaxPollers, DefaultMaxPollers)
	setDefault(&c.MaxPollersPerIP, DefaultMaxPollersPerIP)
	setDefault(&c.MaxWait, DefaultMaxWait)
	setDefault(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.ShutdownGrace, DefaultShutdownGrace)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// setDefault sets *v to def if it is the zero value.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate checks c after Default. Errors are *ConfigError; an address
// reachable from other machines without tokens wraps ErrInsecure.
func (c *Config) Validate() error {
	if c.Spool == nil {
		return &ConfigError{Field: "spool", Reason: "no spool given"}
	}
	return c.ValidateSettings()
}

// ValidateSettings checks c after Default as Validate does, but not Spool:
// a configuration is checked before the spool is open.
func (c *Config) ValidateSettings() error {
	for i, t := range c.Tokens {
		if strings.TrimSpace(t) == "" || t != strings.TrimSpace(t) {
			return &ConfigError{Field: fmt.Sprintf("tokens[%d]", i), Reason: "a token must be non-empty and have no surrounding spaces"}
		}
	}
	if len(c.Tokens) == 0 && !LoopbackAddr(c.Addr) {
		return &ConfigError{Field: "http", Reason: fmt.Sprintf("%q is not a loopback address: set tokens to serve it, or listen on 127.0.0.1", c.Addr), Err: ErrInsecure}
	}
	if err := c.validateTargets(); err != nil {
		return err
	}
	for i, o := range c.Origins {
		if err := CheckOrigin(o); err != nil {
			return &ConfigError{Field: fmt.Sprintf("origins[%d]", i), Reason: err.Error()}
		}
	}
	if _, err := hooks.NewURLPolicy(c.WebhookAllow); err != nil {
		var ce *hooks.ConfigError
		if errors.As(err, &ce) {
			return &ConfigError{Field: ce.Field, Reason: ce.Err.Error(), Err: err}
		}
		return &ConfigError{Field: "hooks.allow", Reason: err.Error(), Err: err}
	}
	switch {
	case c.MaxBody < 0:
		return &ConfigError{Field: "max_body", Reason: "must be positive"}
	case c.MaxUpload < 0:
		return &ConfigError{Field: "max_upload", Reason: "must be positive"}
	case c.BodyBudget < c.MaxBody:
		return &ConfigError{Field: "body_budget", Reason: fmt.Sprintf("must be at least max_body (%d bytes), got %d", c.MaxBody, c.BodyBudget)}
	case c.MaxWaiters < 0:
		return &ConfigError{Field: "max_waiters", Reason: "must be positive"}
	case c.MaxPollers < 0:
		return &ConfigError{Field: "max_pollers", Reason: "must be positive"}
	case c.MaxPollersPerIP < 0:
		return &ConfigError{Field: "max_pollers_per_ip", Reason: "must be positive"}
	case c.MaxWait < 0, c.ReadHeaderTimeout < 0, c.ReadTimeout < 0, c.ShutdownGrace < 0:
		return &ConfigError{Field: "timeouts", Reason: "durations must be positive"}
	}
	return nil
}

// validateTargets checks Targets, or Target when there are none.
func (c *Config) validateTargets() error {
	if len(c.Targets) == 0 {
		if _, err := targetURL(c.Target); err != nil {
			return &ConfigError{Field: "ollama", Reason: err.Error()}
		}
		return nil
	}
	names := map[string]bool{}
	for i, t := range c.Targets {
		key := fmt.Sprintf("targets[%d]", i)
		if _, err := targetURL(t.URL); err != nil {
			return &ConfigError{Field: key + ".url", Reason: err.Error()}
		}
		if len(c.Targets) > 1 && (t.Name == "" || names[t.Name]) {
			return &ConfigError{Field: key + ".name", Reason: fmt.Sprintf("each of several targets needs a name of its own, got %q", t.Name)}
		}
		names[t.Name] = true
		for j, m := range t.Models {
			if _, err := path.Match(m, ""); err != nil || strings.TrimSpace(m) == "" {
				return &ConfigError{Field: fmt.Sprintf("%s.models[%d]", key, j), Reason: fmt.Sprintf("must be a model name or a pattern like \"llama3*\", got %q", m)}
			}
		}
	}
	return nil
}

// targetURL parses the Ollama base URL; a bare host:port (as OLLAMA_HOST
// allows) means http.
func targetURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid target URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid target URL %q: want http://host:port", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

// LoopbackAddr reports whether a listen address ("host:port") can only be
// reached from this machine: localhost or a loopback IP. An empty host
// means every interface, which is not.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	host = strings.Trim(host, "[]")
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackListener reports whether a listener accepts only local
// connections: a loopback TCP address or a Unix socket.
func loopbackListener(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return LoopbackAddr(a.String())
}
