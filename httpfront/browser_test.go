package httpfront_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/hopper-dev/hopper/httpfront"
)

// do sends req and returns the response with its body read.
func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(t, resp)
}

func newRequest(t *testing.T, method, url, body string, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// A page that rebinds its own name to 127.0.0.1 is same-origin with the
// front, so the front must refuse Host headers that do not name this
// machine.
func TestHostHeaderMustNameThisMachineOnLoopback(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) {
		c.Origins = []string{"https://hopper.example.org", "https://*.corp.example"}
	})
	_, port, _ := net.SplitHostPort(f.Listener.Addr().String())
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host   string
		status int
	}{
		{"rebound.attacker.example:" + port, 403},
		{"attacker.example", 403},
		{"localhost.attacker.example:" + port, 403},
		{"127.0.0.1.nip.io:" + port, 403},
		{"localhost:" + port, 200},
		{"LOCALHOST", 200},
		{"127.0.0.1:" + port, 200},
		{"[::1]:" + port, 200},
		{"app.localhost:" + port, 200},
		{hostname + ":" + port, 200},
		{"hopper.example.org", 200},
		{"chat.corp.example:" + port, 200},
	}
	for _, tt := range tests {
		req := newRequest(t, "GET", f.URL+"/jobs", "")
		req.Host = tt.host
		resp, body := do(t, req)
		if resp.StatusCode != tt.status {
			t.Errorf("Host %q: got %d %s, want %d", tt.host, resp.StatusCode, body, tt.status)
		}
		if tt.status == 403 && !strings.Contains(decode[ollamaError](t, body).Error, "Host") {
			t.Errorf("Host %q: got %s, want a reason naming the Host header", tt.host, body)
		}
	}
	t.Run("ARebindingPageCannotSubmit", func(t *testing.T) {
		for _, path := range []string{"/jobs", "/api/chat", "/v1/chat/completions"} {
			req := newRequest(t, "POST", f.URL+path, chatJob, "Content-Type", "text/plain")
			req.Host = "rebound.attacker.example:" + port
			if resp, body := do(t, req); resp.StatusCode != 403 {
				t.Errorf("POST %s: got %d %s, want 403", path, resp.StatusCode, body)
			}
		}
		if n := countFiles(t, sp, "new"); n != 0 {
			t.Errorf("jobs queued: got %d, want none", n)
		}
	})
}

// A front listening on a LAN address serves remote clients by whatever
// name they know it by: the Host check is for loopback only, as Ollama's.
func TestHostIsNotCheckedForRemoteClients(t *testing.T) {
	ip := lanAddress(t)
	srv, err := httpfront.New(httpfront.Config{Spool: newSpool(t), Tokens: []string{"tok"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		stop()
		receive(t, served, "Serve to return")
	}()
	req := newRequest(t, "GET", "http://"+ln.Addr().String()+"/jobs", "", "Authorization", "Bearer tok")
	req.Host = "hopper.lan:11435"
	if resp, body := do(t, req); resp.StatusCode != 200 {
		t.Errorf("got %d %s, want 200", resp.StatusCode, body)
	}
}

// lanAddress is an address of this machine that is not loopback.
func lanAddress(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address")
	return nil
}

func TestCrossOriginBrowserRequests(t *testing.T) {
	sp := newSpool(t)
	f := startFront(t, sp, func(c *httpfront.Config) {
		c.Origins = []string{"https://app.example.com", "https://*.corp.example"}
	})
	tests := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		allowOrigin              string // Access-Control-Allow-Origin wanted
	}{
		{"AFormPostFromAnotherSiteIsRefused", "POST", "/jobs", chatJob,
			[]string{"Origin", "https://attacker.example", "Content-Type", "application/x-www-form-urlencoded"}, 403, ""},
		{"TextPlainFromAnotherSiteIsRefused", "POST", "/api/chat", chatJob,
			[]string{"Origin", "https://attacker.example", "Content-Type", "text/plain"}, 403, ""},
		{"MultipartFromAnotherSiteIsRefused", "POST", "/v1/files", "--x--",
			[]string{"Origin", "https://attacker.example", "Content-Type", "multipart/form-data; boundary=x"}, 403, ""},
		{"ReadingFromAnotherSiteIsRefused", "GET", "/jobs", "",
			[]string{"Origin", "https://attacker.example"}, 403, ""},
		{"ASandboxedPageIsRefused", "POST", "/jobs", chatJob,
			[]string{"Origin", "null", "Content-Type", "text/plain"}, 403, ""},
		{"ACrossSiteRequestWithoutOriginIsRefused", "POST", "/jobs", chatJob,
			[]string{"Sec-Fetch-Site", "cross-site", "Content-Type", "text/plain"}, 403, ""},
		{"AConfiguredOriginIsAllowed", "POST", "/jobs", chatJob,
			[]string{"Origin", "https://app.example.com", "Content-Type", "text/plain"}, 202, "https://app.example.com"},
		{"AWildcardOriginIsAllowed", "GET", "/jobs", "",
			[]string{"Origin", "https://chat.corp.example"}, 200, "https://chat.corp.example"},
		{"OllamasDefaultLocalOriginsAreAllowed", "GET", "/jobs", "",
			[]string{"Origin", "http://localhost:5173"}, 200, "http://localhost:5173"},
		{"ABrowserExtensionIsAllowedAsByOllama", "GET", "/jobs", "",
			[]string{"Origin", "chrome-extension://abcdefghijklmnop"}, 200, "chrome-extension://abcdefghijklmnop"},
		{"TheFrontsOwnPagesAreAllowed", "POST", "/jobs", chatJob,
			[]string{"Origin", "", "Content-Type", "application/json"}, 202, "self"},
		{"CurlIsUnaffected", "POST", "/jobs", chatJob,
			[]string{"Content-Type", "application/x-www-form-urlencoded"}, 202, ""},
		{"ASameOriginFetchWithoutOriginIsUnaffected", "POST", "/jobs", chatJob,
			[]string{"Sec-Fetch-Site", "same-origin", "Content-Type", "text/plain"}, 202, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			want := tt.allowOrigin
			if want == "self" {
				header, want = []string{"Origin", f.URL, header[2], header[3]}, f.URL
			}
			before := countFiles(t, sp, "new")
			resp, body := call(t, tt.method, f.URL+tt.path, tt.body, header...)
			if resp.StatusCode != tt.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, body, tt.status)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
				t.Errorf("Access-Control-Allow-Origin: got %q, want %q", got, want)
			}
			if tt.status == 403 {
				if n := countFiles(t, sp, "new"); n != before {
					t.Errorf("a refused request queued a job")
				}
				var msg string
				if strings.HasPrefix(tt.path, "/v1/") {
					msg = decode[openaiError](t, body).Error.Message
				} else {
					msg = decode[ollamaError](t, body).Error
				}
				if !strings.Contains(msg, "origins") {
					t.Errorf("got %s, want a reason that names the origins setting", body)
				}
			}
			if want != "" && !strings.Contains(resp.Header.Get("Vary"), "Origin") {
				t.Errorf("Vary: got %q, want Origin", resp.Header.Get("Vary"))
			}
		})
	}
}

