package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/human"
	"github.com/hopper-dev/hopper/spool"
)

func newBatchCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "batch",
		Short: "Batches: a JSONL file of requests in, a JSONL file of answers out",
		Long: `A batch is a file of requests, one per line: hopper jobs, or OpenAI Batch API
lines ({"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {…}}).
Dropped into new/ as NAME.jsonl (or given to 'hopper batch submit') it becomes
one job per line, NAME~000001, …, and when the last line ends done/NAME.jsonl
holds one answer per line, in input order, in OpenAI's batch output shape.`,
	}
	cmd.AddCommand(newBatchSubmitCmd(a), newBatchLsCmd(a), newBatchShowCmd(a), newBatchCancelCmd(a))
	return cmd
}

func newBatchSubmitCmd(a *app) *cobra.Command {
	var name string
	var priority int
	var wait bool
	cmd := &cobra.Command{
		Use:   "submit FILE|-",
		Short: "Queue a batch file (JSONL); prints the batch's name",
		Long: `Submit checks a batch file and queues it. A file with two lines sharing a
custom_id, or with no lines, is refused and nothing is written. A malformed
line is not refused: it fails on its own when the batch runs.`,
		Example: `  hopper batch submit tickets.jsonl
  hopper batch submit requests.jsonl --name nightly --priority -5 --wait`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name != "" && !spool.PlainID(name) {
				return usageErrorf("invalid batch name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", name)
			}
			var in io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
				if name == "" {
					name = strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
				}
			}
			return a.useSpool(func(s *spool.Spool) error {
				b, err := batch.New(s).Submit(in, batch.Options{Name: name, Priority: priority})
				if err != nil {
					return fmt.Errorf("batch refused, nothing was queued: %w", err)
				}
				fmt.Fprintln(a.stdout, b.ID)
				if !wait {
					return nil
				}
				b, err = a.waitBatch(cmd.Context(), s, b.ID, false)
				if err != nil {
					return err
				}
				return a.batchEnded(s, b)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "name the batch (default: the file's name without .jsonl, if it is a valid name; else a generated one)")
	f.IntVar(&priority, "priority", 0, "the priority of every line (higher runs first)")
	f.BoolVar(&wait, "wait", false, "wait for the batch to end and print where its output is")
	return cmd
}

// batchEnded prints where an ended batch's output is; a batch refused as a
// whole is an error.
func (a *app) batchEnded(s *spool.Spool, b *batch.Record) error {
	if b.State == batch.Failed {
		msg := "refused"
		if len(b.Errors) > 0 {
			msg = b.Errors[0].Message
		}
		return fmt.Errorf("batch %s failed: %s", b.ID, msg)
	}
	fmt.Fprintf(a.stdout, "%s: %d done, %d failed\n", b.State, b.Done, b.Failed)
	if b.Output != "" {
		fmt.Fprintln(a.stdout, s.Location(b.Output))
	}
	if b.ErrorsFile != "" {
		fmt.Fprintln(a.stdout, s.Location(b.ErrorsFile))
	}
	return nil
}

// waitBatch polls a batch until it ends; with bar set it redraws a
// progress bar on stdout meanwhile.
func (a *app) waitBatch(ctx context.Context, s *spool.Spool, name string, bar bool) (*batch.Record, error) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := batch.New(s).Get(name)
		if err != nil {
			return nil, batchLookupError(err)
		}
		if bar {
			fmt.Fprintf(a.stdout, "\r%s", progressBar(b, 30))
		}
		if b.State.Terminal() {
			if bar {
				fmt.Fprintln(a.stdout)
			}
			return b, nil
		}
		select {
		case <-ctx.Done():
			if bar {
				fmt.Fprintln(a.stdout)
			}
			return b, ctx.Err()
		case <-tick.C:
		}
	}
}

