package hooks

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// URLPolicy checks, when a job arrives over HTTP, the webhook it names, so
// that one the guard would refuse at dial time is refused at submit time
// instead of failing quietly later. It applies the same rules as the
// guard, with the same allow-list (hooks.allow). Its methods are safe for
// concurrent use.
type URLPolicy struct {
	allow allowList
}

// NewURLPolicy returns the policy for untrusted webhooks given the
// hooks.allow entries. An entry that does not parse is a *ConfigError
// naming it.
func NewURLPolicy(allow []string) (*URLPolicy, error) {
	a, err := parseAllow(allow)
	if err != nil {
		return nil, err
	}
	return &URLPolicy{allow: a}, nil
}

// CheckUntrusted says why the webhook URL raw, given by a job that arrived
// over HTTP, can never be delivered, or returns nil. It must be an absolute
// http or https URL. Its host is judged now when it is an IP address or a
// name that is always loopback (localhost, *.localhost); any other name is
// judged when a delivery connects, after resolution, since the address a
// name resolves to can change.
func (p *URLPolicy) CheckUntrusted(raw string) error {
	if err := checkURL(raw); err != nil {
		return err
	}
	u, _ := url.Parse(raw) // checkURL parsed it
	host := u.Hostname()
	if p.allow.host(host) {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		name := strings.TrimSuffix(strings.ToLower(host), ".")
		if name != "localhost" && !strings.HasSuffix(name, ".localhost") {
			return nil
		}
		ip = netip.MustParseAddr("127.0.0.1")
	}
	var refused *refusedError
	if errors.As(guard{p.allow}.check(host, ip), &refused) {
		return fmt.Errorf("%s is a %s address; a webhook from a job submitted over HTTP may reach it only if hooks.allow lists it", host, refused.why)
	}
	return nil
}
