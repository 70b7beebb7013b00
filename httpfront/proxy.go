package httpfront

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
)

// targetKey carries, in a request's context, the target the proxy sends
// it to when that is not the first (see withTarget).
type targetKey struct{}

// withTarget returns r to be proxied to t.
func withTarget(r *http.Request, t target) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), targetKey{}, t))
}

// newProxy builds the reverse proxy for the routes one target answers by
// itself: the first target, or the one withTarget chose. hopper's bearer
// token is not passed on, and the Host header becomes the target's, as
// Ollama checks it. The front has already judged the request's Origin, so
// it is not passed on either (the target would judge it by its own
// OLLAMA_ORIGINS), and the target's own CORS headers are dropped for the
// front's. Its transport sends blobs to every target (blobFan).
//
// It serves in full duplex: Ollama may answer a pull or create before the
// proxy has read the request body to its end, and a server that is not
// full duplex closes that body under the proxy, which breaks the answer
// off (the request body is sent while the answer streams back).
func (s *Server) newProxy() http.Handler {
	base := s.cfg.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	first := s.targets()[0]
	chosen := func(r *http.Request) target {
		if t, ok := r.Context().Value(targetKey{}).(target); ok {
			return t
		}
		return first
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(chosen(pr.In).url)
			s.stripForTarget(pr.Out.Header)
		},
		ModifyResponse: func(resp *http.Response) error {
			for k := range resp.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					resp.Header.Del(k)
				}
			}
			return nil
		},
		Transport: &blobFan{s: s, base: base, first: first},
		// Pull and create stream their progress: pass each line on.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var u unreachable
			if !errors.As(err, &u) {
				u = unreachable{{t: chosen(r), err: err}}
			}
			s.log.Warn("proxy to the target failed", "path", r.URL.Path, "err", u)
			writeError(w, r, errorf(http.StatusBadGateway, "%s", u.Error()))
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		rp.ServeHTTP(w, r)
	})
}

// proxied serves the Ollama routes the targets answer: GET /, /api/tags,
// /api/ps, /api/version, /v1/models, /v1/models/{model}, POST /api/show,
// and model management (POST /api/pull, /api/push, /api/create,
// /api/copy, DELETE /api/delete). With one target they pass through
// unchanged; with several see models.go.
func (s *Server) proxied(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/" {
		s.running(w)
		return
	}
	if r.Body != nil && r.ContentLength != 0 {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
	}
	ts := s.targets()
	switch p := r.URL.Path; {
	case p == "/api/pull" || p == "/api/create":
		s.progressOnEach(w, r, ts)
	case len(ts) == 1:
		s.proxy.ServeHTTP(w, r)
	case r.Method == http.MethodHead:
		s.firstUp(w, r, ts) // no body to merge
	case p == "/api/push":
		s.pushFromFirstHaving(w, r, ts)
	case p == "/api/copy" || p == "/api/delete":
		s.onEachHaving(w, r, ts)
	case p == "/api/tags" || p == "/api/ps" || p == "/v1/models":
		s.union(w, r, ts)
	case p == "/api/show" || strings.HasPrefix(p, "/v1/models/"):
		s.firstHaving(w, r, ts)
	default: // /api/version
		s.firstUp(w, r, ts)
	}
}

// running answers GET / as Ollama does. The front answers it itself, as
// it accepts work whether or not a target is up: clients such as the
// ollama CLI check it before every command, and then show the real error
// of the command rather than "502 Bad Gateway".
func (s *Server) running(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "Ollama is running")
}

// stripForTarget removes what is the front's own from a request passed to
// a target: hopper's bearer token (when tokens are set), the browser's
// Origin (the front judged it; the target would by its own OLLAMA_ORIGINS),
// and the dashboard's session cookie and CSRF header, which must never
// leave the front (Ollama uses no cookies).
func (s *Server) stripForTarget(h http.Header) {
	if len(s.tokens) > 0 {
		h.Del("Authorization")
	}
	h.Del("Origin")
	h.Del("Cookie")
	h.Del(csrfHeader)
}
