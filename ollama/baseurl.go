package ollama

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// defaultPort is Ollama's port when the address names none and no scheme.
const defaultPort = "11434"

// parseBaseURL reads a target address the way Ollama reads OLLAMA_HOST:
// "host", "host:port", "http://host:port/prefix". Without a scheme the
// scheme is http and the port 11434; with an explicit http:// or https://
// scheme and no port, the port is that scheme's (80 or 443), as in Ollama.
// An empty host means 127.0.0.1, and an unspecified bind address (0.0.0.0,
// ::) is dialled as loopback.
func parseBaseURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	port := defaultPort
	scheme, hostport, ok := strings.Cut(s, "://")
	switch {
	case !ok:
		scheme, hostport = "http", s
	case strings.EqualFold(scheme, "http"):
		scheme, port = "http", "80"
	case strings.EqualFold(scheme, "https"):
		scheme, port = "https", "443"
	default:
		return nil, fmt.Errorf("target %q: unsupported scheme %q", s, scheme)
	}
	hostport, path, _ := strings.Cut(hostport, "/")
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	} else {
		port = p
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("target %q: invalid port %q", s, port)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if strings.ContainsAny(host, " /?#@") {
		return nil, fmt.Errorf("target %q: invalid host %q", s, host)
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}
	if path = strings.Trim(path, "/"); path != "" {
		u.Path = "/" + path
	}
	return u, nil
}
