package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/cluster"
	"github.com/hopper-dev/hopper/internal/runtest"
)

const patience = 60 * time.Second

// threeHosts are the cluster sections of three hosts routed to each other
// on loopback.
func threeHosts(t testing.TB) []cluster.Config {
	t.Helper()
	addrs := []string{runtest.FreeAddr(t), runtest.FreeAddr(t), runtest.FreeAddr(t)}
	var cfgs []cluster.Config
	for i := range 3 {
		c := cluster.Config{Name: "lab", Node: fmt.Sprintf("host%c", 'a'+i), Listen: addrs[i], Secret: "sesame"}
		for j := range 3 {
			if j != i {
				c.Routes = append(c.Routes, "nats-route://"+addrs[j])
			}
		}
		cfgs = append(cfgs, c)
	}
	return cfgs
}

// start starts a node on cfg with its store in dir and provisions it.
func start(t testing.TB, cfg cluster.Config, dir string) *cluster.Node {
	t.Helper()
	n, err := cluster.Start(cfg, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func provision(t testing.TB, nodes ...*cluster.Node) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			errs[i] = n.Provision(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestConfigNamesTheBadKey(t *testing.T) {
	for _, tc := range []struct {
		cfg  cluster.Config
		want string
	}{
		{cluster.Config{Listen: "127.0.0.1:7422"}, "cluster.name: must be"},
		{cluster.Config{Name: "lab", Node: "a.b"}, "cluster.node: must be"},
		{cluster.Config{Name: "lab", Routes: []string{"nats-route://10.0.0.6:7422"}}, "cluster.listen: is where"},
		{cluster.Config{Name: "lab", Listen: "127.0.0.1"}, "cluster.listen: must be host:port"},
		{cluster.Config{Name: "lab", Listen: "127.0.0.1:7422", Routes: []string{"nats://10.0.0.6:7422"}}, "cluster.routes[0]: must be nats-route://"},
		{cluster.Config{Name: "lab", Listen: "127.0.0.1:7422", Replicas: 3}, "cluster.replicas: is 3 but the cluster has 1 hosts"},
		{cluster.Config{Name: "lab", Replicas: 7}, "cluster.replicas: must be 1 to 5"},
		{cluster.Config{Name: "lab", URL: "nats://h:4222", Listen: "127.0.0.1:7422"}, "cluster.url: joins an existing"},
		{cluster.Config{Name: "lab", URL: "http://h:4222"}, "cluster.url: must be nats://"},
		{cluster.Config{Name: "lab", URL: "nats://h:4222", Credentials: "/nonexistent/x.creds"}, "cluster.credentials: cannot read"},
		{cluster.Config{Name: "lab", Listen: "127.0.0.1:7422", Credentials: "x.creds"}, "cluster.credentials: is for joining"},
		{cluster.Config{Name: "lab", TLSCert: "c.pem", TLSKey: "k.pem", TLSCA: "ca.pem"}, "cluster.tls_cert: encrypts the routes"},
		{cluster.Config{Name: "lab", Listen: "127.0.0.1:7422", TLSCert: "c.pem", TLSKey: "k.pem"}, "cluster.tls_ca: cluster.tls_cert and cluster.tls_key go together"},
		{cluster.Config{Name: "lab", Listen: "127.0.0.1:7422", TLSCert: "c.pem", TLSCA: "ca.pem"}, "cluster.tls_cert: and cluster.tls_key go together"},
		{cluster.Config{Name: "lab", Listen: "127.0.0.1:7422", TLSCert: "/nonexistent/c.pem", TLSKey: "/nonexistent/k.pem", TLSCA: "/nonexistent/ca.pem"}, "cluster.tls_ca: cannot read"},
		{cluster.Config{Name: "lab", Listen: "10.0.0.5:7422", Routes: []string{"nats-route://10.0.0.6:7422"}}, "cluster.secret: must be set"},
		{cluster.Config{Name: "lab", Secret: "s"}, "cluster.secret: authenticates the routes"},
	} {
		err := tc.cfg.Validate()
		var ce *cluster.ConfigError
		if err == nil || !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q…", tc.cfg, err, tc.want)
		}
	}
	if err := (cluster.Config{Name: "lab", Listen: "10.0.0.5:7422", Secret: "s", Routes: []string{"nats-route://10.0.0.6:7422", "nats-route://10.0.0.7:7422"}}).Validate(); err != nil {
		t.Errorf("a secret on a private address: %v", err)
	}
	if err := (cluster.Config{}).Validate(); err != nil {
		t.Errorf("unset: %v, want nil (one host, unchanged)", err)
	}
	for _, c := range threeHosts(t) {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

func TestSubjectCarriesPriorityAndKey(t *testing.T) {
	for _, tc := range []struct {
		p   int
		key string
	}{{0, "llama3.2:latest"}, {-5, `qwen/qwen3:8b {"num_ctx":8192}`}, {10, ""}} {
		s := cluster.Subject(tc.p, tc.key)
		if strings.Count(s, ".") != 3 || strings.ContainsAny(s, " */>:") {
			t.Errorf("Subject(%d, %q) = %q: not four plain tokens", tc.p, tc.key, s)
		}
		p, key, err := cluster.ParseSubject(s)
		if err != nil || p != tc.p || key != tc.key {
			t.Errorf("ParseSubject(%q) = %d, %q, %v; want %d, %q", s, p, key, err, tc.p, tc.key)
		}
	}
}

// TestOneHost: a cluster of one embedded node (no routes) keeps one
// replica, drops a re-published job and reports its backlog by key.
func TestOneHost(t *testing.T) {
	n := start(t, cluster.Config{Name: "solo", Node: "only"}, t.TempDir())
	provision(t, n)
	ctx := context.Background()
	first, err := n.Publish(ctx, "job1", 0, "llama3.2:latest", []byte(`{"model":"llama3.2"}`))
	if err != nil || first.Duplicate {
		t.Fatalf("publish: %+v %v", first, err)
	}
	again, err := n.Publish(ctx, "job1", 0, "llama3.2:latest", []byte(`{"model":"llama3.2"}`))
	if err != nil || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("re-publish: %+v %v, want the duplicate of %+v", again, err, first)
	}
	if _, err := n.Publish(ctx, "job2", 5, "qwen3:8b", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	st := n.Status(ctx)
	if !st.Quorum || st.Leader != "only" || st.Queued != 2 || len(st.Depth) != 2 {
		t.Fatalf("status %+v", st)
	}
	if d := st.Depth[0]; d.Priority != 5 || d.Key != "qwen3:8b" || d.Count != 1 || d.Oldest.IsZero() {
		t.Errorf("highest priority first: %+v", d)
	}
}

// TestThreeHostsSurviveTheLossOfOne: three embedded nodes routed to each
// other replicate the stream three ways; with one stopped the other two
// still take jobs and see them; with two stopped the last one says it has
// no quorum instead of hanging, and when one comes back the queue is whole.
func TestThreeHostsSurviveTheLossOfOne(t *testing.T) {
	cfgs := threeHosts(t)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	var nodes []*cluster.Node
	for i, c := range cfgs {
		nodes = append(nodes, start(t, c, dirs[i]))
	}
	provision(t, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	for i := range 6 {
		if _, err := nodes[i%3].Publish(ctx, fmt.Sprintf("job%d", i), 0, "tiny:latest", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	st := waitStatus(t, nodes[0], func(s cluster.Status) bool { return s.Quorum && s.Queued == 6 && upPeers(s) == 3 })
	if len(st.Peers) != 3 || st.Leader == "" {
		t.Fatalf("status %+v, want three peers and a leader", st)
	}

	nodes[1].Close() // host b stops
	for i := 6; i < 9; i++ {
		if _, err := nodes[i%2*2].Publish(ctx, fmt.Sprintf("job%d", i), 0, "tiny:latest", []byte(`{}`)); err != nil {
			t.Fatalf("publish with one host down: %v", err)
		}
	}
	waitStatus(t, nodes[2], func(s cluster.Status) bool { return s.Quorum && s.Queued == 9 && upPeers(s) == 2 })

	nodes[2].Close() // host c too: a has no quorum
	st = waitStatus(t, nodes[0], func(s cluster.Status) bool { return !s.Quorum })
	if !strings.Contains(st.Error, "no quorum") {
		t.Errorf("without quorum: %+v, want it said", st)
	}
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	_, err := nodes[0].Publish(short, "job9", 0, "tiny:latest", []byte(`{}`))
	cancelShort()
	if !errors.Is(err, cluster.ErrNoQuorum) {
		t.Errorf("publish without quorum: %v, want ErrNoQuorum", err)
	}

	b := start(t, cfgs[1], dirs[1]) // b comes back with its store
	provision(t, b)
	waitStatus(t, b, func(s cluster.Status) bool { return s.Quorum && s.Queued == 9 })
	if _, err := nodes[0].Publish(ctx, "job9", 0, "tiny:latest", []byte(`{}`)); err != nil {
		t.Errorf("publish once quorum is back: %v", err)
	}
}

// TestJoinAnExistingNATSServer: with cluster.url hopper connects to a NATS
// server it did not start (a nats-server process the test runs) and keeps
// its stream there.
func TestJoinAnExistingNATSServer(t *testing.T) {
	bin := natsServer(t)
	addr := runtest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-js", "-a", "127.0.0.1", "-p", port, "-sd", t.TempDir(), "-n", "external")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	n := start(t, cluster.Config{Name: "lab", Node: "joiner", URL: "nats://" + addr}, t.TempDir())
	provision(t, n)
	if _, err := n.Publish(context.Background(), "job1", 0, "tiny:latest", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, n, func(s cluster.Status) bool { return s.Quorum && s.Queued == 1 })
	if st.Leader != "external" {
		t.Errorf("leader %q, want the external server", st.Leader)
	}
}

// natsServer is the nats-server binary: HOPPER_NATS_SERVER (which .ci/run
// sets), else one on PATH, else one built from the module into a cache.
func natsServer(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HOPPER_NATS_SERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	if testing.Short() {
		t.Skip("no nats-server (set HOPPER_NATS_SERVER or run without -short to build one)")
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = t.TempDir()
	}
	bin := filepath.Join(dir, "hopper", "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	build := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	return bin
}

func upPeers(s cluster.Status) int {
	n := 0
	for _, p := range s.Peers {
		if p.Up {
			n++
		}
	}
	return n
}

// waitStatus polls n's status until ok holds.
func waitStatus(t *testing.T, n *cluster.Node, ok func(cluster.Status) bool) cluster.Status {
	t.Helper()
	var st cluster.Status
	if !runtest.Poll(patience, 100*time.Millisecond, func() bool {
		st = n.Status(context.Background())
		return ok(st)
	}) {
		t.Fatalf("%s: status never came: last %+v", n.Name(), st)
	}
	return st
}

// TestRoutesNeedTheSecret: a host with another secret (or none) cannot
// join: the other two form the cluster without it.
func TestRoutesNeedTheSecret(t *testing.T) {
	cfgs := threeHosts(t)
	for i := range cfgs {
		cfgs[i].Replicas = 2 // two hosts hold the queue without c
	}
	cfgs[2].Secret = "wrong"
	a, b := start(t, cfgs[0], t.TempDir()), start(t, cfgs[1], t.TempDir())
	c := start(t, cfgs[2], t.TempDir())
	provision(t, a, b)
	st := waitStatus(t, a, func(s cluster.Status) bool { return s.Quorum })
	for _, p := range st.Peers {
		if p.Name == "hostc" && p.Up {
			t.Errorf("host c joined with the wrong secret: %+v", st.Peers)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Provision(ctx); err == nil {
		t.Error("host c made the stream with the wrong secret")
	}
}

// TestCloseRightAfterProvision closes nodes the moment they are provisioned,
// while their answer watch is still being set up: Close must return. (A
// watch that its context ended mid-subscribe was never closed by nats.go,
// and Close waited for it forever; CI saw it once.)
func TestCloseRightAfterProvision(t *testing.T) {
	dir := t.TempDir()
	for i := range 30 {
		n, err := cluster.Start(cluster.Config{Name: "solo", Node: "only"}, filepath.Join(dir, fmt.Sprint(i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		provision(t, n)
		for range i % 10 * 50 { // close somewhere in the watch's setup: no clock, only yields
			runtime.Gosched()
		}
		closed := make(chan struct{})
		go func() { n.Close(); close(closed) }()
		runtest.Receive(t, (<-chan struct{})(closed), patience, fmt.Sprintf("Close to return (round %d)", i))
	}
}
