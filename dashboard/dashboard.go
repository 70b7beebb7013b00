package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/spool"
)

// Config is what the dashboard reads and how.
type Config struct {
	Spool   *spool.Spool
	Catalog *spool.Catalog
	// CSRF returns the value the page must send in the X-Hopper-CSRF
	// header with requests that change anything ("" when none is needed).
	CSRF   func(*http.Request) string
	Logger *slog.Logger
	Now    func() time.Time
	// Done, when closed, ends every event stream at once (the front's
	// shutdown); nil: streams end only with their requests.
	Done <-chan struct{}
}

// Timing of the event streams. Tests shorten them.
type timing struct {
	minGap    time.Duration // between two snapshots of one stream (≤ 2/s)
	refresh   time.Duration // a snapshot even when no job changed: targets, clocks
	heartbeat time.Duration // a comment line, so proxies keep the stream open
	flush     time.Duration // how often live tokens are sent
	cacheTTL  time.Duration // how long an unchanged snapshot is shared
	batchTTL  time.Duration // how long the batch list is reused
}

var defaultTiming = timing{
	minGap:    500 * time.Millisecond,
	refresh:   5 * time.Second,
	heartbeat: 15 * time.Second,
	flush:     250 * time.Millisecond,
	cacheTTL:  time.Second,
	batchTTL:  2 * time.Second,
}

// maxStreams bounds the event streams open at once; each costs a few
// goroutines and a snapshot now and then.
const maxStreams = 64

// Handler serves the dashboard under /ui: the page, its data as JSON,
// its event stream and its script and style sheet.
type Handler struct {
	cfg     Config
	t       timing
	mux     *http.ServeMux
	page    *template.Template
	assets  map[string]asset
	streams chan struct{} // a slot per open event stream

	mu      sync.Mutex // guards the caches below; held while one is rebuilt
	snap    *Snapshot
	snapC   <-chan struct{} // the catalog's Changed channel when snap was built
	snapT   time.Time
	bat     []*batch.Record
	batT    time.Time
	batE    string
	batCost time.Duration // how long listing them took last
	// batRunning is set while a goroutine lists the batches again.
	batRunning bool
}

//go:embed static
var static embed.FS

// asset is one embedded file served under /ui/.
type asset struct {
	body    []byte
	ctype   string
	version string // a hash of body: the ?v= the page links it with
}

// New returns the dashboard's handler, to be mounted at /ui and /ui/.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CSRF == nil {
		cfg.CSRF = func(*http.Request) string { return "" }
	}
	h := &Handler{cfg: cfg, t: defaultTiming, streams: make(chan struct{}, maxStreams),
		assets: map[string]asset{}}
	for _, name := range []string{"app.js", "style.css"} {
		body, err := fs.ReadFile(static, "static/"+name)
		if err != nil {
			panic(err) // embedded: cannot happen
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(name[strings.LastIndexByte(name, '.'):])
		h.assets[name] = asset{body: body, ctype: ctype, version: hex.EncodeToString(sum[:6])}
	}
	h.page = template.Must(template.New("page.html").Funcs(h.funcs()).ParseFS(static, "static/page.html"))

	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET /ui", h.serveUI)
	h.mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "../ui")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
	h.mux.HandleFunc("GET /ui/data.json", h.serveData)
	h.mux.HandleFunc("GET /ui/events", h.serveEvents)
	h.mux.HandleFunc("GET /ui/{asset}", h.serveAsset)
	return h
}

// ServeHTTP serves the dashboard with its security headers: no inline
// script or style, no framing, nothing sniffed, no referrer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// pageData is what the page template renders.
type pageData struct {
	*Snapshot
	CSRF string
	JS   string // the script's and style sheet's URLs, versioned
	CSS  string
}

// serveUI serves the page, or its data as JSON to a client that asks for
// JSON rather than HTML.
func (h *Handler) serveUI(w http.ResponseWriter, r *http.Request) {
	if wantsJSON(r) {
		h.serveData(w, r)
		return
	}
	snap := h.snapshot()
	var buf bytes.Buffer
	err := h.page.Execute(&buf, pageData{Snapshot: snap, CSRF: h.cfg.CSRF(r),
		JS:  "ui/app.js?v=" + h.assets["app.js"].version,
		CSS: "ui/style.css?v=" + h.assets["style.css"].version})
	if err != nil {
		h.cfg.Logger.Error("dashboard: render the page", "err", err)
		http.Error(w, "the dashboard page could not be rendered; the log says why", http.StatusInternalServerError)
		return
	}
	writeView(w, "text/html; charset=utf-8", buf.Bytes())
}

// writeView writes body, the page or its data, as contentType: never
// cached, and varying with Accept, since both are served at the same path.
func writeView(w http.ResponseWriter, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Vary", "Accept")
	_, _ = w.Write(body)
}

// wantsJSON reports whether the request's Accept header prefers JSON to
// HTML.
func wantsJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}

// serveData serves the snapshot as JSON.
func (h *Handler) serveData(w http.ResponseWriter, r *http.Request) {
	data, err := json.Marshal(h.snapshot())
	if err != nil {
		h.cfg.Logger.Error("dashboard: encode the data", "err", err)
		http.Error(w, "the dashboard data could not be encoded", http.StatusInternalServerError)
		return
	}
	writeView(w, "application/json", append(data, '\n'))
}

// serveAsset serves the script or style sheet. The page links them with
// their hash, so a linked version may be cached for good.
func (h *Handler) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := h.assets[r.PathValue("asset")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	if r.URL.Query().Get("v") == a.version {
		w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	_, _ = w.Write(a.body)
}
