package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/cluster"
	"github.com/hopper-dev/hopper/hooks"
	"github.com/hopper-dev/hopper/internal/human"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/runner"
	"github.com/hopper-dev/hopper/spool"
)

// status is what `hopper status --json` prints.
type status struct {
	Spool        string         `json:"spool"`
	Paused       bool           `json:"paused"`
	Counts       map[string]int `json:"counts"`
	OldestQueued *time.Time     `json:"oldest_queued_at,omitempty"`
	OldestAge    float64        `json:"oldest_queued_age_seconds"`
	Running      []runningJob   `json:"running"`
	// Target is the first target, as before there were several.
	Target targetStatus `json:"target"`
	// Targets is every target: as the running serve sees it when one runs
	// (source "serve"), else as asked now (source "probe").
	Targets []spool.TargetStatus `json:"targets"`
	Source  string               `json:"targets_source"`
	// Problem is what keeps the running serve from working normally.
	Problem  string        `json:"problem,omitempty"`
	Webhooks *hooks.Status `json:"webhooks,omitempty"`
	// Batches lists the batches that have not ended.
	Batches []*batch.Record `json:"batches"`
	// Cluster is the cluster as the running serve sees it, when this host
	// is one of several (DESIGN §11).
	Cluster *cluster.Status `json:"cluster,omitempty"`
}

type runningJob struct {
	ID           string  `json:"id"`
	Model        string  `json:"model"`
	State        string  `json:"state"`
	Attempts     int     `json:"attempts"`
	Elapsed      float64 `json:"elapsed_seconds"`
	OutputChunks int     `json:"output_chunks"`
}

type targetStatus struct {
	URL     string          `json:"url"`
	Up      bool            `json:"up"`
	Version string          `json:"version,omitempty"`
	Error   string          `json:"error,omitempty"`
	Models  []residentModel `json:"models"`
}

type residentModel struct {
	Name      string    `json:"name"`
	ExpiresAt time.Time `json:"expires_at"`
	SizeVRAM  int64     `json:"size_vram"`
}

func newStatusCmd(a *app) *cobra.Command {
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the queue, the running job, and the target's health",
		Example: `  hopper status
  hopper status --json | jq .counts
  hopper status --watch`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, s, targets, err := a.openTargets(false)
			if err != nil {
				return err
			}
			defer s.Close()
			if !watch {
				return a.printStatus(cmd.Context(), s, targets)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				if isTerminal(a.stdout) {
					fmt.Fprint(a.stdout, "\033[H\033[2J") // home, clear: refresh in place
				}
				if err := a.printStatus(ctx, s, targets); err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval with --watch")
	return cmd
}

func (a *app) collectStatus(ctx context.Context, s *spool.Spool, targets []runner.TargetConfig) (status, error) {
	st, err := s.Stats()
	if err != nil {
		return status{}, err
	}
	now := time.Now()
	out := status{
		Spool:  s.Path(),
		Paused: st.Paused,
		Counts: map[string]int{"queued": st.Queued, "running": st.Running, "deferred": st.Deferred,
			"held": st.Held, "done": st.Done, "failed": st.Failed, "ignored": st.Ignored},
		Running: []runningJob{},
		Target:  targetStatus{URL: targets[0].URL, Models: []residentModel{}},
		Batches: []*batch.Record{},
	}
	batches, err := batch.New(s).List()
	if err != nil {
		return status{}, err
	}
	for _, b := range batches {
		if !b.State.Terminal() {
			out.Batches = append(out.Batches, b)
		}
	}
	if !st.OldestQueued.IsZero() {
		out.OldestQueued = &st.OldestQueued
		out.OldestAge = now.Sub(st.OldestQueued).Seconds()
	}
	running, err := s.List(spool.StateWorking)
	if err != nil {
		return status{}, err
	}
	for _, r := range running {
		j := runningJob{ID: r.ID, Model: r.Model, State: string(r.State), Attempts: r.Attempts, OutputChunks: s.OutputLines(r.ID)}
		if r.StartedAt != nil {
			j.Elapsed = now.Sub(*r.StartedAt).Seconds()
		}
		out.Running = append(out.Running, j)
	}
	cfg, err := a.config()
	if err != nil {
		return status{}, err
	}
	if hk, err := hooks.New(hooksConfig(cfg, s, a.logger)); err == nil {
		if hs, err := hk.Status(); err == nil {
			out.Webhooks = &hs
		}
	}
	out.Cluster = readClusterStatus(s)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if pub, err := s.ReadTargets(); err == nil && s.Served() {
		out.Targets, out.Source, out.Problem = pub.Targets, "serve", pub.Problem
	} else {
		out.Targets, out.Source = probeTargets(ctx, targets), "probe"
	}
	first := out.Targets[0]
	out.Target.URL, out.Target.Up, out.Target.Version, out.Target.Error = first.URL, first.Up, first.Version, first.Error
	if out.Source == "probe" {
		if ms, err := targets[0].Target.Running(ctx); err == nil {
			for _, m := range ms {
				out.Target.Models = append(out.Target.Models, residentModel{Name: m.Name, ExpiresAt: m.ExpiresAt, SizeVRAM: m.SizeVRAM})
			}
		}
	} else {
		for _, m := range first.Resident {
			out.Target.Models = append(out.Target.Models, residentModel{Name: m})
		}
	}
	return out, nil
}

// probeTargets asks each target for its version and loaded models, all at
// once, when no serve publishes what it sees.
func probeTargets(ctx context.Context, targets []runner.TargetConfig) []spool.TargetStatus {
	out := make([]spool.TargetStatus, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			st := spool.TargetStatus{Name: t.Name, URL: t.URL, Slots: t.Parallel, Models: t.Models, Resident: []string{}}
			v, err := t.Target.Version(ctx)
			if err != nil {
				st.Error = err.Error()
			} else {
				st.Up, st.Version = true, v
				if ms, err := t.Target.Running(ctx); err == nil {
					for _, m := range ms {
						st.Resident = append(st.Resident, ollama.NormalizeModel(m.Name))
					}
				}
			}
			out[i] = st
		})
	}
	wg.Wait()
	return out
}

