package ollamatest

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is a fake Ollama listening on a loopback port.
type Server struct {
	// URL is the base URL, "http://127.0.0.1:PORT". It stays the same
	// across Stop and Start.
	URL string

	tb     testing.TB
	cfg    config
	addr   string
	router map[string]route // by path

	serving  sync.WaitGroup // Serve loops of the current listener
	handlers sync.WaitGroup // requests in progress

	mu          sync.Mutex
	srv         *http.Server // nil while stopped
	gen         int          // bumped on every start, so stale connections are refused
	closed      bool
	models      []*modelState
	loads       int
	requests    []Request
	inFlight    int
	maxInFlight int
	faults      faults
	tokenDelay  time.Duration
	changed     chan struct{} // closed and replaced whenever the scheduler's state changes
	seq         int           // for OpenAI-style completion ids

	// The scheduler's queue and records.
	pending          []*pendingLoad // Ollama's pending queue, oldest first
	unloads          int
	waiting          int // requests in acquire without their load or slot yet
	running          int // requests holding a slot
	maxRunning       int
	modelsRunning    int // models with a request holding a slot
	maxModelsRunning int
}

// Request is one request the server received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	Time   time.Time // from the server's clock
}

// NewServer starts a fake Ollama on 127.0.0.1 and a free port, configured by
// opts. It is closed by tb.Cleanup.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	cfg := config{maxLoaded: 3, parallel: 1, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.models) == 0 {
		cfg.models = []Model{{Name: "tiny"}}
	}
	s := &Server{tb: tb, cfg: cfg, tokenDelay: cfg.tokenDelay, changed: make(chan struct{})}
	s.router = s.routes()
	now := cfg.now()
	for i, m := range cfg.models {
		// Distinct times keep /api/tags (newest first) in configuration order.
		s.models = append(s.models, newModelState(m, now.Add(-time.Duration(i)*time.Minute)))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("ollamatest: listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.URL = "http://" + s.addr
	s.serve(ln)
	tb.Cleanup(s.Close)
	return s
}

func (s *Server) serve(ln net.Listener) {
	s.mu.Lock()
	s.gen++
	gen := s.gen
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.handle(gen, w, r) }),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	s.srv = srv
	s.mu.Unlock()
	s.serving.Go(func() { _ = srv.Serve(ln) })
}

// Stop closes the listener and every connection, as if Ollama had exited:
// requests in progress fail, new connections are refused, and the models
// it held are no longer resident. It returns once all handlers are done.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	s.serving.Wait()
	s.handlers.Wait()
	s.mu.Lock()
	for _, st := range s.models {
		s.unloadLocked(st)
	}
	s.broadcastLocked()
	s.mu.Unlock()
}

// Start listens again on the same address after Stop, as a restarted Ollama
// would. It calls tb.Fatalf if the port cannot be had again, so call it from
// the test goroutine. Start on a running or closed server does nothing.
func (s *Server) Start() {
	s.tb.Helper()
	s.mu.Lock()
	idle := s.srv == nil && !s.closed
	s.mu.Unlock()
	if !idle {
		return
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.tb.Fatalf("ollamatest: listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// Close stops the server for good. It is safe to call more than once.
func (s *Server) Close() {
	s.Stop()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Requests returns every request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// RequestsTo returns how many requests were made to path.
func (s *Server) RequestsTo(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Path == path {
			n++
		}
	}
	return n
}

// Loads returns how many model loads have happened.
func (s *Server) Loads() int { return s.count(&s.loads) }

// LoadsOf returns how many times the named model was loaded; any name Ollama
// would match works ("tiny", "tiny:latest", "TINY").
func (s *Server) LoadsOf(model string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.lookupLocked(model); st != nil {
		return st.loads
	}
	return 0
}

// Resident returns the display names ("tiny:latest") of the models loaded
// now, sorted.
func (s *Server) Resident() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.cfg.now())
	var names []string
	for _, st := range s.models {
		if st.resident {
			names = append(names, st.display)
		}
	}
	slices.Sort(names)
	return names
}

// InFlight returns how many inference requests (chat, generate, embeddings,
// and their /v1 forms) are being handled now, including ones waiting for the
// model. Other endpoints are not counted.
func (s *Server) InFlight() int { return s.count(&s.inFlight) }

// MaxInFlight returns the largest InFlight seen so far.
func (s *Server) MaxInFlight() int { return s.count(&s.maxInFlight) }

// Waiting returns how many inference requests are waiting for their model
// now: for it to load, for a reload or an eviction that waits for other
// requests to end, for their turn in the scheduler's queue, or for a free
// slot. A test can wait for Waiting to reach a number to know that a
// request is held up.
func (s *Server) Waiting() int { return s.count(&s.waiting) }

// Serving returns how many inference requests hold a slot of their model
// now, that is, are running on it. Requests that only load or unload a
// model take no slot.
func (s *Server) Serving() int { return s.count(&s.running) }

// MaxServing returns the largest Serving seen so far: at most
// [WithParallel] per model.
func (s *Server) MaxServing() int { return s.count(&s.maxRunning) }

// MaxModelsInFlight returns the largest number of distinct models that were
// serving at least one request at the same time. A model reloaded with
// other options counts once: its reload waits for the earlier load's
// requests to end, so one model never serves under two loads at once.
func (s *Server) MaxModelsInFlight() int { return s.count(&s.maxModelsRunning) }

// count reads one of the server's counters under its lock.
func (s *Server) count(n *int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *n
}

func (s *Server) lookupLocked(name string) *modelState {
	if name == "" {
		return nil
	}
	key := keyOf(name)
	for _, st := range s.models {
		if st.key == key {
			return st
		}
	}
	return nil
}

func (s *Server) lookup(name string) *modelState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookupLocked(name)
}

