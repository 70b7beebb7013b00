package main

import (
	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/hooks"
	"github.com/hopper-dev/hopper/spool"
)

// addCommands attaches every subcommand to root. Each subcommand is a thin
// shell over a package; see the cmd_*.go files.
func addCommands(root *cobra.Command, a *app) {
	root.AddCommand(
		newInitCmd(a),
		newServeCmd(a),
		newHTTPCmd(a),
		newSubmitCmd(a),
		newLsCmd(a),
		newShowCmd(a),
		newCatCmd(a),
		newTailCmd(a),
		newCancelCmd(a),
		newRetryCmd(a),
		newHoldCmd(a, false),
		newHoldCmd(a, true),
		newPauseCmd(a, false),
		newPauseCmd(a, true),
		newPruneCmd(a),
		newStatusCmd(a),
		newFunctionsCmd(a),
		newInvokeCmd(a),
		newHooksCmd(a),
		newBatchCmd(a),
	)
}

// spoolOptions turns the configuration into the spool's options.
func spoolOptions(cfg Config) spool.Options {
	return spool.Options{
		DirMode:    cfg.DirMode,
		FileMode:   cfg.FileMode,
		Fsync:      cfg.Fsync,
		MaxJobSize: int64(cfg.MaxJobSize),
	}
}

// openSpool opens the configured spool; with create it is created first if
// need be.
func (a *app) openSpool(create bool) (*spool.Spool, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	if cfg.Spool == "" {
		return nil, errNoSpool
	}
	open := spool.Open
	if create {
		open = spool.Init
	}
	s, err := open(cfg.Spool, spoolOptions(cfg))
	if err != nil {
		return nil, err
	}
	// A job the spool ends itself (canceled before it ran, a batch line
	// refused or canceled with its batch) never reaches the runner: its
	// event is put in the webhook outbox here, for the dispatcher to send.
	if hk, err := hooks.New(hooksConfig(cfg, s, a.logger)); err == nil {
		s.OnEnded(func(r *spool.Record, previous spool.State) {
			if err := hk.EmitJob(r, previous, nil); err != nil {
				a.logger.Error("cannot record the event", "job", r.ID, "err", err)
			}
		})
	}
	return s, nil
}

// exactArgs and minArgs are cobra's argument checks as usage errors.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MinimumNArgs(n)(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}
