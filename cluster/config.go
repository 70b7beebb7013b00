package cluster

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/internal/yamlconf"
)

// Config is hopper.yaml's cluster section (DESIGN §11). Either Listen
// (with Routes to the other hosts) embeds a NATS server with JetStream in
// hopper, or URL joins an existing NATS cluster; Name is the same on every
// host.
type Config struct {
	Name     string   `yaml:"name" mapstructure:"name"`         // the cluster's name, the same on every host
	Node     string   `yaml:"node" mapstructure:"node"`         // this host's name; empty: the hostname
	Listen   string   `yaml:"listen" mapstructure:"listen"`     // embedded NATS: host:port where this host accepts routes
	Routes   []string `yaml:"routes" mapstructure:"routes"`     // embedded NATS: the other hosts, nats-route://host:port
	URL      string   `yaml:"url" mapstructure:"url"`           // instead of listen/routes: an existing NATS cluster (nats://…, comma-separated)
	Replicas int      `yaml:"replicas" mapstructure:"replicas"` // stream and bucket replicas; 0: 3 when embedded with routes, else 1
	// Secret authenticates the routes between embedded servers: the same
	// on every host. Required when listen is not a loopback address.
	Secret string `yaml:"secret" mapstructure:"secret"`

	// For url: a NATS credentials file (JWT and nkey seed), and TLS files.
	// With listen, the TLS files encrypt the routes: every host presents
	// tls_cert (tls_key) and takes only peers whose certificate tls_ca
	// signed.
	Credentials string `yaml:"credentials" mapstructure:"credentials"`
	TLSCA       string `yaml:"tls_ca" mapstructure:"tls_ca"`
	TLSCert     string `yaml:"tls_cert" mapstructure:"tls_cert"`
	TLSKey      string `yaml:"tls_key" mapstructure:"tls_key"`
	// ClientListen, with listen, also opens the embedded server's client
	// port there without a password (for the nats CLI; keep it on
	// loopback); otherwise hopper talks to its embedded server in process.
	ClientListen string `yaml:"client_listen" mapstructure:"client_listen"`

	// InFlight is how many of this host's jobs it hands to the cluster at
	// once (the rest wait in its new/, by priority); 0: 256.
	InFlight int `yaml:"in_flight" mapstructure:"in_flight"`
	// AckWait is how long a job taken by a host that went silent stays
	// its before the stream gives it to another; 0: 30s.
	AckWait time.Duration `yaml:"ack_wait" mapstructure:"ack_wait"`
}

// DefaultInFlight is Config.InFlight's default.
const DefaultInFlight = 256

// ConfigError reports a bad setting; Field is its key in hopper.yaml
// ("cluster.listen", "cluster.routes[1]").
type ConfigError = yamlconf.KeyError[section]

// section begins the messages of ConfigError with nothing: its keys
// begin "cluster." already.
type section struct{}

func (section) Section() string { return "" }

// Enabled reports whether the section asks for a cluster at all: one host
// is unchanged when it is unset.
func (c Config) Enabled() bool {
	return c.Name != "" || c.Listen != "" || c.URL != "" || len(c.Routes) > 0
}

// Embedded reports whether hopper runs the NATS server itself.
func (c Config) Embedded() bool { return c.URL == "" }

// validName is the form NATS gives cluster and server names, and hopper
// its node names: no spaces, dots or wildcards.
var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// NodeName is this host's name: Node, else the hostname cut to what a NATS
// server name may hold.
func (c Config) NodeName() string {
	if c.Node != "" {
		return c.Node
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "hopper"
	}
	h, _, _ = strings.Cut(h, ".")
	return notInName.ReplaceAllString(h, "-")
}

// notInName matches what a node name may not hold.
var notInName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// replicas is the replica count streams and buckets get.
func (c Config) replicas() int {
	switch {
	case c.Replicas > 0:
		return c.Replicas
	case c.Embedded() && len(c.Routes) > 0:
		return 3
	}
	return 1
}

