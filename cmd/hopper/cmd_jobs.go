package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/batch"
	"github.com/hopper-dev/hopper/internal/human"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"github.com/hopper-dev/hopper/internal/yamlconf"
	"github.com/hopper-dev/hopper/ollama"
	"github.com/hopper-dev/hopper/spool"
)

func newSubmitCmd(a *app) *cobra.Command {
	var model, prompt, webhook, id string
	var priority int
	var wait bool
	cmd := &cobra.Command{
		Use:   "submit [FILE|-]",
		Short: "Queue a job: a JSON file, standard input, or -m/-p flags",
		Long: `Submit checks a job and queues it in new/, atomically and durably, then
prints its ID. Flags set fields of the job (they win over the file's).
Bad input is refused with a message and nothing is written.`,
		Example: `  hopper submit -m llama3.2 -p "Why is the sky blue?"
  echo '{"model":"llama3.2","prompt":"hi"}' | hopper submit -
  hopper submit job.json --priority 10 --wait`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			switch {
			case len(args) == 1 && args[0] == "-":
				data, err = io.ReadAll(cmd.InOrStdin())
			case len(args) == 1:
				data, err = os.ReadFile(args[0])
			case model == "" && prompt == "":
				return usageErrorf("give a job FILE, - for standard input, or -m MODEL -p PROMPT")
			default:
				data = []byte("{}")
			}
			if err != nil {
				return err
			}
			set := map[string]any{}
			if cmd.Flags().Changed("model") {
				set["model"] = model
			}
			if cmd.Flags().Changed("prompt") {
				set["prompt"] = prompt
			}
			if cmd.Flags().Changed("priority") {
				set["priority"] = priority
			}
			if cmd.Flags().Changed("webhook") {
				set["webhook"] = webhook
			}
			if len(set) > 0 {
				if data, err = setFields(data, set); err != nil {
					return err
				}
			}
			return a.submitJob(cmd.Context(), data, id, wait, a.checkFunctionJob)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&model, "model", "m", "", "the model to run")
	f.StringVarP(&prompt, "prompt", "p", "", "the prompt (a generate job)")
	f.IntVar(&priority, "priority", 0, "higher runs first")
	f.StringVar(&webhook, "webhook", "", "URL to notify when the job changes state")
	f.StringVar(&id, "id", "", "name the job (default: a generated, time-sorted ID)")
	f.BoolVar(&wait, "wait", false, "wait for the job to finish and print the answer")
	return cmd
}

// setFields sets top-level fields of a JSON object, keeping the others'
// bytes. A job that is not one is refused as the spool refuses it, with
// the position of a JSON mistake.
func setFields(data []byte, set map[string]any) ([]byte, error) {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")) // a byte order mark, as the spool allows
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if _, err := spool.ParseJob(data, 0); err != nil {
			return nil, fmt.Errorf("job refused, nothing was queued: %w", err)
		}
		return nil, fmt.Errorf("job refused, nothing was queued: flags can only be combined with a JSON object")
	}
	for k, v := range set {
		b, err := jsonfmt.Marshal(v)
		if err != nil {
			return nil, err
		}
		obj[k] = b
	}
	return jsonfmt.Marshal(obj)
}

// waitAndPrint waits for job id to finish and prints its answer; a failed
// job is an error.
func (a *app) waitAndPrint(ctx context.Context, s *spool.Spool, id string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := s.Wait(ctx, id)
	if err != nil {
		return err
	}
	return a.printAnswer(r)
}

func (a *app) printAnswer(r *spool.Record) error {
	if r.State == spool.StateFailed {
		return fmt.Errorf("job %s failed (%s): %s", r.ID, r.Error.Kind, r.Error.Message)
	}
	text := answerText(r)
	fmt.Fprint(a.stdout, text)
	if !strings.HasSuffix(text, "\n") {
		fmt.Fprintln(a.stdout)
	}
	return nil
}

// answerText is the human part of a record's answer: a function's parsed
// output, the message content or generated text, or (for embeddings and
// anything else) the JSON answer.
func answerText(r *spool.Record) string {
	if len(r.Output) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, r.Output, "", "  ") == nil {
			return buf.String()
		}
		return string(r.Output)
	}
	if ollama.HasText(r.Response) {
		return ollama.AnswerText(r.Response)
	}
	return string(r.Response)
}

