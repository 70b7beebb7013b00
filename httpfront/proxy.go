package httpfront

import (
	"net/http"
	"net/http/httputil"
)

// newProxy builds the reverse proxy for the read-only endpoints, which
// the target answers itself: hopper's bearer token is not passed on, and
// the Host header becomes the target's, as Ollama checks it.
func (s *Server) newProxy() *httputil.ReverseProxy {
	transport := s.cfg.HTTPClient.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(s.target)
			if len(s.tokens) > 0 {
				pr.Out.Header.Del("Authorization")
			}
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("proxy to the target failed", "path", r.URL.Path, "target", s.target.String(), "err", err)
			writeError(w, r, errorf(http.StatusBadGateway, "cannot reach the Ollama target at %s: %v", s.target, err))
		},
	}
}

// proxied serves GET /, /api/tags, /api/ps, /api/version, /v1/models,
// /v1/models/{model} and POST /api/show from the target, unchanged.
func (s *Server) proxied(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.ContentLength != 0 {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	}
	s.proxy.ServeHTTP(w, r)
}
