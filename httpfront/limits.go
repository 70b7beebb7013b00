package httpfront

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// bodyBudget counts the request body bytes held in memory by every
// request together, up to a limit (Config.BodyBudget): a weighted
// semaphore that never waits, since a request that does not fit is
// answered 503 at once.
type bodyBudget struct {
	mu         sync.Mutex
	used, size int64
}

// take reserves n bytes, or reports false if they do not fit.
func (b *bodyBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.size {
		return false
	}
	b.used += n
	return true
}

// give returns n bytes taken before.
func (b *bodyBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// pollLimit bounds the requests that follow a job without having queued
// it — long-polls and output streams — in all and per client address, so
// they can never take the slots of drop-in requests.
type pollLimit struct {
	mu        sync.Mutex
	total     int
	max       int
	perClient int
	clients   map[string]int
}

func newPollLimit(max, perClient int) *pollLimit {
	return &pollLimit{max: max, perClient: perClient, clients: map[string]int{}}
}

// take takes a slot for the client at remoteAddr, or says why not: 429
// when that client has its share, 503 when every slot is taken. release
// gives the slot back.
func (p *pollLimit) take(remoteAddr string) (release func(), e *httpError) {
	key := clientKey(remoteAddr)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.clients[key] >= p.perClient:
		e := errorf(http.StatusTooManyRequests, "this client already has %d long-polls and output streams open (max_pollers_per_ip); close one or try again shortly", p.perClient)
		e.header = http.Header{"Retry-After": {"1"}}
		return nil, e
	case p.total >= p.max:
		e := errorf(http.StatusServiceUnavailable, "too many long-polls and output streams are open (max_pollers is %d); try again shortly", p.max)
		e.header = http.Header{"Retry-After": {"1"}}
		return nil, e
	}
	p.total++
	p.clients[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			p.total--
			if p.clients[key]--; p.clients[key] <= 0 {
				delete(p.clients, key)
			}
			p.mu.Unlock()
		})
	}, nil
}

// clientKey names the client a remote address belongs to: its IP, or for
// IPv6 its /64, which one machine usually has to itself.
func clientKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// busyBodies is the answer when the body budget is spent.
func (s *Server) busyBodies(r *http.Request) *httpError {
	msg := fmt.Sprintf("too many large request bodies are being received at once (body_budget is %d bytes); try again shortly", s.cfg.BodyBudget)
	if isDropIn(r.URL.Path) {
		msg = msgBusy // Ollama's words for a full server
	}
	return &httpError{status: http.StatusServiceUnavailable, msg: msg, header: http.Header{"Retry-After": {"1"}}}
}
