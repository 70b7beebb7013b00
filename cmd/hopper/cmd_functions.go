package main

import (
	"errors"
	"fmt"
	"github.com/hopper-dev/hopper/internal/jsonfmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hopper-dev/hopper/functions"
)

func newFunctionsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "functions",
		Short: "List the functions: functions_dir's files and the config's functions:",
		Long: `Functions lists every function with its model, endpoint, vars (* marks the
required ones), whether its answers are checked against a JSON schema, and
where it is defined. With --json it prints each function's whole definition.
Functions that do not load are reported and nothing is listed; 'hopper
functions validate' checks them without listing.`,
		Example: `  hopper functions
  hopper functions --json | jq '.[] | select(.schema) | .name'
  hopper functions validate`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := a.loadFunctions()
			if err != nil {
				return err
			}
			var infos []functions.Info
			for _, name := range set.Names() {
				f, _ := set.Get(name)
				infos = append(infos, f.Info())
			}
			if len(infos) == 0 && !a.json {
				cfg, _ := a.config()
				fmt.Fprintf(a.stdout, "no functions: %s holds no NAME.yaml files and the config defines none\n", cfg.FunctionsDir)
				return nil
			}
			return printList(a, infos, "NAME\tMODEL\tENDPOINT\tVARS\tSCHEMA\tSOURCE", func(tw io.Writer, f functions.Info) {
				vars := []string{}
				for _, name := range slices.Sorted(maps.Keys(f.Vars)) {
					if f.Vars[name].Required {
						name += "*"
					}
					vars = append(vars, name)
				}
				if len(vars) == 0 {
					vars = append(vars, "-")
				}
				schema := "no"
				switch {
				case f.Schema:
					schema = "yes"
				case f.Format != nil:
					schema = "json"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Model, f.Endpoint, strings.Join(vars, ", "), schema, f.Source)
			})
		},
	}
	cmd.AddCommand(newFunctionsValidateCmd(a))
	return cmd
}

func newFunctionsValidateCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check every function and report all problems; exit 1 if there are any",
		Long: `Validate loads the functions as the runner does — functions_dir's NAME.yaml
files and the config's functions: section — and reports every problem, each
naming the file and line and the key (functions.NAME.KEY in the config):
unknown keys, a missing model, templates that do not parse or use undeclared
vars, invalid JSON schemas, bad durations, a name defined twice. The runner
keeps its last good set while the files have problems, so run this after
editing them.`,
		Example: `  hopper functions validate && echo ok`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := a.loadFunctions()
			if err != nil {
				return err
			}
			cfg, _ := a.config()
			names := set.Names()
			note := ""
			if _, err := os.Stat(cfg.FunctionsDir); errors.Is(err, fs.ErrNotExist) {
				note = fmt.Sprintf(" (functions_dir %s does not exist)", cfg.FunctionsDir)
			}
			switch len(names) {
			case 0:
				fmt.Fprintf(a.stdout, "ok: no functions%s\n", note)
			case 1:
				fmt.Fprintf(a.stdout, "ok: 1 function: %s%s\n", names[0], note)
			default:
				fmt.Fprintf(a.stdout, "ok: %d functions: %s%s\n", len(names), strings.Join(names, ", "), note)
			}
			return nil
		},
	}
}

func newInvokeCmd(a *app) *cobra.Command {
	var vars []string
	var priority int
	var wait bool
	var webhook, id string
	cmd := &cobra.Command{
		Use:   "invoke NAME [--var name=value|name=@file]...",
		Short: "Queue a call of a function with vars",
		Long: `Invoke checks that function NAME exists and that the vars fill its templates,
then queues the job {"function": NAME, "vars": {...}} in new/, atomically and
durably, and prints its ID. Bad input — an unknown function, a missing
required var, a var the function does not take — is refused with a message
and nothing is written.

Each --var is name=value; name=@FILE reads the value from a file, name=@-
from standard input, and name=@@text is the literal "@text". Values are
strings. Without --priority the job takes the function's priority.
With --wait, invoke waits for the answer and prints it: the parsed output for
functions with a schema, else the answer text.`,
		Example: `  hopper invoke summarize --var text=@report.txt --wait
  git log -1 --format=%B | hopper invoke classify --var text=@- --wait
  hopper invoke extract --var text="Ada Lovelace, ada@example.com" --priority 50`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			for _, v := range vars {
				if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
					return usageErrorf("--var %q: want name=value, name=@file or name=@- (standard input)", v)
				}
			}
			set, err := a.loadFunctions()
			if err != nil {
				return err
			}
			f, err := set.Lookup(name)
			if err != nil {
				return fmt.Errorf("job refused, nothing was queued: %w (see 'hopper functions')", err)
			}
			given, err := functions.ParseVars(vars, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if _, _, err := f.Expand(given); err != nil {
				return fmt.Errorf("job refused, nothing was queued: %w", err)
			}
			job := map[string]any{"function": name, "vars": given}
			switch {
			case cmd.Flags().Changed("priority"):
				job["priority"] = priority
			case f.Priority != 0:
				job["priority"] = f.Priority // so the queue orders it before it is expanded
			}
			if webhook != "" {
				job["webhook"] = webhook
			}
			data, err := jsonfmt.Marshal(job)
			if err != nil {
				return err
			}
			return a.submitJob(cmd.Context(), data, id, wait, nil)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&vars, "var", nil, "set a var: `NAME=VALUE`, NAME=@FILE, or NAME=@- for standard input (repeatable)")
	fl.IntVar(&priority, "priority", 0, "higher runs first (default: the function's priority)")
	fl.StringVar(&webhook, "webhook", "", "URL to notify when the job changes state (default: the function's webhook)")
	fl.StringVar(&id, "id", "", "name the job (default: a generated, time-sorted ID)")
	fl.BoolVar(&wait, "wait", false, "wait for the job to finish and print the answer")
	return cmd
}

// loadFunctions loads the configured functions as the runner does. Its
// error lists every problem, one per line.
func (a *app) loadFunctions() (*functions.Set, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	set, err := functions.Load(cfg.Functions, cfg.FunctionsDir)
	if err == nil {
		return set, nil
	}
	problems := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		problems = j.Unwrap()
	}
	if len(problems) == 1 {
		return nil, fmt.Errorf("functions: %w", problems[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the functions have %d problems:", len(problems))
	for _, p := range problems {
		b.WriteString("\n  " + strings.ReplaceAll(p.Error(), "\n", "\n    "))
	}
	return nil, errors.New(b.String())
}
