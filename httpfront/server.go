package httpfront

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/hopper-dev/hopper/batch"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/dashboard"
	"github.com/hopper-dev/hopper/hooks"
	"github.com/hopper-dev/hopper/spool"
)

// Server is the HTTP front of one spool. Its handler is safe for
// concurrent use.
type Server struct {
	cfg     Config
	sp      *spool.Spool
	batches *batch.Store
	log     *slog.Logger
	target  *url.URL
	tokens  [][32]byte // sha256 of each token, compared in constant time
	handler http.Handler
	proxy   http.Handler
	hub     *hub
	keys    *keyStore
	// frontID names this front in the drop-in jobs it writes
	// (spool.SubmitOptions.Waited); releaseFront lets go of it.
	frontID      string
	releaseFront func()
	metrics      *metrics
	catalog      *spool.Catalog // every job, for listing, counting and placing
	waiters      chan struct{}  // a slot per request waiting on a job it queued
	pollers      *pollLimit     // long-polls and output streams
	bodies       bodyBudget     // request body bytes held in memory
	browser      *browserPolicy
	webhook      *hooks.URLPolicy

	succeeded succeededSizes // of the batch outputs served as OpenAI output files

	// quit is closed when shutdown begins: long-polls and output streams
	// answer at once.
	quit     chan struct{}
	quitOnce sync.Once

	inflight sync.WaitGroup // handlers running, so Serve can wait for them
	stop     context.CancelFunc
	bg       sync.WaitGroup // the hub and the key sweeper
	close    sync.Once
}

// New checks cfg and returns a Server. It starts watching the spool; Close
// (or the end of Serve) stops that.
func New(cfg Config) (*Server, error) {
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	target, _ := targetURL(cfg.Target)
	s := &Server{
		cfg:     cfg,
		sp:      cfg.Spool,
		batches: batch.New(cfg.Spool),
		log:     cfg.Logger,
		target:  target,
		waiters: make(chan struct{}, cfg.MaxWaiters),
		pollers: newPollLimit(cfg.MaxPollers, cfg.MaxPollersPerIP),
		bodies:  bodyBudget{size: cfg.BodyBudget},
		quit:    make(chan struct{}),
	}
	s.browser = newBrowserPolicy(&s.cfg)
	s.webhook, _ = hooks.NewURLPolicy(cfg.WebhookAllow) // Validate parsed it
	for _, t := range cfg.Tokens {
		s.tokens = append(s.tokens, sha256.Sum256([]byte(t)))
	}
	// The drop-in's jobs name this front: once it is gone, so are their
	// clients, and the runner does not run them for nobody. So do the
	// idempotency keys it claims.
	var err error
	if s.frontID, s.releaseFront, err = cfg.Spool.HoldFront(); err != nil {
		return nil, err
	}
	if s.keys, err = newKeyStore(cfg.Spool, s.frontID, cfg.Now); err != nil {
		s.releaseFront()
		return nil, err
	}
	if s.catalog, err = cfg.Spool.OpenCatalog(spool.CatalogOptions{Logger: s.log}); err != nil {
		s.releaseFront()
		return nil, err
	}
	s.metrics = newMetrics(s)
	s.proxy = s.newProxy()
	s.handler = s.routes()
	s.hub = newHub(cfg.Spool, s.log, s.landed)

	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.bg.Add(2)
	go func() {
		defer s.bg.Done()
		s.hub.run(ctx)
	}()
	go func() {
		defer s.bg.Done()
		s.sweepKeys(ctx)
	}()
	return s, nil
}

// Handler returns the front's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops watching the spool. It does not close the spool. It is safe
// to call twice.
func (s *Server) Close() error {
	s.close.Do(func() {
		s.beginShutdown()
		s.stop()
		s.bg.Wait()
		s.catalog.Close()
		s.releaseFront()
	})
	return nil
}

func (s *Server) beginShutdown() { s.quitOnce.Do(func() { close(s.quit) }) }

// ListenAndServe listens on cfg.Addr and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http front: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully:
// it stops accepting, ends long-polls and output streams at once, lets
// drop-in requests finish for up to ShutdownGrace, then closes the
// connections still open (which cancels their jobs). It closes ln and the
// Server before it returns. It refuses a listener other machines can reach
// when no tokens are set.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.Close()
	if len(s.tokens) == 0 && !loopbackListener(ln.Addr()) {
		ln.Close()
		return &ConfigError{Field: "http", Reason: fmt.Sprintf("%s is not a loopback address; set tokens to serve it", ln.Addr()), Err: ErrInsecure}
	}
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("http front listening", "addr", ln.Addr().String(), "auth", len(s.tokens) > 0)
	select {
	case err := <-errc:
		return fmt.Errorf("http front: %w", err)
	case <-ctx.Done():
	}
	s.beginShutdown()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("http front: grace is over; closing the connections still open", "err", err)
		cancelBase()
		srv.Close()
	}
	<-errc
	s.inflight.Wait()
	return nil
}

