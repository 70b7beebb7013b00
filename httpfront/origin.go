package httpfront

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// Browsers and DNS rebinding (as Ollama guards against them: its
// allowedHostsMiddleware and OLLAMA_ORIGINS). A web page can make a
// browser send requests to the front: it cannot read the answers unless
// the front allows its origin (CORS), but it can submit jobs with a
// "simple" request (a form, or fetch with text/plain), and with DNS
// rebinding — its own name resolving to 127.0.0.1 — it is same-origin
// with the front and reads everything. So:
//
//   - on a connection to a loopback address, the Host header must name
//     this machine (localhost, *.localhost, a loopback address, the
//     listen address, the host name) or a host of Origins, else 403;
//     remote clients of a front listening on a LAN address are not
//     checked, since they address it by whatever name they know it by;
//   - a request with an Origin header other than the front's own, an
//     allowed one (Origins, Ollama's defaults) or none is 403, and so is
//     a browser request without Origin that Sec-Fetch-Site says is
//     cross-site when it changes state with a "simple" content type;
//   - a CORS preflight (OPTIONS with Origin and
//     Access-Control-Request-Method) from an allowed origin is answered
//     204 with the Access-Control-* headers, before any token check, and
//     answers to an allowed origin carry Access-Control-Allow-Origin.
//
// Requests without Origin (curl, the SDKs, the ollama CLI) are not
// affected.

// defaultOrigins are always allowed, as Ollama allows them (envconfig's
// AllowedOrigins, and gin-contrib/cors's AllowBrowserExtensions).
var defaultOrigins = func() []string {
	var o []string
	for _, h := range []string{"localhost", "127.0.0.1", "0.0.0.0", "[::1]"} {
		o = append(o, "http://"+h, "https://"+h, "http://"+h+":*", "https://"+h+":*")
	}
	return append(o, "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
		"chrome-extension://*", "moz-extension://*", "safari-extension://*", "safari-web-extension://*", "ms-browser-extension://*")
}()

// CheckOrigin checks one entry of Origins: "*", or scheme://host[:port]
// with at most one "*" wildcard ("https://*.example.com",
// "http://localhost:*"), and no path.
func CheckOrigin(o string) error {
	if o == "*" {
		return nil
	}
	if strings.TrimSpace(o) != o || o == "" {
		return errors.New("an origin must be non-empty and have no surrounding spaces")
	}
	if strings.Count(o, "*") > 1 {
		return fmt.Errorf("%q has more than one '*'", o)
	}
	scheme, rest, ok := strings.Cut(o, "://")
	if !ok || scheme == "" || rest == "" || strings.ContainsAny(rest, "/?#@ ") || strings.Contains(scheme, "*") {
		return fmt.Errorf("want an origin like %q (scheme://host[:port], no path), got %q", "https://app.example.com", o)
	}
	return nil
}

// originPattern is one allowed origin, lower case; with a '*' it matches
// any text in its place.
type originPattern struct {
	prefix, suffix string
	wild           bool
}

func (p originPattern) match(origin string) bool {
	if !p.wild {
		return origin == p.prefix
	}
	return len(origin) >= len(p.prefix)+len(p.suffix) && strings.HasPrefix(origin, p.prefix) && strings.HasSuffix(origin, p.suffix)
}

// browserPolicy holds what the Host and Origin checks allow.
type browserPolicy struct {
	any      bool // Origins holds "*"
	origins  []originPattern
	hosts    []originPattern // host names of the configured origins (no port)
	listen   string          // the listen address's host, lower case
	hostname string          // this machine's name, lower case
}

func newBrowserPolicy(cfg *Config) *browserPolicy {
	p := &browserPolicy{}
	if h, _, err := net.SplitHostPort(cfg.Addr); err == nil {
		p.listen = strings.ToLower(strings.Trim(h, "[]"))
	}
	if h, err := os.Hostname(); err == nil {
		p.hostname = strings.ToLower(h)
	}
	pattern := func(s string) originPattern {
		s = strings.ToLower(s)
		if before, after, ok := strings.Cut(s, "*"); ok {
			return originPattern{prefix: before, suffix: after, wild: true}
		}
		return originPattern{prefix: s}
	}
	for _, o := range defaultOrigins {
		p.origins = append(p.origins, pattern(o))
	}
	for _, o := range cfg.Origins {
		if o == "*" {
			p.any = true
			continue
		}
		p.origins = append(p.origins, pattern(o))
		scheme, hostport, _ := strings.Cut(o, "://")
		if s := strings.ToLower(scheme); s != "http" && s != "https" {
			continue // not a name hopper is addressed by
		}
		host := hostport
		if h, _, err := net.SplitHostPort(hostport); err == nil {
			host = h
		} else if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport, "]") {
			host = hostport[:i] // "host:*"
		}
		p.hosts = append(p.hosts, pattern(strings.Trim(host, "[]")))
	}
	return p
}

