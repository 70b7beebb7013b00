package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopper-dev/hopper/internal/runtest"
	"github.com/hopper-dev/hopper/ollama/ollamatest"
	"github.com/hopper-dev/hopper/spool"
)

// clusterWorlds are three hosts, each its own spool and fake Ollama (two
// slots), whose serve processes embed NATS servers routed to each other on
// loopback.
func clusterWorlds(t *testing.T, opts ...ollamatest.Option) []*world {
	t.Helper()
	addrs := []string{runtest.FreeAddr(t), runtest.FreeAddr(t), runtest.FreeAddr(t)}
	var ws []*world
	for i := range 3 {
		w := newWorld(t, append([]ollamatest.Option{ollamatest.WithParallel(2)}, opts...)...)
		var routes []string
		for j, addr := range addrs {
			if j != i {
				routes = append(routes, "nats-route://"+addr)
			}
		}
		w.env = append(w.env,
			"HOPPER_PARALLEL=2",
			"HOPPER_CLUSTER_NAME=lab",
			fmt.Sprintf("HOPPER_CLUSTER_NODE=host%c", 'a'+i),
			"HOPPER_CLUSTER_LISTEN="+addrs[i],
			"HOPPER_CLUSTER_ROUTES="+strings.Join(routes, ","),
			"HOPPER_CLUSTER_ACK_WAIT=5s",
			"HOPPER_CLUSTER_SECRET=sesame",
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
	waitLong(t, "host b to run a job", func() bool { return b.fake.InFlight() > 0 })
	serves[1].kill(t)
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

	if st := a.status(); st.Cluster == nil || st.Cluster.Name != "lab" || st.Cluster.Node != "hosta" {
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
	if !runtest.Poll(3*time.Minute, 50*time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestClusterWithoutQuorumKeepsJobsUntilItReturns: with two of three
// hosts gone the last one says it has no quorum, refuses and loses
// nothing dropped on it, and runs it all once a host comes back.
func TestClusterWithoutQuorumKeepsJobsUntilItReturns(t *testing.T) {
	ws := clusterWorlds(t)
	a, b, c := ws[0], ws[1], ws[2]
	serves := []*server{a.serve(), b.serve(), c.serve()}
	a.drop("before", chatJob("m1", "before"))
	waitLong(t, "a job before the loss", func() bool { return a.count("done") == 1 })
	serves[1].kill(t)
	serves[2].kill(t)
	waitLong(t, "a to say it has no quorum", func() bool {
		st := a.status().Cluster
		return st != nil && !st.Quorum
	})
	for i := range 5 {
		a.drop(fmt.Sprintf("j%d", i), chatJob("m1", fmt.Sprintf("job %d", i)))
	}
	waitLong(t, "hopper status to say it has no quorum", func() bool { return strings.Contains(a.hopper("status"), "NO QUORUM") })
	if n := a.count("new") + a.count("cur") + a.count("deferred"); n != 5 || a.count("failed") != 0 || a.count("done") != 1 {
		t.Fatalf("without quorum: %d jobs waiting, %d failed, %d done; want 5 waiting", n, a.count("failed"), a.count("done"))
	}
	b.serve() // b comes back: two of three
	waitLong(t, "the jobs to run once quorum is back", func() bool { return a.count("done") == 6 })
	if a.count("failed") != 0 {
		t.Errorf("%d jobs failed", a.count("failed"))
	}
}

// TestClusterTortureKillsAndRestartsHosts: every host takes jobs while
// hosts are SIGKILLed and restarted in turn, origins included. Nothing is
// lost, no job has two records, and the targets ran no job more often than
// the kills can explain: each kill may cost what was running at the time
// (the killed host's attempts run again; a killed origin's jobs running
// elsewhere are stopped and run again).
func TestClusterTortureKillsAndRestartsHosts(t *testing.T) {
	ws := clusterWorlds(t, ollamatest.WithTokens(10), ollamatest.WithTokenDelay(10*time.Millisecond))
	serves := make([]*server, len(ws))
	for i, w := range ws {
		serves[i] = w.serve()
	}
	const perHost, kills, slots = 30, 4, 3 * 2
	for i := range perHost {
		for h, w := range ws {
			w.drop(fmt.Sprintf("h%dj%02d", h, i), chatJob([]string{"m1", "m2"}[i%2], fmt.Sprintf("job %d of host %d", i, h)))
		}
	}
	for k := range kills {
		h := k % len(ws)
		waitLong(t, "a job to run", func() bool {
			for _, w := range ws {
				if w.fake.InFlight() > 0 {
					return true
				}
			}
			return false
		})
		serves[h].kill(t)
		serves[h] = ws[h].serve() // back at once: its jobs in flight are the cluster's to settle
	}
	for h, w := range ws {
		waitLong(t, fmt.Sprintf("host %d's jobs in its done/", h), func() bool { return w.count("done") == perHost })
	}
	executions := 0
	for h, w := range ws {
		if n := w.count("failed") + w.count("new") + w.count("cur") + w.count("deferred"); n != 0 {
			t.Errorf("host %d has %d records besides done/, want none", h, n)
		}
		for i := range perHost {
			r := w.record("done", fmt.Sprintf("h%dj%02d", h, i))
			if !strings.Contains(answer(t, r), fmt.Sprintf("job %d of host %d", i, h)) {
				t.Errorf("%s answered %q", r.ID, answer(t, r))
			}
		}
		executions += w.fake.RequestsTo("/api/chat")
	}
	if limit := len(ws)*perHost + kills*slots; executions > limit {
		t.Errorf("the targets ran %d requests for %d jobs and %d kills, want at most %d", executions, len(ws)*perHost, kills, limit)
	}
	t.Logf("%d jobs, %d kills: %d executions", len(ws)*perHost, kills, executions)
}

// TestClusterOriginTailsAndAnswersAsIfLocal: a job given to host a runs on
// some host's target, and on a hopper tail follows its output as it comes,
// and an Ollama client of a's HTTP front gets its streamed answer.
func TestClusterOriginTailsAndAnswersAsIfLocal(t *testing.T) {
	ws := clusterWorlds(t, ollamatest.WithTokens(30), ollamatest.WithTokenDelay(20*time.Millisecond))
	a := ws[0]
	addr := runtest.FreeAddr(t)
	a.env = append(a.env, "HOPPER_HTTP="+addr)
	for _, w := range ws {
		w.serve()
	}
	a.hopper("submit", "-m", "m1", "-p", "tail me", "--id", "tailed")
	out := a.hopper("tail", "tailed") // follows until the job ends
	if !strings.Contains(out, "reply from m1") {
		t.Errorf("hopper tail on the origin:\n%s\nwant the answer's text", out)
	}
	if r := a.record("done", "tailed"); r.Node == "" {
		t.Errorf("the record names no node: %+v", r)
	}

	resp, err := http.Post("http://"+addr+"/api/generate", "application/json",
		strings.NewReader(`{"model":"m1","prompt":"through the front"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	lines, done := 0, false
	for sc.Scan() {
		var chunk struct {
			Response string `json:"response"`
			Done     bool   `json:"done"`
		}
		if err := json.Unmarshal(sc.Bytes(), &chunk); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		lines++
		done = done || chunk.Done
	}
	if resp.StatusCode != 200 || lines < 10 || !done {
		t.Errorf("the drop-in answered %d with %d lines (done %v); want the stream of a 30-token answer", resp.StatusCode, lines, done)
	}
}