func newLsCmd(a *app) *cobra.Command {
	var limit int
	var wide bool
	cmd := &cobra.Command{
		Use:   "ls [STATE...]",
		Short: "List jobs (queued, working, deferred, held, done, failed); queued ones in run order",
		Long: `ls lists jobs by state. Queued jobs come in the order they will run: highest
priority first, then first come, first served; POS is a queued job's place in
that line (with the drain schedule a job for a model already loaded may go
earlier, so nothing waits longer than max_wait more than POS says).`,
		Example: `  hopper ls
  hopper ls queued failed
  hopper ls queued --limit 20
  hopper ls failed --wide
  hopper ls done --json | jq -r '.[].id'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			states, err := parseStates(args)
			if err != nil {
				return err
			}
			return a.useSpool(func(s *spool.Spool) error {
				recs, err := s.List(states...)
				if err != nil {
					return err
				}
				recs, pos := runOrder(recs)
				if limit > 0 && len(recs) > limit {
					recs = recs[:limit]
				}
				now := time.Now()
				return printList(a, recs, "ID\tSTATE\tPOS\tPRIO\tMODEL\tAGE\tATTEMPTS\tNOTE", func(tw io.Writer, r *spool.Record) {
					note := ""
					if r.Error != nil {
						note = string(r.Error.Kind) + ": " + r.Error.Message
					}
					if !wide {
						note = truncate(note, 60)
					}
					if r.Function != "" && r.Model == "" {
						r.Model = "fn:" + r.Function
					}
					p := ""
					if n, ok := pos[r.ID]; ok {
						p = strconv.Itoa(n)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", r.ID, r.State, p, r.Priority, r.Model, human.Duration(now.Sub(r.SubmittedAt)), r.Attempts, note)
				})
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most `N` jobs (0: all)")
	cmd.Flags().BoolVar(&wide, "wide", false, "show whole notes (errors)")
	return cmd
}

// runOrder puts the queued records first, in the order they will run
// (priority, then arrival, then ID), numbering them from 1, and keeps the
// rest in the order given.
func runOrder(recs []*spool.Record) ([]*spool.Record, map[string]int) {
	var queued, rest []*spool.Record
	for _, r := range recs {
		if r.State == spool.StateQueued {
			queued = append(queued, r)
		} else {
			rest = append(rest, r)
		}
	}
	sort.SliceStable(queued, func(i, j int) bool {
		a, b := queued[i], queued[j]
		return spool.RunsBefore(a.Priority, a.SubmittedAt, a.ID, b.Priority, b.SubmittedAt, b.ID)
	})
	pos := make(map[string]int, len(queued))
	for i, r := range queued {
		pos[r.ID] = i + 1
	}
	return append(queued, rest...), pos
}

var stateNames = map[string]spool.State{
	"queued": spool.StateQueued, "new": spool.StateQueued,
	"working": spool.StateWorking, "loading": spool.StateWorking, "running": spool.StateWorking, "cur": spool.StateWorking,
	"deferred": spool.StateDeferred, "held": spool.StateHeld, "hold": spool.StateHeld,
	"done": spool.StateDone, "failed": spool.StateFailed,
}

func parseStates(args []string) ([]spool.State, error) {
	var out []spool.State
	for _, a := range args {
		st, ok := stateNames[strings.ToLower(a)]
		if !ok {
			return nil, usageErrorf("unknown state %q: use queued, working, deferred, held, done or failed", a)
		}
		out = append(out, st)
	}
	return out, nil
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// newTable is a writer for the commands' tables: columns two spaces apart.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// printList prints list as JSON with --json (none as [], not null), else
// as a table: header, then what row writes of each item.
func printList[T any](a *app, list []T, header string, row func(tw io.Writer, v T)) error {
	if a.json {
		if list == nil {
			list = []T{}
		}
		return writeJSON(a.stdout, list)
	}
	tw := newTable(a.stdout)
	fmt.Fprintln(tw, header)
	for _, v := range list {
		row(tw, v)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	data, err := jsonfmt.MarshalIndent(v)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func newShowCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Print a job's record as JSON (a queued one with its position and estimated start)",
		Example: `  hopper show 20261127T231005.123456Z-7f3a9c | jq .error`,
		Args:    exactArgs(1),
		RunE: a.withJob(func(s *spool.Spool, r *spool.Record) error {
			if err := s.Place(r, time.Now()); err != nil {
				return err
			}
			return writeJSON(a.stdout, r)
		}),
	}
}

func newCatCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "cat ID",
		Short:   "Print a finished job's answer text",
		Example: `  hopper cat daily-report`,
		Args:    exactArgs(1),
		RunE: a.withJob(func(s *spool.Spool, r *spool.Record) error {
			if !r.State.Terminal() {
				return fmt.Errorf("job %s is %s and has no answer yet; try 'hopper tail %s'", r.ID, r.State, r.ID)
			}
			return a.printAnswer(r)
		}),
	}
}

func newTailCmd(a *app) *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:   "tail ID",
		Short: "Follow a job's output as it is generated, until it ends",
		Example: `  hopper tail 20261127T231005.123456Z-7f3a9c
  hopper tail --raw ID   # the target's NDJSON chunks as they arrive`,
		Args: exactArgs(1),
		RunE: a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			printed := false
			cur, err := s.Get(args[0])
			if err == nil && cur.State == spool.StateQueued && cur.Error != nil {
				return fmt.Errorf("%s will never run: %s", cur.ID, cur.Error.Message)
			}
			if err == nil && (cur.State == spool.StateQueued || cur.State == spool.StateDeferred || cur.State == spool.StateHeld) {
				// Say why nothing comes yet (on stderr: stdout is the output).
				fmt.Fprintf(a.stderr, "%s is %s; waiting for it to start (Ctrl-C to stop waiting)\n", cur.ID, cur.State)
			}
			r, err := s.Follow(ctx, args[0], func(line []byte) error {
				if raw {
					printed = true
					_, err := fmt.Fprintf(a.stdout, "%s\n", line)
					return err
				}
				if t := ollama.ChunkText(line); t != "" {
					printed = true
					_, err := io.WriteString(a.stdout, t)
					return err
				}
				return nil
			})
			if err != nil {
				return jobLookupError(err)
			}
			if raw {
				if !printed && len(r.Response) > 0 {
					// Finished before (or without) streaming: its answer, as
					// the target's final object.
					var line bytes.Buffer
					if err := json.Compact(&line, r.Response); err != nil {
						line.Reset()
						line.Write(bytes.TrimSpace(r.Response))
					}
					_, err := fmt.Fprintf(a.stdout, "%s\n", line.Bytes())
					return err
				}
				return nil
			}
			if !printed {
				return a.printAnswer(r)
			}
			fmt.Fprintln(a.stdout)
			if r.State == spool.StateFailed {
				return fmt.Errorf("job %s failed (%s): %s", r.ID, r.Error.Kind, r.Error.Message)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "print the raw NDJSON chunks")
	return cmd
}

// lookupError adds hint, the command that lists what there is, to a
// not-found error.
func lookupError(err error, hint string) error {
	if errors.Is(err, spool.ErrNotFound) {
		return fmt.Errorf("%w (%s)", err, hint)
	}
	return err
}

func jobLookupError(err error) error { return lookupError(err, "see 'hopper ls'") }

// withConfig makes a command's RunE that runs run with the configuration.
func (a *app) withConfig(run func(cmd *cobra.Command, args []string, cfg Config) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cfg, err := a.config()
		if err != nil {
			return err
		}
		return run(cmd, args, cfg)
	}
}

