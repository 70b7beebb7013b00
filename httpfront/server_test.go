package httpfront_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/httpfront"
	"github.com/hopper-dev/hopper/spool"
)

func TestAuth(t *testing.T) {
	f := startFront(t, newSpool(t), func(c *httpfront.Config) { c.Tokens = []string{"s3cret", "other"} })
	tests := []struct {
		name, method, path, auth string
		status                   int
		challenge                string
	}{
		{"NoTokenIs401", "GET", "/jobs", "", 401, `Bearer realm="hopper"`},
		{"AWrongTokenIs401", "GET", "/jobs", "Bearer nope", 401, `error="invalid_token"`},
		{"BasicAuthIs401", "GET", "/jobs", "Basic czNjcmV0Og==", 401, `error="invalid_request"`},
		{"TheDropInNeedsAToken", "POST", "/api/chat", "", 401, "Bearer"},
		{"MetricsNeedAToken", "GET", "/metrics", "", 401, "Bearer"},
		{"ATokenIsAccepted", "GET", "/jobs", "Bearer s3cret", 200, ""},
		{"AnyConfiguredTokenIsAccepted", "GET", "/jobs", "bearer other", 200, ""},
		{"HealthzNeedsNoToken", "GET", "/healthz", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var header []string
			if tt.auth != "" {
				header = []string{"Authorization", tt.auth}
			}
			resp, body := call(t, tt.method, f.URL+tt.path, chatJob, header...)
			if resp.StatusCode != tt.status {
				t.Errorf("got %d %s, want %d", resp.StatusCode, body, tt.status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, tt.challenge) || (tt.challenge == "" && got != "") {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.challenge)
			}
			if tt.status == 401 && !strings.Contains(decode[ollamaError](t, body).Error, "token") {
				t.Errorf("body: got %s, want a reason", body)
			}
		})
	}
	t.Run("V1AnswersInOpenAIsShape", func(t *testing.T) {
		resp, body := call(t, "POST", f.URL+"/v1/chat/completions", chatJob, "Authorization", "Bearer nope")
		e := decode[openaiError](t, body)
		if resp.StatusCode != 401 || e.Error.Message != "invalid bearer token" || string(e.Error.Code) != `"invalid_api_key"` {
			t.Errorf("got %d %s", resp.StatusCode, body)
		}
	})
}

func TestNoTokensOnlyOnLoopback(t *testing.T) {
	sp := newSpool(t)
	tests := []struct {
		addr   string
		tokens []string
		ok     bool
	}{
		{"127.0.0.1:11435", nil, true},
		{"localhost:11435", nil, true},
		{"[::1]:11435", nil, true},
		{"0.0.0.0:11435", nil, false},
		{":11435", nil, false},
		{"192.0.2.7:11435", nil, false},
		{"example.com:11435", nil, false},
		{"0.0.0.0:11435", []string{"t"}, true},
	}
	for _, tt := range tests {
		srv, err := httpfront.New(httpfront.Config{Spool: sp, Addr: tt.addr, Tokens: tt.tokens})
		if tt.ok != (err == nil) {
			t.Errorf("New(%s, %d tokens): got %v, want ok=%v", tt.addr, len(tt.tokens), err, tt.ok)
		}
		if err == nil {
			srv.Close()
			continue
		}
		var ce *httpfront.ConfigError
		if !errors.Is(err, httpfront.ErrInsecure) || !errors.As(err, &ce) || ce.Field != "http" {
			t.Errorf("New(%s): got %v, want a ConfigError for http wrapping ErrInsecure", tt.addr, err)
		}
	}
	t.Run("ServeRefusesAPublicListener", func(t *testing.T) {
		srv, err := httpfront.New(httpfront.Config{Spool: sp})
		if err != nil {
			t.Fatal(err)
		}
		ln := &fakeListener{addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 11435}}
		if err := srv.Serve(context.Background(), ln); !errors.Is(err, httpfront.ErrInsecure) {
			t.Errorf("got %v, want ErrInsecure", err)
		}
		if !ln.closed {
			t.Error("the listener was left open")
		}
	})
	t.Run("OtherSettingsAreChecked", func(t *testing.T) {
		bad := []struct {
			cfg   httpfront.Config
			field string
		}{
			{httpfront.Config{}, "spool"},
			{httpfront.Config{Spool: sp, Tokens: []string{""}}, "tokens[0]"},
			{httpfront.Config{Spool: sp, Target: "ftp://x"}, "ollama"},
			{httpfront.Config{Spool: sp, MaxBody: -1}, "max_body"},
		}
		for _, b := range bad {
			_, err := httpfront.New(b.cfg)
			var ce *httpfront.ConfigError
			if !errors.As(err, &ce) || ce.Field != b.field {
				t.Errorf("got %v, want a ConfigError for %s", err, b.field)
			}
		}
	})
}

