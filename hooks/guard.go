package hooks

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// newClients returns the client for trusted deliveries (base, or a default
// one, that follows no redirects) and the one for untrusted deliveries,
// whose dialer refuses special addresses that allow does not exempt.
func newClients(base *http.Client, allow allowList) (trusted, guarded *http.Client) {
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	trusted = &http.Client{}
	if base != nil {
		c := *base
		trusted = &c
	}
	trusted.CheckRedirect = noRedirect

	var tr *http.Transport
	if t, ok := trusted.Transport.(*http.Transport); ok {
		tr = t.Clone()
	} else if t, ok := http.DefaultTransport.(*http.Transport); ok {
		tr = t.Clone()
	} else {
		tr = &http.Transport{}
	}
	tr.Proxy = nil // a proxy would dial for us, past the check
	tr.DialTLSContext = nil
	tr.DialContext = guard{allow}.dial
	return trusted, &http.Client{Transport: tr, CheckRedirect: noRedirect}
}

// guard checks, at dial time, the address an untrusted URL resolved to.
type guard struct{ allow allowList }

func (g guard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !g.allow.host(host) {
		// Control sees each address the name resolved to, as it is dialed,
		// so a name cannot be re-resolved to another address after the check.
		d.Control = func(_, address string, _ syscall.RawConn) error {
			h, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip, err := netip.ParseAddr(h)
			if err != nil {
				return &refusedError{host: host, why: "not an IP address: " + h}
			}
			return g.check(host, ip)
		}
	}
	return d.DialContext(ctx, network, addr)
}

func (g guard) check(host string, ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	why := special(ip)
	if why == "" || g.allow.addr(ip) {
		return nil
	}
	return &refusedError{host: host, ip: ip, why: why}
}

// special says why an untrusted webhook may not reach ip ("" if it may).
func special(ip netip.Addr) string {
	switch {
	case !ip.IsValid():
		return "invalid"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast():
		return "multicast"
	}
	nets := []struct {
		prefix string
		why    string
	}{
		{"0.0.0.0/8", "this-network"},
		{"100.64.0.0/10", "shared (carrier-grade NAT)"},
		{"192.0.0.0/24", "IETF protocol"},
		{"198.18.0.0/15", "benchmarking"},
		{"240.0.0.0/4", "reserved"},
		{"::/96", "IPv4-compatible"},
		{"100::/64", "discard-only"},
		{"fec0::/10", "site-local"},
	}
	for _, n := range nets {
		if netip.MustParsePrefix(n.prefix).Contains(ip) {
			return n.why
		}
	}
	// Addresses that embed an IPv4 address reach that address.
	b := ip.As16()
	switch {
	case ip.Is6() && netip.MustParsePrefix("64:ff9b::/96").Contains(ip): // NAT64
		return special(netip.AddrFrom4([4]byte(b[12:16])))
	case ip.Is6() && netip.MustParsePrefix("2002::/16").Contains(ip): // 6to4
		return special(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return ""
}

// refusedError is an untrusted webhook's address refused at dial time.
type refusedError struct {
	host string
	ip   netip.Addr
	why  string
}

func (e *refusedError) Error() string {
	target := e.host
	if e.ip.IsValid() && e.ip.String() != e.host {
		target += " (" + e.ip.String() + ")"
	}
	return fmt.Sprintf("refused to connect to %s: %s address; a webhook from a job submitted over HTTP may reach it only if hooks.allow lists it", target, e.why)
}
