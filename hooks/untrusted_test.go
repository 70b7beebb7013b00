package hooks

import (
	"strings"
	"testing"
)

func TestURLPolicyRefusesWhatTheGuardWould(t *testing.T) {
	p, err := NewURLPolicy([]string{"hooks.internal", "10.1.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url  string
		says string // "" when accepted
	}{
		{"https://example.com/hook", ""},
		{"http://hooks.internal:8080/x", ""},
		{"http://10.1.2.3/x", ""},
		{"http://intranet.example/x", ""}, // a name: judged when it is dialed
		{"file:///etc/passwd", "http or https"},
		{"gopher://example.com/", "http or https"},
		{"http:///nohost", "http or https"},
		{"http://127.0.0.1/x", "loopback"},
		{"http://LOCALHOST./x", "loopback"},
		{"http://x.localhost/x", "loopback"},
		{"http://10.2.0.1/x", "private"},
		{"http://[fe80::1%25eth0]/x", "link-local"},
		{"http://[fd00::1]/x", "private"},
		{"http://100.64.0.1/x", "carrier-grade"},
		{"http://[64:ff9b::7f00:1]/x", "loopback"},
	}
	for _, tt := range tests {
		err := p.CheckUntrusted(tt.url)
		switch {
		case tt.says == "" && err != nil:
			t.Errorf("%s: got %v, want it accepted", tt.url, err)
		case tt.says != "" && (err == nil || !strings.Contains(err.Error(), tt.says)):
			t.Errorf("%s: got %v, want an error saying %q", tt.url, err, tt.says)
		}
	}
	if _, err := NewURLPolicy([]string{"a b"}); err == nil || !strings.Contains(err.Error(), "hooks.allow[0]") {
		t.Errorf("a bad entry: got %v, want an error naming hooks.allow[0]", err)
	}
}
