package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// testApp returns an app writing to buffers, with a "test-show" subcommand that
// prints the spool it was configured with and logs one line.
func testApp(t *testing.T, env []string) (a *app, stdout, stderr *bytes.Buffer) {
	t.Helper()
	stdout, stderr = new(bytes.Buffer), new(bytes.Buffer)
	a = newApp(stdout, stderr, env)
	show := &cobra.Command{
		Use:  "test-show",
		Args: cobra.NoArgs,
		RunE: a.withConfig(func(cmd *cobra.Command, args []string, cfg Config) error {
			a.logger.Debug("showing", "spool", cfg.Spool)
			_, err := a.stdout.Write([]byte(cfg.Spool + "\n"))
			return err
		}),
	}
	show.Flags().String("max-wait", "", "")
	a.bindFlag("max_wait", show.Flags().Lookup("max-wait"))
	var required string
	need := &cobra.Command{Use: "test-need", RunE: func(*cobra.Command, []string) error { return nil }}
	need.Flags().StringVar(&required, "x", "", "")
	if err := need.MarkFlagRequired("x"); err != nil {
		t.Fatal(err)
	}
	a.root.AddCommand(show, need,
		&cobra.Command{Use: "test-fail", RunE: func(*cobra.Command, []string) error { return errors.New("boom") }},
		&cobra.Command{Use: "test-misuse", RunE: func(*cobra.Command, []string) error { return usageErrorf("give one of -a, -b") }},
	)
	return a, stdout, stderr
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		wantStderr string
	}{
		{"Success", []string{"test-show"}, 0, ""},
		{"NoArgumentsPrintsHelp", nil, 0, ""},
		{"HelpFlag", []string{"test-show", "--help"}, 0, ""},
		{"UnknownFlag", []string{"test-show", "--frob"}, 2, "hopper: unknown flag: --frob\nRun 'hopper test-show --help' for usage.\n"},
		{"BadFlagValue", []string{"test-show", "--json=maybe"}, 2, `invalid argument "maybe"`},
		{"WrongArgCount", []string{"version", "extra"}, 2, "Run 'hopper version --help' for usage.\n"},
		{"UnknownCommand", []string{"frob"}, 2, "hopper: unknown command \"frob\" for \"hopper\"\nRun 'hopper --help' for usage.\n"},
		{"MissingRequiredFlag", []string{"test-need"}, 2, `required flag(s) "x" not set`},
		{"UsageErrorFromACommand", []string{"test-misuse"}, 2, "hopper: give one of -a, -b\nRun 'hopper test-misuse --help' for usage.\n"},
		{"Failure", []string{"test-fail"}, 1, "hopper: boom\n"},
		{"BadConfigIsAFailure", []string{"--config", "/nonexistent/hopper.yaml", "test-show"}, 1, "hopper: config: open /nonexistent/hopper.yaml: no such file or directory\n"},
		{"BadFlagForConfig", []string{"test-show", "--max-wait", "abc"}, 1, `hopper: config --max-wait: max_wait: must be a duration like "10m", got "abc"` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(t.TempDir()) // no hopper.yaml around
			a, _, stderr := testApp(t, nil)
			if got := execute(context.Background(), a, tc.args); got != tc.code {
				t.Errorf("exit code: got %d, want %d (stderr %q)", got, tc.code, stderr)
			}
			if tc.wantStderr == "" && tc.code == 0 && stderr.Len() > 0 {
				t.Errorf("stderr: got %q, want nothing", stderr)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr: got %q, want %q", stderr, tc.wantStderr)
			}
		})
	}
}

func TestRunUsesTheRealTree(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if got := run(context.Background(), []string{"--frob"}, &stdout, &stderr, nil); got != 2 {
		t.Errorf("exit code: got %d, want 2", got)
	}
	if got := run(context.Background(), []string{"version"}, &stdout, &stderr, nil); got != 0 {
		t.Errorf("version: exit code %d, stderr %q", got, stderr.String())
	}
}

