package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// clusterWorlds are three hosts, each its own spool and fake Ollama (two
// slots), whose serve processes embed NATS servers routed to each other on
// loopback.
func clusterWorlds(t *testing.T, opts ...ollamatest.Option) []*world {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var ws []*world
	for i := range 3 {
		w := newWorld(t, append([]ollamatest.Option{ollamatest.WithParallel(2)}, opts...)...)
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		w.env = append(w.env,
			"HOPPER_PARALLEL=2",
			"HOPPER_CLUSTER_NAME=lab",
			fmt.Sprintf("HOPPER_CLUSTER_NODE=host%c", 'a'+i),
			fmt.Sprintf("HOPPER_CLUSTER_LISTEN=127.0.0.1:%d", ports[i]),
			"HOPPER_CLUSTER_ROUTES="+strings.Join(routes, ","),
			"HOPPER_CLUSTER_ACK_WAIT=2s",
		)
		ws = append(ws, w)
	}
	return ws
}

// TestClusterOfThreeHostsLosesNoJobWhenOneIsKilled is the check:
// 60 jobs dropped on host a run on more than one host's target and land in
// a's done/, each once, though host b is SIGKILLed mid-run; jobs dropped on
// c land in c's done/. hopper status shows the cluster.
func TestClusterOfThreeHostsLosesNoJobWhenOneIsKilled(t *testing.T) {
	ws := clusterWorlds(t, ollamatest.WithTokens(20), ollamatest.WithTokenDelay(10*time.Millisecond))
	a, b, c := ws[0], ws[1], ws[2]
	serves := []*server{a.serve(), b.serve(), c.serve()}
	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range []*world{a, c} {
				out, _ := w.hopperErr("status")
				ls, _ := w.hopperErr("ls")
				t.Logf("%s:\n%s\n%s", w.spool, out, ls)
				cur, _ := filepath.Glob(filepath.Join(w.spool, "cur", "*"))
				for _, f := range cur {
					data, _ := os.ReadFile(f)
					t.Logf("%s:\n%s", f, data)
				}
			}
		}
	})
	for i := range 60 {
		a.drop(fmt.Sprintf("a%02d", i), chatJob("m1", fmt.Sprintf("job %d", i)))
	}
	waitFor(t, "host b to run a job", func() bool { return b.fake.InFlight() > 0 })
	serves[1].stop(t, syscall.SIGKILL)
	for i := range 5 {
		c.drop(fmt.Sprintf("c%02d", i), chatJob("m2", fmt.Sprintf("job %d", i)))
	}
	waitLong(t, "60 jobs in a's done/", func() bool { return a.count("done") == 60 })
	waitLong(t, "5 jobs in c's done/", func() bool { return c.count("done") == 5 })

	ranOn := map[string]int{}
	for i := range 60 {
		r := a.record("done", fmt.Sprintf("a%02d", i))
		if r.State != spool.StateDone || r.Node == "" || !strings.Contains(answer(t, r), fmt.Sprintf("job %d", i)) {
			t.Errorf("%s: %s on %q, answer %q", r.ID, r.State, r.Node, answer(t, r))
		}
		ranOn[r.Node]++
	}
	if len(ranOn) < 2 {
		t.Errorf("a's jobs ran on %v, want at least two hosts", ranOn)
	}
	if n := a.count("failed") + a.count("new") + a.count("cur"); n != 0 {
		t.Errorf("a has %d jobs besides done/, want none", n)
	}
	served := 0
	for _, w := range ws {
		served += w.fake.RequestsTo("/api/chat")
	}
	if served < 65 || served > 65+2 { // b's two slots may have run twice
		t.Errorf("the targets ran %d requests for 65 jobs, want 65 to 67", served)
	}

	var st status
	if err := json.Unmarshal([]byte(a.hopper("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Cluster == nil || st.Cluster.Name != "lab" || st.Cluster.Node != "hosta" {
		t.Errorf("hopper status --json says of the cluster: %+v", st.Cluster)
	}
	if out := a.hopper("status"); !strings.Contains(out, "cluster   lab, this host hosta") {
		t.Errorf("hopper status:\n%s\nwant the cluster's line", out)
	}
}

// waitLong is waitFor with room for a host's ack wait and a leader
// election on a busy machine.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