// routes builds the handler: auth and accounting around a ServeMux.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.metrics.handler())

	mux.HandleFunc("POST /jobs", s.submitJob)
	mux.HandleFunc("GET /jobs", s.listJobs)
	mux.HandleFunc("GET /jobs/{id}", s.getJob)
	mux.HandleFunc("GET /jobs/{id}/out", s.jobOutput)
	mux.HandleFunc("DELETE /jobs/{id}", s.cancelJob)
	mux.HandleFunc("POST /jobs/{id}/retry", s.jobAction("retry", (*spool.Spool).Retry))
	mux.HandleFunc("POST /jobs/{id}/hold", s.jobAction("hold", (*spool.Spool).Hold))
	mux.HandleFunc("POST /jobs/{id}/release", s.jobAction("release", (*spool.Spool).Release))
	mux.HandleFunc("POST /pause", s.pauseState(true))
	mux.HandleFunc("POST /resume", s.pauseState(false))
	mux.HandleFunc("GET /functions", s.listFunctions)
	mux.HandleFunc("POST /functions/{name}", s.invokeFunction)

	mux.HandleFunc("POST /v1/files", s.uploadFile)
	mux.HandleFunc("GET /v1/files", s.listFiles)
	mux.HandleFunc("GET /v1/files/{id}", s.getFile)
	mux.HandleFunc("DELETE /v1/files/{id}", s.deleteFile)
	mux.HandleFunc("GET /v1/files/{id}/content", s.fileContent)
	mux.HandleFunc("POST /v1/batches", s.createBatch)
	mux.HandleFunc("GET /v1/batches", s.listBatches)
	mux.HandleFunc("GET /v1/batches/{id}", s.getBatch)
	mux.HandleFunc("POST /v1/batches/{id}/cancel", s.cancelBatch)

	ui := dashboard.New(dashboard.Config{Spool: s.sp, Catalog: s.catalog, CSRF: s.CSRF, Logger: s.log, Now: s.cfg.Now, Done: s.quit})
	mux.Handle("/ui", ui)
	mux.Handle("/ui/", ui)

	for path, endpoint := range dropInPaths {
		mux.Handle("POST "+path, s.dropIn(endpoint))
	}

	for _, p := range []string{"GET /{$}", "GET /api/tags", "GET /api/ps", "GET /api/version",
		"GET /v1/models", "GET /v1/models/{model...}", "POST /api/show"} {
		mux.HandleFunc(p, s.proxied)
	}
	// Model management, so `ollama pull`, `cp`, `rm`, `create` and `push`
	// work through the front: passed to the target as they are, progress
	// streamed back; blobs (model files) without the body limit.
	for _, p := range []string{"POST /api/pull", "POST /api/push", "POST /api/create", "POST /api/copy",
		"DELETE /api/delete"} {
		mux.HandleFunc(p, s.proxied)
	}
	for _, p := range []string{"HEAD /api/blobs/{digest}", "POST /api/blobs/{digest}"} {
		mux.HandleFunc(p, s.proxy.ServeHTTP)
	}
	return s.guard(mux)
}

// guard wraps every request: it counts it in flight, applies the Host
// and Origin rules (and answers CORS preflights), checks the bearer token
// (all but /healthz), and logs it.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		start := time.Now()
		if done, e := s.checkBrowser(w, r); done || e != nil {
			if e != nil {
				writeError(w, r, e)
				s.log.Info("http: refused a browser request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr,
					"host", r.Host, "origin", r.Header.Get("Origin"), "why", e.msg)
			}
			return
		}
		if len(s.tokens) > 0 && s.login(w, r) {
			return
		}
		if r.URL.Path != "/healthz" {
			if e := s.authorize(r); e != nil {
				if e.status == http.StatusUnauthorized && isUI(r.URL.Path) {
					s.signIn(w, "")
				} else {
					writeError(w, r, e)
				}
				s.log.Info("http: unauthorized", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "why", e.msg)
				return
			}
		}
		next.ServeHTTP(w, r)
		s.log.Debug("http", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "took", time.Since(start))
	})
}

// authorize checks the bearer token when tokens are set, or the
// dashboard's session cookie (see session.go) when no Authorization
// header is sent.
func (s *Server) authorize(r *http.Request) *httpError {
	if len(s.tokens) == 0 {
		return nil
	}
	unauthorized := func(msg, challenge string) *httpError {
		return &httpError{status: http.StatusUnauthorized, msg: msg, code: "invalid_api_key",
			header: http.Header{"Www-Authenticate": {challenge}}}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		if handled, e := s.authorizeSession(r); handled {
			return e
		}
		return unauthorized("missing bearer token: send the header 'Authorization: Bearer <token>'", `Bearer realm="hopper"`)
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return unauthorized("the Authorization header is not a bearer token: send 'Authorization: Bearer <token>'", `Bearer realm="hopper", error="invalid_request"`)
	}
	if _, ok := s.checkToken(tok); !ok {
		return unauthorized("invalid bearer token", `Bearer realm="hopper", error="invalid_token"`)
	}
	return nil
}