type fakeListener struct {
	addr   net.Addr
	closed bool
}

func (l *fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l *fakeListener) Close() error              { l.closed = true; return nil }
func (l *fakeListener) Addr() net.Addr            { return l.addr }

func TestServeShutsDownGracefully(t *testing.T) {
	sp := newSpool(t)
	waits := make(chan string, 4)
	srv, err := httpfront.New(httpfront.WithHooks(httpfront.Config{Spool: sp}, func(id string) { waits <- id }, nil))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()

	id := submit(t, url, chatJob)
	polled := make(chan spool.State, 1)
	go func() {
		_, body := call(t, "GET", url+"/jobs/"+id+"?wait=5m", "")
		polled <- decode[spool.Record](t, body).State
	}()
	receive(t, waits, "the long-poll")
	stop()
	if st := receive(t, polled, "the long-poll to answer at shutdown"); st != spool.StateQueued {
		t.Errorf("long-poll: got %s, want queued", st)
	}
	if err := receive(t, served, "Serve to return"); err != nil {
		t.Errorf("Serve: got %v, want nil", err)
	}
}

func TestHealthz(t *testing.T) {
	f := startFront(t, newSpool(t))
	resp, body := call(t, "GET", f.URL+"/healthz", "")
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("got %d %q, want 200 ok", resp.StatusCode, body)
	}
}

