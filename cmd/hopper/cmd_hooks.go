package main

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/hooks"
	"github.com/hopper-dev/hopper/internal/human"
	"github.com/hopper-dev/hopper/spool"
)

// hooksConfig turns the configuration into the hooks package's, for serve
// and for the hooks command.
func hooksConfig(cfg Config, s *spool.Spool, logger *slog.Logger) hooks.Config {
	hc := hooks.Config{
		Spool:  s,
		Dir:    cfg.Hooks.Dir,
		Secret: cfg.Hooks.Secret,
		Allow:  cfg.Hooks.Allow,
		Env:    cfg.Hooks.Env,
		// The hook of a job that finished during the runner's grace
		// still runs.
		ShutdownGrace: cfg.ShutdownGrace,
		Logger:        logger,
	}
	for _, w := range cfg.Hooks.Webhooks {
		hc.Webhooks = append(hc.Webhooks, hooks.Webhook{URL: w.URL, Secret: w.Secret, Events: w.Events})
	}
	return hc
}

// withHooks runs run with the spool open and the hooks on it, and closes
// the spool after.
func (a *app) withHooks(run func(h *hooks.Hooks) error) error {
	cfg, err := a.config()
	if err != nil {
		return err
	}
	return a.useSpool(func(s *spool.Spool) error {
		h, err := hooks.New(hooksConfig(cfg, s, a.logger))
		if err != nil {
			return err
		}
		return run(h)
	})
}

// hooksListing is what `hopper hooks --json` prints.
type hooksListing struct {
	Pending  []*hooks.Delivery `json:"pending"`
	Failed   []*hooks.Delivery `json:"failed"`
	Disabled []hooks.Disabled  `json:"disabled"`
}

func newHooksCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "List pending and failed webhook deliveries, and disabled endpoints",
		Long: `hooks lists the webhook deliveries in the outbox (SPOOL/.hopper/outbox/):
pending ones, waiting for their next attempt, and failed ones, given up after
the last attempt or refused at once. It also lists configured endpoints that
answered 410 Gone and so receive nothing until enabled again.

Each delivery is a JSON file; its ID is the webhook-id header the receiver
sees, the same on every attempt.`,
		Example: `  hopper hooks
  hopper hooks --json | jq -r '.failed[] | "\(.id) \(.last_error)"'
  hopper hooks redeliver msg_18a3f2c4d5e6f7a8b1c2d3e4
  hopper hooks redeliver --failed
  hopper hooks enable https://example.com/hook`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withHooks(func(h *hooks.Hooks) (err error) {
				var l hooksListing
				if l.Pending, err = h.Pending(); err != nil {
					return err
				}
				if l.Failed, err = h.Failed(); err != nil {
					return err
				}
				if l.Disabled, err = h.DisabledEndpoints(); err != nil {
					return err
				}
				if a.json {
					return writeJSON(a.stdout, l)
				}
				return a.printHooks(l, time.Now())
			})
		},
	}
	cmd.AddCommand(newHooksRedeliverCmd(a), newHooksEnableCmd(a))
	return cmd
}

func (a *app) printHooks(l hooksListing, now time.Time) error {
	if len(l.Pending)+len(l.Failed) == 0 {
		fmt.Fprintln(a.stdout, "no pending or failed webhook deliveries")
	} else {
		tw := newTable(a.stdout)
		fmt.Fprintln(tw, "ID\tSTATE\tJOB\tEVENT\tATTEMPTS\tURL\tNOTE")
		for _, d := range slices.Concat(l.Pending, l.Failed) {
			note := d.LastError
			if d.State == hooks.StatePending {
				when := "now"
				if wait := d.NextAttemptAt.Sub(now); wait > 0 {
					when = "in " + human.Duration(wait)
				}
				note = "next attempt " + when
				if d.LastError != "" {
					note += "; last: " + d.LastError
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.State, d.Job, d.Type, d.Attempts, truncate(d.URL, 50), truncate(note, 80))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(l.Failed) > 0 {
		fmt.Fprintln(a.stdout, "\n'hopper hooks redeliver ID' queues a failed delivery again (ID: a delivery or a job).")
	}
	if len(l.Disabled) > 0 {
		fmt.Fprintln(a.stdout, "\ndisabled endpoints (they answered 410 Gone; 'hopper hooks enable URL' to send to them again):")
		for _, d := range l.Disabled {
			fmt.Fprintf(a.stdout, "  %s  since %s  (%s)\n", d.URL, d.DisabledAt.Local().Format(time.DateTime), d.Reason)
		}
	}
	return nil
}

func newHooksRedeliverCmd(a *app) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "redeliver ID...|--failed",
		Short: "Queue failed webhook deliveries again, from their first attempt",
		Long: `redeliver moves failed deliveries back to pending, with their attempts reset.
ID is a delivery ID (msg_…) or a job ID (all of that job's failed deliveries).
The running 'hopper serve' sends them at once; if none runs, the next one will.`,
		Example: `  hopper hooks redeliver msg_18a3f2c4d5e6f7a8b1c2d3e4
  hopper hooks redeliver 20261127T231005.123456Z-7f3a9c
  hopper hooks redeliver --failed`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usageErrorf("give delivery or job IDs, or --failed, not both")
			}
			return a.withHooks(func(h *hooks.Hooks) error {
				if all {
					failed, err := h.Failed()
					if err != nil {
						return err
					}
					if len(failed) == 0 {
						fmt.Fprintln(a.stdout, "no failed deliveries")
						return nil
					}
					for _, d := range failed {
						args = append(args, d.ID)
					}
				}
				return a.each(args, func(id string) (string, error) {
					n, err := h.Redeliver(id)
					if errors.Is(err, hooks.ErrNoDelivery) {
						err = fmt.Errorf("%w (see 'hopper hooks')", err)
					}
					if n == 0 {
						return "", err
					}
					return fmt.Sprintf("queued again (%d)", n), err
				})
			})
		},
	}
	cmd.Flags().BoolVar(&all, "failed", false, "redeliver every failed delivery")
	return cmd
}

func newHooksEnableCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "enable URL...",
		Short: "Send events again to configured webhooks disabled after a 410 Gone",
		Long: `enable lets a configured webhook endpoint that answered 410 Gone receive
events again. Events emitted while it was disabled are not sent to it.`,
		Example: `  hopper hooks enable https://example.com/hook`,
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withHooks(func(h *hooks.Hooks) error {
				return a.each(args, func(url string) (string, error) {
					if err := h.Enable(url); err != nil {
						return "", err
					}
					return "enabled", nil
				})
			})
		},
	}
}