// withSpool makes a command's RunE that runs run with the configured spool
// open, and closes it after.
func (a *app) withSpool(run func(cmd *cobra.Command, args []string, s *spool.Spool) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		return a.useSpool(func(s *spool.Spool) error { return run(cmd, args, s) })
	}
}

// useSpool runs run with the configured spool open, and closes it after.
func (a *app) useSpool(run func(s *spool.Spool) error) error {
	s, err := a.openSpool(false)
	if err != nil {
		return err
	}
	defer s.Close()
	return run(s)
}

// withJob makes the RunE of a command on one job ID: run gets the open
// spool and the job's record.
func (a *app) withJob(run func(s *spool.Spool, r *spool.Record) error) func(*cobra.Command, []string) error {
	return a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
		r, err := s.Get(args[0])
		if err != nil {
			return jobLookupError(err)
		}
		return run(s, r)
	})
}

// each runs op on each argument in turn and prints "ARG: done" with what
// op says it did, if anything; it goes on past a failure and returns every
// error, joined.
func (a *app) each(args []string, op func(arg string) (done string, err error)) error {
	var errs []error
	for _, arg := range args {
		done, err := op(arg)
		if err != nil {
			errs = append(errs, err)
		}
		if done != "" {
			fmt.Fprintf(a.stdout, "%s: %s\n", arg, done)
		}
	}
	return errors.Join(errs...)
}

// eachJob is each for job IDs: what op did is printed only when it
// succeeded, and a job that is not there is named with a hint.
func (a *app) eachJob(ids []string, op func(id string) (done string, err error)) error {
	return a.each(ids, func(id string) (string, error) {
		done, err := op(id)
		if err != nil {
			return "", jobLookupError(err)
		}
		return done, nil
	})
}

// submitJob checks data with check, if given, queues it as job id (a
// generated ID when empty) and prints the ID; with wait it then waits for
// the job and prints its answer.
func (a *app) submitJob(ctx context.Context, data []byte, id string, wait bool, check func([]byte) error) error {
	return a.useSpool(func(s *spool.Spool) error {
		if check != nil {
			if err := check(data); err != nil {
				return fmt.Errorf("job refused, nothing was queued: %w", err)
			}
		}
		id, err := s.Submit(data, spool.SubmitOptions{ID: id})
		if err != nil {
			return fmt.Errorf("job refused, nothing was queued: %w", err)
		}
		fmt.Fprintln(a.stdout, id)
		if !wait {
			return nil
		}
		return a.waitAndPrint(ctx, s, id)
	})
}

func newCancelCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "cancel ID...",
		Short:   "Cancel jobs: queued, deferred and held ones at once, a running one by aborting its request",
		Example: `  hopper cancel 20261127T231005.123456Z-7f3a9c`,
		Args:    minArgs(1),
		RunE: a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
			return a.eachJob(args, func(id string) (string, error) {
				running, err := s.Cancel(id, "canceled by hopper cancel")
				if running {
					return "running; asked the runner to abort it", err
				}
				return "canceled", err
			})
		}),
	}
}

func newRetryCmd(a *app) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "retry ID...|--failed",
		Short: "Queue failed jobs again, keeping their history",
		Example: `  hopper retry 20261127T231005.123456Z-7f3a9c
  hopper retry --failed`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usageErrorf("give job IDs or --failed, not both")
			}
			return a.useSpool(func(s *spool.Spool) error {
				if all {
					recs, err := s.List(spool.StateFailed)
					if err != nil {
						return err
					}
					for _, r := range recs {
						if len(r.Job) > 0 {
							args = append(args, r.ID)
						}
					}
				}
				return a.eachJob(args, func(id string) (string, error) {
					return "queued again", s.Retry(id)
				})
			})
		},
	}
	cmd.Flags().BoolVar(&all, "failed", false, "retry every failed job that has a JSON job to run")
	return cmd
}

func newHoldCmd(a *app, release bool) *cobra.Command {
	use, short, verb := "hold ID...", "Park queued or deferred jobs in hold/; they never run or expire there", "held"
	op := (*spool.Spool).Hold
	if release {
		use, short, verb = "release ID...", "Queue held jobs again", "released"
		op = (*spool.Spool).Release
	}
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  hopper " + strings.Fields(use)[0] + " 20261127T231005.123456Z-7f3a9c",
		Args:    minArgs(1),
		RunE: a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
			return a.eachJob(args, func(id string) (string, error) {
				return verb, op(s, id)
			})
		}),
	}
}

func newPauseCmd(a *app, resume bool) *cobra.Command {
	use, short := "pause", "Stop claiming new jobs (creates SPOOL/PAUSED); the running job finishes"
	if resume {
		use, short = "resume", "Claim jobs again (removes SPOOL/PAUSED)"
	}
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  hopper " + use,
		Args:    exactArgs(0),
		RunE: a.withSpool(func(cmd *cobra.Command, args []string, s *spool.Spool) error {
			if resume {
				if err := s.Resume(); err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, "resumed: the runner claims jobs again")
				return nil
			}
			if err := s.Pause(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "paused: the runner claims nothing new ('hopper resume' to go on)")
			return nil
		}),
	}
}

func newPruneCmd(a *app) *cobra.Command {
	var olderThan string
	cmd := &cobra.Command{
		Use:   "prune --older-than AGE [STATE...]",
		Short: "Remove done and failed records older than AGE, and batches that ended before",
		Long: `Prune removes the records in done/ and failed/ last written more than AGE
ago. The records of a batch's lines stay until the batch has ended. Pruning
done (the default, with failed) also removes the batches that ended more
than AGE ago: their record, input, output and errors files.`,
		Example: `  hopper prune --older-than 7d
  hopper prune --older-than 36h failed`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if olderThan == "" {
				return usageErrorf("--older-than is required, e.g. --older-than 7d")
			}
			d, err := yamlconf.ParseDuration(olderThan)
			if err != nil || d <= 0 {
				return usageErrorf("--older-than: want a duration like 7d or 36h, got %q", olderThan)
			}
			states, err := parseStates(args)
			if err != nil {
				return err
			}
			return a.useSpool(func(s *spool.Spool) error {
				n, err := batch.New(s).Prune(time.Now().Add(-d), states...)
				if err != nil {
					return err
				}
				if n.Batches > 0 {
					fmt.Fprintf(a.stdout, "removed %d records and %d ended batches\n", n.Records, n.Batches)
				} else {
					fmt.Fprintf(a.stdout, "removed %d records\n", n.Records)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&olderThan, "older-than", "", "age of the records to remove (7d, 36h, 90m)")
	return cmd
}

// checkFunctionJob refuses a job that names a function which does not
// exist or whose vars do not expand, as the runner would at claim.
func (a *app) checkFunctionJob(data []byte) error {
	j, err := spool.ParseJob(data, 0)
	if err != nil || j.Function == "" {
		return nil // Submit reports parse errors
	}
	set, err := a.loadFunctions()
	if err != nil {
		return err
	}
	fn, err := set.Lookup(j.Function)
	if err != nil {
		return err
	}
	_, _, err = fn.Expand(j.Vars)
	return err
}
