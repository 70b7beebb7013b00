package cluster_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/cluster"
)

// TestRoutesOverTLS: hosts whose certificates one CA signed form the
// cluster over TLS routes, with no secret, even on a non-loopback listen
// address as far as the config goes; a host whose certificate another CA
// signed is not let in.
func TestRoutesOverTLS(t *testing.T) {
	dir := t.TempDir()
	lab, other := newCA(t, "lab"), newCA(t, "other")
	cfgs := threeHosts(t)
	for i := range cfgs {
		ca := lab
		if i == 2 {
			ca = other
		}
		cfgs[i].Secret, cfgs[i].Replicas = "", 2
		cfgs[i].TLSCA, cfgs[i].TLSCert, cfgs[i].TLSKey = ca.files(t, dir, cfgs[i].Node)
		if err := cfgs[i].Validate(); err != nil {
			t.Fatal(err)
		}
	}
	public := cfgs[0]
	public.Listen = "10.0.0.5:7422"
	if err := public.Validate(); err != nil {
		t.Errorf("a TLS cluster on a private address without a secret: %v", err)
	}

	a, b := start(t, cfgs[0], t.TempDir()), start(t, cfgs[1], t.TempDir())
	c := start(t, cfgs[2], t.TempDir())
	provision(t, a, b)
	st := waitStatus(t, a, func(s cluster.Status) bool { return s.Quorum })
	up := map[string]bool{}
	for _, p := range st.Peers {
		up[p.Name] = p.Up
	}
	if !up["hosta"] || !up["hostb"] {
		t.Errorf("hosts with the lab's certificates are not both up: %+v", st.Peers)
	}
	if up["hostc"] {
		t.Errorf("host c joined with a certificate another CA signed: %+v", st.Peers)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Provision(ctx); err == nil {
		t.Error("host c made the stream without the lab's certificate")
	}
}

// ca is a certificate authority made for a test.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// files writes the CA's certificate and a certificate it signs for host
// on 127.0.0.1 (for serving and dialling routes) with its key, and
// returns their paths: CA, certificate, key.
func (c *ca) files(t *testing.T, dir, host string) (string, string, string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	paths := [3]string{filepath.Join(dir, host+"-ca.pem"), filepath.Join(dir, host+".pem"), filepath.Join(dir, host+"-key.pem")}
	for i, data := range [][]byte{
		c.pem,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(paths[i], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return paths[0], paths[1], paths[2]
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