// Validate checks an enabled section and returns a *ConfigError naming the
// first bad key.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: "cluster." + field, Err: fmt.Errorf(format, args...)}
	}
	if !validName.MatchString(c.Name) {
		return bad("name", "must be 1 to 64 letters, digits, '_' or '-', the same on every host, got %q", c.Name)
	}
	if c.Node != "" && !validName.MatchString(c.Node) {
		return bad("node", "must be 1 to 64 letters, digits, '_' or '-' (empty: the hostname), got %q", c.Node)
	}
	if c.InFlight < 0 {
		return bad("in_flight", "must be at least 1 (0: %d), got %d", DefaultInFlight, c.InFlight)
	}
	if c.AckWait < 0 || c.AckWait > 0 && c.AckWait < time.Second {
		return bad("ack_wait", "must be at least 1s (0: %s), got %s", DefaultAckWait, c.AckWait)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return bad("replicas", "must be 1 to 5 (NATS keeps at most 5 copies), got %d", c.Replicas)
	}
	if c.URL != "" {
		if c.Listen != "" || len(c.Routes) > 0 {
			return bad("url", "joins an existing NATS cluster: leave cluster.listen and cluster.routes empty, which embed one")
		}
		for _, u := range strings.Split(c.URL, ",") {
			p, err := url.Parse(strings.TrimSpace(u))
			if err != nil || p.Host == "" || (p.Scheme != "nats" && p.Scheme != "tls" && p.Scheme != "ws" && p.Scheme != "wss") {
				return bad("url", "must be nats://host:port (or tls://, ws://, wss://), comma-separated for several, got %q", u)
			}
		}
		if err := c.checkFiles(bad); err != nil {
			return err
		}
		if c.ClientListen != "" {
			return bad("client_listen", "opens the embedded server's client port; with cluster.url there is none")
		}
		return nil
	}
	if c.Credentials != "" {
		return bad("credentials", "is for joining a NATS cluster with cluster.url")
	}
	if c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" {
		if c.Listen == "" {
			return bad("tls_cert", "encrypts the routes of cluster.listen (or the connection to cluster.url): set one of them")
		}
		if c.TLSCert == "" || c.TLSCA == "" {
			return bad("tls_ca", "cluster.tls_cert and cluster.tls_key go together for the routes: each host shows its certificate and takes peers that tls_ca signed")
		}
		if err := c.checkFiles(bad); err != nil {
			return err
		}
	}
	if c.Secret != "" && c.Listen == "" {
		return bad("secret", "authenticates the routes of cluster.listen: set that too")
	}
	if c.Listen == "" && len(c.Routes) > 0 {
		return bad("listen", "is where this host accepts the routes of the others: set it with cluster.routes")
	}
	if c.Listen != "" {
		if err := checkHostPort(c.Listen); err != nil {
			return bad("listen", "%v", err)
		}
		if host, _, _ := net.SplitHostPort(c.Listen); c.Secret == "" && c.TLSCert == "" && !loopback(host) {
			return bad("secret", "must be set (the same on every host), or the routes' certificates (cluster.tls_*), when cluster.listen is not a loopback address: without either anyone who reaches %s joins the cluster and reads its jobs", c.Listen)
		}
	}
	if c.ClientListen != "" {
		if err := checkHostPort(c.ClientListen); err != nil {
			return bad("client_listen", "%v", err)
		}
	}
	for i, r := range c.Routes {
		p, err := url.Parse(r)
		if err != nil || p.Scheme != "nats-route" || p.Host == "" || checkHostPort(p.Host) != nil {
			return bad(fmt.Sprintf("routes[%d]", i), "must be nats-route://host:port, got %q", r)
		}
	}
	if n := len(c.Routes) + 1; c.replicas() > n {
		return bad("replicas", "is %d but the cluster has %d hosts (this one and cluster.routes)", c.replicas(), n)
	}
	return nil
}

// checkFiles checks that the credentials and TLS files named can be read,
// and that tls_cert and tls_key come together.
func (c Config) checkFiles(bad func(field, format string, args ...any) error) error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return bad("tls_cert", "and cluster.tls_key go together")
	}
	for _, f := range []struct{ field, path string }{{"credentials", c.Credentials}, {"tls_ca", c.TLSCA}, {"tls_cert", c.TLSCert}, {"tls_key", c.TLSKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return bad(f.field, "cannot read %s: %v", f.path, err)
		}
	}
	return nil
}

// loopback reports whether host is a loopback address or localhost.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkHostPort checks a host:port (an empty host: every address) with a
// numeric port.
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("must be host:port with a port number, got %q", s)
	}
	return nil
}