func TestProxiedEndpointsReachTheTargetUnchanged(t *testing.T) {
	type seen struct {
		method, path, auth, body string
	}
	var mu sync.Mutex
	var got []seen
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), string(b)})
		mu.Unlock()
		switch r.URL.Path {
		case "/":
			io.WriteString(w, "Ollama is running")
		case "/api/show":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"model 'x' not found"}`)
		default:
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			io.WriteString(w, `{"path":"`+r.URL.Path+`"}`)
		}
	}))
	defer upstream.Close()
	f := startFront(t, newSpool(t), func(c *httpfront.Config) {
		c.Target = upstream.URL
		c.Tokens = []string{"tok"}
	})
	auth := []string{"Authorization", "Bearer tok"}
	tests := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/", "", 200, "Ollama is running"},
		{"HEAD", "/", "", 200, ""},
		{"GET", "/api/tags", "", 200, `{"path":"/api/tags"}`},
		{"GET", "/api/ps", "", 200, `{"path":"/api/ps"}`},
		{"GET", "/api/version", "", 200, `{"path":"/api/version"}`},
		{"GET", "/v1/models", "", 200, `{"path":"/v1/models"}`},
		{"GET", "/v1/models/llama3.2:latest", "", 200, `{"path":"/v1/models/llama3.2:latest"}`},
		{"POST", "/api/show", `{"model":"x"}`, 404, `{"error":"model 'x' not found"}`},
	}
	for _, tt := range tests {
		resp, body := call(t, tt.method, f.URL+tt.path, tt.body, auth...)
		if resp.StatusCode != tt.status || string(body) != tt.want {
			t.Errorf("%s %s: got %d %q, want %d %q", tt.method, tt.path, resp.StatusCode, body, tt.status, tt.want)
		}
	}
	mu.Lock()
	for _, s := range got {
		if s.auth != "" {
			t.Errorf("%s %s: the target got Authorization %q; hopper's token must not pass", s.method, s.path, s.auth)
		}
		if s.path == "/api/show" && s.body != `{"model":"x"}` {
			t.Errorf("/api/show body: got %q", s.body)
		}
	}
	mu.Unlock()
	// Model management goes to the target too, so the ollama CLI's pull,
	// cp, rm, create and push work through the front.
	for _, mm := range []struct{ method, path string }{
		{"POST", "/api/pull"}, {"POST", "/api/push"}, {"POST", "/api/create"}, {"POST", "/api/copy"},
		{"DELETE", "/api/delete"}, {"POST", "/api/blobs/sha256:abc"},
	} {
		resp, body := call(t, mm.method, f.URL+mm.path, `{"model":"x"}`, auth...)
		if resp.StatusCode != 200 || string(body) != `{"path":"`+mm.path+`"}` {
			t.Errorf("%s %s: got %d %q, want it proxied", mm.method, mm.path, resp.StatusCode, body)
		}
	}
	// Unknown routes answer as Ollama's router does: 404, in plain text.
	if resp, body := call(t, "POST", f.URL+"/api/nosuch", `{}`, auth...); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "404 page not found") {
		t.Errorf("/api/nosuch: got %d %q, want 404 page not found", resp.StatusCode, body)
	}

	t.Run("ATargetThatIsDownIs502", func(t *testing.T) {
		down := startFront(t, newSpool(t), func(c *httpfront.Config) { c.Target = "http://127.0.0.1:1" })
		resp, body := call(t, "GET", down.URL+"/api/tags", "")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(decode[ollamaError](t, body).Error, "cannot reach") {
			t.Errorf("got %d %s, want 502", resp.StatusCode, body)
		}
	})
}

func TestMetrics(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"version":"0.17.4"}`)
	}))
	defer upstream.Close()
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) { c.Target = upstream.URL })
	runner := newFakeRunner(t, sp)
	submit(t, f.URL, `{"model":"m1","prompt":"a"}`)
	runner.next().start().done(`{"done":true}`)
	receive(t, f.landed, "the record to be observed")
	submit(t, f.URL, `{"model":"m1","prompt":"b"}`)
	if _, err := batch.New(sp).Submit(strings.NewReader(`{"model":"m1","prompt":"c"}`+"\n"), batch.Options{Name: "b1"}); err != nil {
		t.Fatal(err)
	}

	_, body := call(t, "GET", f.URL+"/metrics", "")
	for _, want := range []string{
		`hopper_jobs{state="queued"} 1`,
		`hopper_jobs{state="done"} 1`,
		`hopper_jobs{state="running"} 0`,
		`hopper_oldest_queued_job_age_seconds `,
		`hopper_job_duration_seconds_count{state="done"} 1`,
		`hopper_job_queue_wait_seconds_count 1`,
		`hopper_jobs_finished_total{error_kind="",state="done"} 1`,
		`hopper_model_loads_total{model="m1"} 1`,
		`hopper_target_up 1`,
		`hopper_paused 0`,
		`hopper_http_waiters 0`,
		`hopper_batches{state="validating"} 1`,
		`hopper_batches{state="completed"} 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(string(body), "hopper_cluster_") {
		t.Error("metrics of a host without a cluster speak of one")
	}
	t.Run("TheClusterAsServePublishedIt", func(t *testing.T) {
		if err := sp.PublishCluster(&spool.ClusterStatus{UpdatedAt: time.Now(), Name: "lab", Node: "gpu-a", Leader: "gpu-b", Quorum: true,
			Peers: []spool.ClusterPeer{{Name: "gpu-a", Up: true}, {Name: "gpu-b", Up: true, Leader: true}, {Name: "gpu-c"}},
			Depth: []spool.ClusterBacklog{{Priority: 5, Key: "llama3.2:latest", Count: 7}}}); err != nil {
			t.Fatal(err)
		}
		_, body := call(t, "GET", f.URL+"/metrics", "")
		for _, want := range []string{
			`hopper_cluster_quorum{cluster="lab",node="gpu-a"} 1`,
			`hopper_cluster_node_up{leader="true",node="gpu-b"} 1`,
			`hopper_cluster_node_up{leader="false",node="gpu-c"} 0`,
			`hopper_cluster_queued{key="llama3.2:latest",priority="5"} 7`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q", want)
			}
		}
	})
	t.Run("ATargetThatIsDownIsNotUp", func(t *testing.T) {
		down := startFront(t, newSpool(t), func(c *httpfront.Config) { c.Target = "http://127.0.0.1:1" })
		if _, body := call(t, "GET", down.URL+"/metrics", ""); !strings.Contains(string(body), "hopper_target_up 0") {
			t.Error("metrics lack hopper_target_up 0")
		}
	})
}