// progressBar draws a batch's progress in width cells:
// [##########----------]  50%  500/1000  (490 done, 10 failed)  in_progress
func progressBar(b *batch.Record, width int) string {
	filled, pct := 0, 0
	if b.Total > 0 {
		filled = b.Ended() * width / b.Total
		pct = b.Ended() * 100 / b.Total
	}
	return fmt.Sprintf("[%s%s] %3d%%  %d/%d  (%d done, %d failed)  %s",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), pct, b.Ended(), b.Total, b.Done, b.Failed, b.State)
}

func batchLookupError(err error) error {
	return lookupError(err, "hopper batch ls lists the batches")
}

func newBatchLsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List batches with their progress",
		Example: `  hopper batch ls
  hopper batch ls --json | jq -r '.[] | select(.state == "completed") | .output'`,
		Args: exactArgs(0),
		RunE: a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
			list, err := batch.New(s).List()
			if err != nil && list == nil {
				return err
			}
			if err != nil {
				// Show what can be read, then say what cannot.
				defer func() { fmt.Fprintf(a.stderr, "hopper: some batch records cannot be read: %v\n", err) }()
			}
			now := time.Now()
			return printList(a, list, "NAME\tSTATE\tTOTAL\tDONE\tFAILED\tAGE\tOUTPUT", func(tw io.Writer, b *batch.Record) {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", b.ID, b.State, b.Total, b.Done, b.Failed, human.Duration(now.Sub(b.CreatedAt)), b.Output)
			})
		}),
	}
}

func newBatchShowCmd(a *app) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a batch's progress (a bar in a terminal), or its record with --json",
		Example: `  hopper batch show tickets
  hopper batch show tickets --wait
  hopper batch show tickets --json | jq .failed`,
		Args: exactArgs(1),
		RunE: a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
			b, err := batch.New(s).Get(args[0])
			if err != nil {
				return batchLookupError(err)
			}
			if wait && !b.State.Terminal() {
				if b, err = a.waitBatch(cmd.Context(), s, b.ID, !a.json && isTerminal(a.stdout)); err != nil {
					return err
				}
			}
			if a.json {
				return writeJSON(a.stdout, b)
			}
			tw := newTable(a.stdout)
			fmt.Fprintf(tw, "batch\t%s\n", b.ID)
			fmt.Fprintf(tw, "state\t%s\n", b.State)
			if isTerminal(a.stdout) {
				fmt.Fprintf(tw, "progress\t%s\n", progressBar(b, 30))
			} else {
				fmt.Fprintf(tw, "progress\t%d/%d ended (%d done, %d failed)\n", b.Ended(), b.Total, b.Done, b.Failed)
			}
			if b.Priority != 0 {
				fmt.Fprintf(tw, "priority\t%d\n", b.Priority)
			}
			fmt.Fprintf(tw, "created\t%s\n", b.CreatedAt.Local().Format(time.DateTime))
			for _, p := range []struct{ label, path string }{{"input", b.Input}, {"output", b.Output}, {"errors", b.ErrorsFile}} {
				if p.path != "" {
					fmt.Fprintf(tw, "%s\t%s\n", p.label, s.Location(p.path))
				}
			}
			for _, e := range b.Errors {
				fmt.Fprintf(tw, "error\t%s\n", e.Message)
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the batch to end, drawing its progress")
	return cmd
}

func newBatchCancelCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel a batch: queued lines fail as canceled, the running one is aborted",
		Long: `Cancel asks the runner to cancel a batch. It stops queueing lines, fails the
queued ones as canceled and aborts the running one, then writes
done/NAME.jsonl with the answers of the lines that had ended (the others say
batch_cancelled).`,
		Args: exactArgs(1),
		RunE: a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
			b, err := batch.New(s).Cancel(args[0])
			if err != nil {
				return batchLookupError(err)
			}
			fmt.Fprintf(a.stdout, "%s: asked the runner to cancel it (%d of %d lines had ended)\n", b.State, b.Ended(), b.Total)
			return nil
		}),
	}
}