func TestCORSPreflight(t *testing.T) {
	f := startFront(t, newSpool(t), func(c *httpfront.Config) {
		c.Origins = []string{"https://app.example.com"}
		c.Tokens = []string{"tok"}
	})
	preflight := func(origin string) (*http.Response, []byte) {
		return call(t, "OPTIONS", f.URL+"/api/chat", "",
			"Origin", origin,
			"Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization,content-type")
	}
	t.Run("AnAllowedOriginIsAnsweredWithoutAToken", func(t *testing.T) {
		resp, body := preflight("https://app.example.com")
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("got %d %s, want 204", resp.StatusCode, body)
		}
		h := resp.Header
		if got := h.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
			t.Errorf("Access-Control-Allow-Origin: got %q", got)
		}
		if got := h.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
			t.Errorf("Access-Control-Allow-Methods: got %q, want POST in it", got)
		}
		if got := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "authorization") || !strings.Contains(got, "content-type") {
			t.Errorf("Access-Control-Allow-Headers: got %q", got)
		}
		if h.Get("Access-Control-Max-Age") == "" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Errorf("Max-Age %q, Vary %q: want both", h.Get("Access-Control-Max-Age"), h.Values("Vary"))
		}
	})
	t.Run("AnotherOriginIsRefused", func(t *testing.T) {
		resp, body := preflight("https://attacker.example")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("got %d %s, Access-Control-Allow-Origin %q, want 403 and none", resp.StatusCode, body, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})
	t.Run("TheRequestItselfStillNeedsTheToken", func(t *testing.T) {
		resp, _ := call(t, "POST", f.URL+"/api/chat", chatJob, "Origin", "https://app.example.com")
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Errorf("got %d with Access-Control-Allow-Origin %q, want 401 that the page can read", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
	})
}

func TestOriginsAreChecked(t *testing.T) {
	sp := newSpool(t)
	for _, tt := range []struct {
		origins []string
		field   string
	}{
		{[]string{"https://app.example.com/path"}, "origins[0]"},
		{[]string{"*", "app.example.com"}, "origins[1]"},
		{[]string{" https://a.example"}, "origins[0]"},
		{[]string{"https://*.*.example"}, "origins[0]"},
	} {
		_, err := httpfront.New(httpfront.Config{Spool: sp, Origins: tt.origins})
		var ce *httpfront.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("origins %q: got %v, want a ConfigError for %s", tt.origins, err, tt.field)
		}
	}
	for _, ok := range [][]string{{"*"}, {"https://app.example.com", "http://localhost:*", "https://*.example.com", "app://*"}} {
		srv, err := httpfront.New(httpfront.Config{Spool: sp, Origins: ok})
		if err != nil {
			t.Errorf("origins %q: got %v, want them accepted", ok, err)
			continue
		}
		srv.Close()
	}
}

// The proxied endpoints answer an allowed page with the front's CORS
// headers; the target, which has its own OLLAMA_ORIGINS, never sees the
// Origin the front already judged.
func TestProxiedEndpointsFollowTheFrontsOrigins(t *testing.T) {
	origins := make(chan string, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origins <- r.Header.Get("Origin")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		io.WriteString(w, `{"models":[]}`)
	}))
	defer upstream.Close()
	f := startFront(t, newSpool(t), func(c *httpfront.Config) {
		c.Target = upstream.URL
		c.Origins = []string{"https://app.example.com"}
	})
	resp, body := call(t, "GET", f.URL+"/api/tags", "", "Origin", "https://app.example.com")
	if resp.StatusCode != 200 || string(body) != `{"models":[]}` {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "https://app.example.com" {
		t.Errorf("Access-Control-Allow-Origin: got %q, want the front's one", got)
	}
	if o := receive(t, origins, "the proxied request"); o != "" {
		t.Errorf("the target saw Origin %q, want none", o)
	}
	if resp, _ := call(t, "GET", f.URL+"/api/tags", "", "Origin", "https://attacker.example"); resp.StatusCode != 403 {
		t.Errorf("another origin: got %d, want 403", resp.StatusCode)
	}
}