// hostAllowed reports whether a request's Host header names this machine
// or a configured host.
func (p *browserPolicy) hostAllowed(hostHeader string) bool {
	if p.any || hostHeader == "" {
		return true
	}
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if i := strings.IndexByte(host, '%'); i >= 0 {
		host = host[:i]
	}
	switch {
	case host == "localhost", strings.HasSuffix(host, ".localhost"), host == p.listen, host == p.hostname:
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		return ip.IsLoopback() || ip.IsUnspecified()
	}
	for _, h := range p.hosts {
		if h.match(host) {
			return true
		}
	}
	return false
}

// originAllowed reports whether a browser page of origin may use the
// front: an allowed origin, or the front's own (the page was served by
// this host and port).
func (p *browserPolicy) originAllowed(origin string, r *http.Request) bool {
	if p.any {
		return true
	}
	o := strings.ToLower(origin)
	if sameOrigin(o, r) {
		return true
	}
	for _, pat := range p.origins {
		if pat.match(o) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether origin (lower case) is the origin the
// request was sent to: its scheme, and the host and port of its Host
// header.
func sameOrigin(origin string, r *http.Request) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return u.Scheme == scheme && withPort(u.Host, scheme) == withPort(strings.ToLower(r.Host), scheme)
}

// withPort adds the scheme's default port to a host that has none.
func withPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// onLoopback reports whether the request came in on a loopback address
// of this machine: from the connection when the server says, else from
// the configured listen address.
func (s *Server) onLoopback(r *http.Request) bool {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a != nil {
		return loopbackListener(a)
	}
	return LoopbackAddr(s.cfg.Addr)
}

// simpleTypes are the content types a browser sends cross-origin without
// asking first (a CORS "simple" request).
var simpleTypes = map[string]bool{
	"text/plain":                        true,
	"multipart/form-data":               true,
	"application/x-www-form-urlencoded": true,
}

// forbidden is the answer to a request a browser must not make.
func forbidden(format string, args ...any) *httpError {
	e := errorf(http.StatusForbidden, format, args...)
	e.code = "forbidden"
	return e
}

// exposedHeaders are the answer headers a cross-origin page may read.
const exposedHeaders = "Location, Retry-After, X-Hopper-Job-Id, X-Hopper-State, Idempotent-Replayed, Www-Authenticate"

// checkBrowser applies the Host and Origin rules to r. It returns an
// error to answer with, or done when it answered a preflight itself.
func (s *Server) checkBrowser(w http.ResponseWriter, r *http.Request) (done bool, e *httpError) {
	if s.onLoopback(r) && !s.browser.hostAllowed(r.Host) {
		return false, forbidden("the Host header %q does not name this machine: hopper answers requests to localhost, its loopback addresses and host name only, which keeps web pages out through DNS rebinding (add the name to origins to allow it)", r.Host)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		if (site == "cross-site" || site == "same-site") && changesState(r.Method) && simpleType(r) {
			return false, forbidden("a cross-site browser request may not %s here; allow its page's origin with origins in the config", r.Method)
		}
		return false, nil
	}
	if !s.browser.originAllowed(origin, r) {
		return false, forbidden("the origin %q is not allowed: add it to origins in the config (HOPPER_ORIGINS) to let its pages use hopper", origin)
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, HEAD, OPTIONS")
		if req := r.Header.Values("Access-Control-Request-Headers"); len(req) > 0 {
			h.Set("Access-Control-Allow-Headers", strings.Join(req, ", "))
		}
		h.Set("Access-Control-Max-Age", "7200")
		w.WriteHeader(http.StatusNoContent)
		return true, nil
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", exposedHeaders)
	return false, nil
}

// changesState reports whether a method may change something.
func changesState(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// simpleType reports whether a request's content type is one a browser
// sends cross-origin without a preflight (or none at all).
func simpleType(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err != nil || simpleTypes[mt]
}
