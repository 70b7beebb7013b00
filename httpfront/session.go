package httpfront

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// A browser cannot send a bearer header with a link, so the dashboard
// trades the token for a cookie: /ui?token=T checks T, sets the session
// cookie and redirects to /ui, so the token leaves the address bar and the
// browser's history. The cookie holds no token, only an HMAC of the
// token's hash under the spool's secret: it works for every front on the
// spool, survives restarts, and stops working when its token is removed
// from the configuration. It is HttpOnly and SameSite=Strict. A request
// that changes anything and is let in by the cookie must also carry the
// CSRF header, whose value only a page the front served knows.
const (
	sessionCookie = "hopper_session"
	csrfHeader    = "X-Hopper-CSRF"
	sessionMaxAge = 30 * 24 * time.Hour
)

// sessionFor is the cookie value of the session token tok opens.
func (s *Server) sessionFor(tok [32]byte) string {
	return s.sp.Sign("http session", hex.EncodeToString(tok[:]))
}

// checkToken reports whether tok is one of the front's tokens.
func (s *Server) checkToken(tok string) ([32]byte, bool) {
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := 0
	for i := range s.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], s.tokens[i][:])
	}
	return sum, match == 1
}

// session returns the request's session cookie when it is valid.
func (s *Server) session(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", false
	}
	match := 0
	for _, t := range s.tokens {
		match |= subtle.ConstantTimeCompare([]byte(c.Value), []byte(s.sessionFor(t)))
	}
	return c.Value, match == 1
}

// CSRF returns the value a page served to r must send in the CSRF header
// with requests that change anything: "" when r did not come in with a
// session cookie (no tokens are set, or it sent a bearer token).
func (s *Server) CSRF(r *http.Request) string {
	v, ok := s.session(r)
	if !ok {
		return ""
	}
	return s.sp.Sign("http csrf", v)
}

// safeMethod reports whether a request's method only reads.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// authorizeSession lets in a request that carries no Authorization header
// but a valid session cookie; one that changes anything must carry the
// CSRF header too. handled is false when the request has no cookie.
func (s *Server) authorizeSession(r *http.Request) (handled bool, e *httpError) {
	v, ok := s.session(r)
	if !ok {
		return false, nil
	}
	if !safeMethod(r.Method) {
		want := s.sp.Sign("http csrf", v)
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(want)) != 1 {
			return true, errorf(http.StatusForbidden, "missing or wrong %s header: reload the dashboard page", csrfHeader)
		}
	}
	return true, nil
}

// login serves /ui?token=T: a valid token sets the session cookie and
// redirects to the same page without the token; a wrong one gets the
// sign-in page with a 401.
func (s *Server) login(w http.ResponseWriter, r *http.Request) bool {
	tok := r.URL.Query().Get("token")
	if tok == "" || !strings.HasPrefix(r.URL.Path, "/ui") || !safeMethod(r.Method) {
		return false
	}
	sum, ok := s.checkToken(tok)
	if !ok {
		s.log.Info("http: dashboard sign-in with a wrong token", "remote", r.RemoteAddr)
		s.signIn(w, "That token is not one of this hopper's tokens.")
		return true
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.sessionFor(sum), Path: "/",
		MaxAge: int(sessionMaxAge / time.Second), HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode})
	u := *r.URL
	q := u.Query()
	q.Del("token")
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
	return true
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,"><title>hopper: sign in</title>
<style>body{font:16px system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em}code{background:#eee;padding:0 .2em}</style>
</head><body><h1>hopper</h1>
{{if .}}<p><strong>{{.}}</strong></p>{{end}}
<p>This dashboard needs one of the tokens in hopper's configuration (<code>tokens</code> in hopper.yaml, or <code>HOPPER_TOKENS</code>).
Open <code>/ui?token=YOUR_TOKEN</code> once; the browser then keeps a session cookie and the token leaves the address bar.</p>
</body></html>
`))

// signIn answers 401 with the sign-in page: no job data.
func (s *Server) signIn(w http.ResponseWriter, why string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Www-Authenticate", `Bearer realm="hopper"`)
	w.WriteHeader(http.StatusUnauthorized)
	_ = signInPage.Execute(w, why)
}

// isUI reports whether path is the dashboard's.
func isUI(path string) bool { return path == "/ui" || strings.HasPrefix(path, "/ui/") }