func (a *app) printStatus(ctx context.Context, s *spool.Spool, targets []runner.TargetConfig) error {
	st, err := a.collectStatus(ctx, s, targets)
	if err != nil {
		return err
	}
	if a.json {
		return writeJSON(a.stdout, st)
	}
	w := a.stdout
	paused := "no"
	if st.Paused {
		paused = "YES ('hopper resume' to go on)"
	}
	fmt.Fprintf(w, "spool    %s\npaused   %s\n", st.Spool, paused)
	c := st.Counts
	oldest := ""
	if st.OldestQueued != nil {
		oldest = fmt.Sprintf(" (oldest %s)", human.Duration(time.Duration(st.OldestAge*float64(time.Second))))
	}
	fmt.Fprintf(w, "queue    queued %d%s · running %d · deferred %d · held %d · done %d · failed %d\n",
		c["queued"], oldest, c["running"], c["deferred"], c["held"], c["done"], c["failed"])
	if c["ignored"] > 0 {
		fmt.Fprintf(w, "ignored  %d in new/ are not regular files (symlinks, FIFOs, directories): hopper never runs them\n", c["ignored"])
	}
	for _, j := range st.Running {
		fmt.Fprintf(w, "running  %s  %s  %s  %s  ~%d tokens  attempt %d\n", j.ID, j.Model, j.State,
			time.Duration(j.Elapsed*float64(time.Second)).Round(time.Second), j.OutputChunks, j.Attempts)
	}
	for _, b := range st.Batches {
		fmt.Fprintf(w, "batch    %s  %s\n", b.ID, progressBar(b, 20))
	}
	if wh := st.Webhooks; wh != nil && (wh.Pending > 0 || wh.Failed > 0 || len(wh.Disabled) > 0) {
		line := fmt.Sprintf("webhooks pending %d · failed %d", wh.Pending, wh.Failed)
		if wh.OldestPending != nil {
			line += fmt.Sprintf(" (oldest pending %s)", human.Duration(time.Since(*wh.OldestPending)))
		}
		for _, d := range wh.Disabled {
			line += fmt.Sprintf(" · DISABLED %s ('hopper hooks enable')", d.URL)
		}
		fmt.Fprintln(w, line)
	}
	for _, t := range st.Targets {
		fmt.Fprintf(w, "target   %s\n", targetSummary(t, len(st.Targets) > 1, st.Source == "serve"))
	}
	printClusterStatus(w, st.Cluster)
	if st.Problem != "" {
		fmt.Fprintf(w, "PROBLEM  %s\n", st.Problem)
	}
	return nil
}

// targetSummary is one target's line in `hopper status`.
func targetSummary(t spool.TargetStatus, named, served bool) string {
	line := t.URL
	if named {
		line = t.Name + " " + t.URL
	}
	if !t.Up {
		return line + "  DOWN: " + t.Error
	}
	line += "  up"
	if t.Version != "" {
		line += " (Ollama " + t.Version + ")"
	}
	if served {
		line += fmt.Sprintf(", slots %d/%d", t.InFlight, t.Slots)
	}
	if len(t.Resident) > 0 {
		line += ", loaded: " + strings.Join(t.Resident, ", ")
	} else {
		line += ", nothing loaded"
	}
	if served {
		line += fmt.Sprintf(" · done %d · failed %d · loads %d (%s loading)", t.Done, t.Failed, t.Loads,
			time.Duration(t.LoadSeconds*float64(time.Second)).Round(time.Millisecond))
	}
	return line
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