// What Ollama answers for a model it does not have: the chat, generate and
// show handlers, and the embedding ones.
const (
	notFound       = "model '%s' not found"
	notFoundOrPull = "model %q not found, try pulling it first"
)

// findModel returns the model named name, or answers fail with a 404 whose
// message is the format notFound filled with the name, and returns nil.
func (s *Server) findModel(w http.ResponseWriter, name, notFound string, fail func(http.ResponseWriter, int, string)) *modelState {
	st := s.lookup(name)
	if st == nil {
		fail(w, http.StatusNotFound, fmt.Sprintf(notFound, name))
	}
	return st
}

// requireModel is findModel for the handlers that first refuse a request
// naming no model: 400, "model is required".
func (s *Server) requireModel(w http.ResponseWriter, name, notFound string, fail func(http.ResponseWriter, int, string)) *modelState {
	if name == "" {
		fail(w, http.StatusBadRequest, "model is required")
		return nil
	}
	return s.findModel(w, name, notFound, fail)
}

// handle records and routes one request.
func (s *Server) handle(gen int, w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.srv == nil || s.gen != gen {
		s.mu.Unlock()
		panic(http.ErrAbortHandler) // a connection of a stopped server
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away mid-body
	}
	rec := Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Time: s.cfg.now()}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()

	rt, ok := s.router[r.URL.Path]
	switch {
	case !ok:
		writeText(w, http.StatusNotFound, "404 page not found")
		return
	case !slices.Contains(rt.methods, r.Method):
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		writeText(w, http.StatusMethodNotAllowed, "405 method not allowed")
		return
	}
	if rt.inference {
		s.mu.Lock()
		s.inFlight++
		s.maxInFlight = max(s.maxInFlight, s.inFlight)
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight--
			s.mu.Unlock()
		}()
	}
	rt.h(w, r, rec)
}

type handlerFunc func(http.ResponseWriter, *http.Request, Request)

// route is how the fake serves a path: the methods it allows, in the order
// gin lists them in a 405's Allow header (the order in which Ollama first
// registers a route of each method: HEAD, GET, POST), its handler, and
// whether its requests are inference ones.
type route struct {
	methods   []string
	h         handlerFunc
	inference bool
}

// routes maps the paths of the endpoints the fake serves to their routes,
// as Ollama's router (gin, with HandleMethodNotAllowed) does.
func (s *Server) routes() map[string]route {
	get, getOnly, post := []string{http.MethodHead, http.MethodGet}, []string{http.MethodGet}, []string{http.MethodPost}
	return map[string]route{
		"/":                    {get, s.handleRoot, false},
		"/api/version":         {get, s.handleVersion, false},
		"/api/tags":            {get, s.handleTags, false},
		"/api/ps":              {getOnly, s.handlePS, false},
		"/api/show":            {post, s.handleShow, false},
		"/api/chat":            {post, s.handleChat, true},
		"/api/generate":        {post, s.handleGenerate, true},
		"/api/embed":           {post, s.handleEmbed, true},
		"/api/embeddings":      {post, s.handleEmbeddings, true},
		"/v1/chat/completions": {post, s.handleOpenAIChat, true},
		"/v1/completions":      {post, s.handleOpenAICompletion, true},
		"/v1/embeddings":       {post, s.handleOpenAIEmbeddings, true},
		"/v1/models":           {getOnly, s.handleOpenAIModels, false},
	}
}
