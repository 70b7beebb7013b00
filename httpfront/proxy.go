package httpfront

import (
	"net/http"
	"net/http/httputil"
	"strings"
)

// newProxy builds the reverse proxy for the read-only endpoints, which
// the target answers itself: hopper's bearer token is not passed on, and
// the Host header becomes the target's, as Ollama checks it. The front has
// already judged the request's Origin, so it is not passed on either (the
// target would judge it by its own OLLAMA_ORIGINS), and the target's own
// CORS headers are dropped for the front's.
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
			pr.Out.Header.Del("Origin")
		},
		ModifyResponse: func(resp *http.Response) error {
			for k := range resp.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					resp.Header.Del(k)
				}
			}
			return nil
		},
		Transport: transport,
		// Pull and create stream their progress: pass each line on.
		FlushInterval: -1,
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
