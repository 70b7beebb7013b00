package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/cluster"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// clusterStatusEvery is how often serve publishes the cluster's status
// (.hopper/cluster.json) for hopper status and /metrics.
const clusterStatusEvery = 2 * time.Second

// clusterState is the state directory of the cluster: the embedded NATS
// server's JetStream store.
func clusterState(s *spool.Spool) *spool.StateDir { return s.StateDir("cluster") }

// joinCluster starts this host's cluster node when the configuration has a
// cluster section; it returns the targets the runner's lanes drive: the
// cluster's relay, or (nil node) the configured targets themselves.
func joinCluster(cfg Config, s *spool.Spool, targets []runner.TargetConfig, logger *slog.Logger) (*cluster.Node, []runner.TargetConfig, error) {
	if !cfg.Cluster.Enabled() {
		return nil, targets, nil
	}
	dir := clusterState(s)
	if err := dir.Make(); err != nil {
		return nil, nil, err
	}
	node, err := cluster.Start(cfg.Cluster, dir.Path(), logger.With("part", "cluster"))
	if err != nil {
		return nil, nil, err
	}
	relay := runner.TargetConfig{
		Name:     "cluster",
		URL:      clusterURL(cfg.Cluster),
		Target:   node.Relay(),
		Parallel: cmp.Or(cfg.Cluster.InFlight, cluster.DefaultInFlight),
	}
	return node, []runner.TargetConfig{relay}, nil
}

// clusterURL says where the cluster is, for status and the banner.
func clusterURL(c cluster.Config) string {
	if !c.Embedded() {
		return c.URL
	}
	tls := ""
	if c.Listen != "" && c.TLSCert != "" {
		tls = " (TLS)"
	}
	return fmt.Sprintf("nats cluster %s, node %s, routes on %s%s", c.Name, c.NodeName(), cmp.Or(c.Listen, "(none)"), tls)
}

// runCluster keeps this host in the cluster until ctx ends: it creates or
// adopts the stream (waiting for quorum as long as it takes), runs the
// cluster's jobs on this host's targets, and keeps the status file.
func runCluster(ctx context.Context, node *cluster.Node, cfg Config, s *spool.Spool, targets []runner.TargetConfig, logger *slog.Logger) error {
	go writeClusterStatus(ctx, node, s, logger)
	if err := node.Provision(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return node.Execute(ctx, cluster.ExecConfig{
		Targets: targets,
		Policy:  runnerConfig(cfg, s, targets, logger).Policy,
		AckWait: cfg.Cluster.AckWait,
		Grace:   cfg.ShutdownGrace,
		Logger:  logger.With("part", "cluster"),
	})
}

// writeClusterStatus publishes the cluster's status every
// clusterStatusEvery.
func writeClusterStatus(ctx context.Context, node *cluster.Node, s *spool.Spool, logger *slog.Logger) {
	t := time.NewTicker(clusterStatusEvery)
	defer t.Stop()
	for {
		st := node.Status(ctx)
		if err := s.PublishCluster(&st); err != nil && ctx.Err() == nil {
			logger.Warn("cannot write the cluster's status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readClusterStatus is the status the running serve last published, nil
// when there is none (no cluster, or no serve running lately).
func readClusterStatus(s *spool.Spool) *cluster.Status { return s.ReadCluster(5 * clusterStatusEvery) }

// printClusterStatus writes the cluster section of hopper status.
func printClusterStatus(w io.Writer, st *cluster.Status) {
	if st == nil {
		return
	}
	fmt.Fprintf(w, "cluster   %s, this host %s", st.Name, st.Node)
	if !st.Quorum {
		fmt.Fprintf(w, ": NO QUORUM (%s): jobs stay in new/ until it is back\n", st.Error)
		return
	}
	fmt.Fprintf(w, ", leader %s, %d queued\n", st.Leader, st.Queued)
	for _, p := range st.Peers {
		state := "up"
		if !p.Up {
			state = fmt.Sprintf("DOWN (last heard %s ago)", p.Active.Round(time.Second))
		}
		fmt.Fprintf(w, "  node    %-16s %s\n", p.Name, state)
	}
	for _, d := range st.Depth {
		fmt.Fprintf(w, "  queued  %-5d priority %d, %s\n", d.Count, d.Priority, cmp.Or(strings.TrimSpace(d.Key), "(no model)"))
	}
}