// acquire takes a slot for a request waiting on a job it queued; false
// means the front is at MaxWaiters.
func (s *Server) acquire() bool {
	select {
	case s.waiters <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) release() { <-s.waiters }

// busy is the answer when no waiter slot is free.
func (s *Server) busy(r *http.Request) *httpError {
	msg := fmt.Sprintf("too many requests are waiting on the jobs they queued (max_waiters is %d); try again shortly", s.cfg.MaxWaiters)
	if isDropIn(r.URL.Path) {
		msg = msgBusy // Ollama's own words for a full queue
	}
	return &httpError{status: http.StatusServiceUnavailable, msg: msg, header: http.Header{"Retry-After": {"1"}}}
}

// acceptedTypes are the request content types taken as JSON. curl -d sends
// application/x-www-form-urlencoded and fetch() with a string text/plain,
// and Ollama reads the body as JSON whatever the header says.
var acceptedTypes = map[string]bool{
	"application/json":                  true,
	"text/json":                         true,
	"text/plain":                        true,
	"application/x-www-form-urlencoded": true,
}

// reqBody is a request body read into memory, with room before it for the
// members hopper adds when it becomes a job (see rewriteObject) and one
// byte after it. Its bytes count against the body budget until release.
type reqBody struct {
	buf   []byte // front bytes of room, the body, one byte of room
	front int
	data  []byte // the body: buf[front : front+its length]
	held  int64  // taken from the budget: the room for the body
	s     *Server
}

// release gives the body's bytes back to the budget; the body must not be
// used after. It is safe to call twice.
func (b *reqBody) release() {
	if b.held > 0 {
		b.s.bodies.give(b.held)
		b.held = 0
	}
	b.buf, b.data = nil, nil
}

// grow makes room for n body bytes, taking the difference from the
// budget (which counts body bytes; the room around them is small and
// bounded); false means it is spent.
func (b *reqBody) grow(n int) bool {
	if !b.s.bodies.take(int64(n) - b.held) {
		return false
	}
	b.held = int64(n)
	buf := make([]byte, b.front+n+1)
	copy(buf, b.buf)
	b.buf = buf
	return true
}

// firstRead is the room a body of unknown length starts with.
const firstRead = 32 << 10

// readBody reads a request body within MaxBody and ReadTimeout, after
// checking its content type, with front bytes of room before it. A body
// whose length is known is read into a buffer of its size; one sent
// chunked into one that doubles. Its bytes are taken from the body budget
// first (503 when it is spent); the caller releases them.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, front int) (*reqBody, *httpError) {
	if r.ContentLength != 0 {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || !(acceptedTypes[mt] || strings.HasSuffix(mt, "+json")) {
				return nil, errorf(http.StatusUnsupportedMediaType, "unsupported Content-Type %q: send JSON (application/json)", ct)
			}
		}
	}
	limit := s.cfg.MaxBody
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	b := &reqBody{front: front, s: s}
	known := r.ContentLength >= 0
	want := int(min(limit+1, firstRead))
	if known {
		want = int(r.ContentLength)
	}
	if !b.grow(want) {
		return nil, s.busyBodies(r)
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
	defer rc.SetReadDeadline(time.Time{})
	n := 0 // body bytes read
	for {
		room := len(b.buf) - 1 - front
		if n == room {
			if known {
				break // the server reads no further than Content-Length
			}
			if int64(n) > limit {
				b.release()
				return nil, tooLarge(limit)
			}
			if !b.grow(int(min(2*int64(room), limit+1))) {
				b.release()
				return nil, s.busyBodies(r)
			}
			continue
		}
		m, err := r.Body.Read(b.buf[front+n : front+room])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.release()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, errorf(http.StatusRequestTimeout, "reading the request body took longer than %s", s.cfg.ReadTimeout)
			}
			return nil, errorf(http.StatusBadRequest, "reading the request body: %v", err)
		}
	}
	if int64(n) > limit {
		// The last chunk and EOF came together, one byte past the limit.
		b.release()
		return nil, tooLarge(limit)
	}
	b.data = b.buf[front : front+n]
	return b, nil
}

func tooLarge(limit int64) *httpError {
	return errorf(http.StatusRequestEntityTooLarge, "the request body is larger than the limit of %d bytes", limit)
}

// healthz answers 200 "ok" when every spool directory is there.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	for _, d := range spool.Dirs {
		if err := s.sp.CheckDir(d); err != nil {
			// No path or system words: /healthz needs no token.
			s.log.Warn("healthz: the spool is not whole", "dir", d, "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "the spool's %s/ directory is missing or unreadable\n", d)
			return
		}
	}
	io.WriteString(w, "ok\n")
}

// sweepKeys removes expired idempotency keys now and every hour.
func (s *Server) sweepKeys(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n := s.keys.sweep(); n > 0 {
			s.log.Debug("removed expired idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitContext is ctx ended also when shutdown begins, for requests that
// should answer at once then (long-polls, output streams).
func (s *Server) waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