func TestUnknownConfigKeyFailsACommand(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("hopper.yaml", []byte("max_wiat: 1m\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	a, _, stderr := testApp(t, nil)
	if got := execute(context.Background(), a, []string{"test-show"}); got != 1 {
		t.Errorf("exit code: got %d, want 1", got)
	}
	want := `hopper: config ` + filepath.Join(dir, "hopper.yaml") + `:1: unknown key "max_wiat" (did you mean "max_wait"?)` + "\n"
	if stderr.String() != want {
		t.Errorf("stderr: got %q, want %q", stderr, want)
	}

	// version must still work, so a user can report the bug.
	a, stdout, _ := testApp(t, nil)
	if got := execute(context.Background(), a, []string{"version"}); got != 0 || !strings.HasPrefix(stdout.String(), "hopper ") {
		t.Errorf("version with a bad config: exit %d, stdout %q", got, stdout)
	}
}

func TestRootFlagsEnvAndFile(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	file := filepath.Join(dir, "custom.yaml")
	if err := os.WriteFile(file, []byte("spool: /from/file\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"DefaultIsUnderHOME", []string{"test-show"}, []string{"HOME=/home/me"}, "/home/me/.local/state/hopper/spool"},
		{"DefaultIsUnderXDG_STATE_HOME", []string{"test-show"}, []string{"HOME=/home/me", "XDG_STATE_HOME=/state"}, "/state/hopper/spool"},
		{"ARelativeXDG_STATE_HOMEIsIgnored", []string{"test-show"}, []string{"HOME=/home/me", "XDG_STATE_HOME=state"}, "/home/me/.local/state/hopper/spool"},
		{"File", []string{"--config", file, "test-show"}, nil, "/from/file"},
		{"FileFromHOPPER_CONFIG", []string{"test-show"}, []string{"HOPPER_CONFIG=" + file}, "/from/file"},
		{"EnvBeatsFile", []string{"--config", file, "test-show"}, []string{"HOPPER_SPOOL=/from/env"}, "/from/env"},
		{"FlagBeatsEnv", []string{"--config", file, "--spool", "/from/flag", "test-show"}, []string{"HOPPER_SPOOL=/from/env"}, "/from/flag"},
		{"FlagAfterTheCommand", []string{"test-show", "--spool=/from/flag"}, nil, "/from/flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, stdout, stderr := testApp(t, tc.env)
			if got := execute(context.Background(), a, tc.args); got != 0 {
				t.Fatalf("exit code %d, stderr %q", got, stderr)
			}
			if got := strings.TrimSpace(stdout.String()); got != tc.want {
				t.Errorf("spool: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLoggerFollowsTheConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	a, _, stderr := testApp(t, []string{"HOPPER_LOG_LEVEL=debug"})
	if got := execute(context.Background(), a, []string{"--log-format", "json", "test-show"}); got != 0 {
		t.Fatalf("exit code %d, stderr %q", got, stderr)
	}
	var line map[string]any
	if err := json.Unmarshal(stderr.Bytes(), &line); err != nil || line["msg"] != "showing" || line["level"] != "DEBUG" {
		t.Errorf("stderr: got %q (%v), want one JSON debug line", stderr, err)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	root := newRootCmd(&stdout, &stderr, nil)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^hopper \S+ \(go1\.\d+\S*\)\n$`).MatchString(stdout.String()) {
		t.Errorf("got %q, want \"hopper VERSION (GO VERSION)\"", stdout.String())
	}

	a, out, _ := testApp(t, nil)
	if got := execute(context.Background(), a, []string{"version", "--json"}); got != 0 {
		t.Fatalf("--json: exit code %d", got)
	}
	var v versionInfo
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("--json: got %q (%v)", out, err)
	}
}

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"ModuleVersion", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: vcs("0123456789abcdef", "false")}, "v1.2.3"},
		{"Revision", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123456789abcdef", "false")}, "0123456789ab"},
		{"DirtyRevision", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}, Settings: vcs("0123456789abcdef", "true")}, "0123456789ab-dirty"},
		{"Nothing", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}}, "devel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := buildVersion(tc.bi, true)
			if v.Version != tc.want || v.Go != "go1.26.0" {
				t.Errorf("got %+v, want version %q, go go1.26.0", v, tc.want)
			}
		})
	}
	if v := buildVersion(nil, false); v.Version != "devel" || v.Go == "" {
		t.Errorf("no build info: got %+v", v)
	}
}

func TestBindFlagRefusesUnknownKeys(t *testing.T) {
	a, _, _ := testApp(t, nil)
	defer func() {
		if recover() == nil {
			t.Error("bindFlag with an unknown key did not panic")
		}
	}()
	a.bindFlag("max_wiat", a.root.PersistentFlags().Lookup("spool"))
}

func TestSubcommandPersistentPreRunStillLoadsConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	a := newApp(&stdout, &stderr, []string{"HOPPER_SPOOL=/env"})
	ownRan := false
	parent := &cobra.Command{Use: "parent", PersistentPreRun: func(*cobra.Command, []string) { ownRan = true }}
	parent.AddCommand(&cobra.Command{Use: "child", RunE: a.withConfig(func(_ *cobra.Command, _ []string, cfg Config) error {
		_, err := stdout.WriteString(cfg.Spool)
		return err
	})})
	a.root.AddCommand(parent)
	a.chainPreRuns(a.root)
	if got := execute(context.Background(), a, []string{"parent", "child"}); got != 0 || !ownRan || stdout.String() != "/env" || !a.started {
		t.Errorf("exit %d, own pre-run ran %v, stdout %q, started %v; stderr %q", got, ownRan, stdout.String(), a.started, stderr.String())
	}
}
