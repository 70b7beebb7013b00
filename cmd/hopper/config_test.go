package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/hopper-dev/hopper/functions"
	"github.com/hopper-dev/hopper/internal/yamlconf"
	"github.com/hopper-dev/hopper/runner"
)

// parse is parseConfig on a string, named hopper.yaml in errors.
func parse(t *testing.T, file string, env []string) (Config, error) {
	t.Helper()
	return parseConfig(strings.NewReader(file), "hopper.yaml", env, nil)
}

// configError asserts err is a *ConfigError for key and returns it.
func configError(t *testing.T, err error, key string) *ConfigError {
	t.Helper()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got error %v (%T), want a *ConfigError for %q", err, err, key)
	}
	if ce.Key != key {
		t.Fatalf("got key %q in %q, want %q", ce.Key, err, key)
	}
	return ce
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNoFileGivesDefaults(t *testing.T) {
	for _, file := range []string{"", "# only a comment\n", "---\n"} {
		cfg, err := parse(t, file, nil)
		if err != nil {
			t.Fatalf("%q: %v", file, err)
		}
		if !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("%q: got %+v, want Default() %+v", file, cfg, Default())
		}
	}
	cfg, err := parseConfig(nil, "", nil, nil)
	if err != nil || !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("no file: got %+v, %v; want Default()", cfg, err)
	}
}

const examplePath = "../../configs/hopper.yaml"

func TestExampleConfigIsTheDefaults(t *testing.T) {
	f, err := os.Open(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := parseConfig(f, examplePath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	if !reflect.DeepEqual(cfg, want) {
		got, wantV := reflect.ValueOf(cfg), reflect.ValueOf(want)
		for i := range got.NumField() {
			if !reflect.DeepEqual(got.Field(i).Interface(), wantV.Field(i).Interface()) {
				t.Errorf("%s: example has %#v, Default() has %#v", got.Type().Field(i).Name,
					got.Field(i).Interface(), wantV.Field(i).Interface())
			}
		}
	}
}

func TestExampleConfigSetsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			present[key] = true
			if v := n.Content[i+1]; v.Kind == yaml.MappingNode && key != "functions" {
				walk(v, key+".")
			}
		}
	}
	walk(doc.Content[0], "")
	for key := range configKeys() {
		if _, element, ok := strings.Cut(key, "[]."); ok {
			// The default has no webhooks or targets: their fields are
			// documented in comments.
			if !regexp.MustCompile(`(?m)^\s*#\s+(- )?` + element + `\b`).Match(data) {
				t.Errorf("the example does not document %s", key)
			}
			continue
		}
		if !present[key] {
			t.Errorf("the example does not set %s", key)
		}
	}
	for key := range present {
		if _, ok := configKeys()[key]; !ok {
			t.Errorf("the example sets %s, which Config does not have", key)
		}
	}
}

// flagSet returns flags bound to config keys the way bindFlag binds them, and
// sets the given ones as if on the command line.
func flagSet(t *testing.T, set map[string]string) map[string][]*pflag.Flag {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("spool", "./spool", "")
	fs.String("max-wait", "", "")
	fs.StringSlice("tokens", nil, "")
	fs.Duration("timeout", 0, "")
	var args []string
	for name, v := range set {
		args = append(args, "--"+name+"="+v)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return map[string][]*pflag.Flag{
		"spool":    {fs.Lookup("spool")},
		"max_wait": {fs.Lookup("max-wait")},
		"tokens":   {fs.Lookup("tokens")},
		"timeout":  {fs.Lookup("timeout")},
	}
}

func TestPrecedence(t *testing.T) {
	const file = "max_wait: 1m\nspool: /file\nhooks:\n  dir: /file/hooks\n  secret: whsec_ZmlsZQ==\n"
	env := []string{"HOPPER_MAX_WAIT=2m", "HOPPER_HOOKS_SECRET=whsec_ZW52"}
	for _, tc := range []struct {
		name       string
		file       string
		env        []string
		flags      map[string]string
		wantWait   time.Duration
		wantSecret string
	}{
		{"DefaultsWhenNothingIsSet", "", nil, nil, 10 * time.Minute, ""},
		{"FileBeatsDefault", file, nil, nil, time.Minute, "whsec_ZmlsZQ=="},
		{"EnvBeatsFile", file, env, nil, 2 * time.Minute, "whsec_ZW52"},
		{"FlagBeatsEnv", file, env, map[string]string{"max-wait": "3m"}, 3 * time.Minute, "whsec_ZW52"},
		{"FlagBeatsDefault", "", nil, map[string]string{"max-wait": "4m"}, 4 * time.Minute, ""},
		{"EnvBeatsDefault", "", env, nil, 2 * time.Minute, "whsec_ZW52"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(strings.NewReader(tc.file), "hopper.yaml", tc.env, flagSet(t, tc.flags))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.MaxWait != tc.wantWait {
				t.Errorf("max_wait: got %v, want %v", cfg.MaxWait, tc.wantWait)
			}
			if cfg.Hooks.Secret != tc.wantSecret {
				t.Errorf("hooks.secret: got %q, want %q", cfg.Hooks.Secret, tc.wantSecret)
			}
		})
	}
	t.Run("NestedEnvKeepsTheFileSiblings", func(t *testing.T) {
		cfg, err := parseConfig(strings.NewReader(file), "hopper.yaml", env, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Hooks.Dir != "/file/hooks" || cfg.Spool != "/file" {
			t.Errorf("got hooks.dir %q, spool %q; want the file's", cfg.Hooks.Dir, cfg.Spool)
		}
	})
	t.Run("FlagsNotGivenDoNotOverride", func(t *testing.T) {
		cfg, err := parseConfig(strings.NewReader(file), "hopper.yaml", nil, flagSet(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Spool != "/file" {
			t.Errorf("spool: got %q, want the file's /file", cfg.Spool)
		}
	})
	t.Run("ListsFromEnvAndFlagsAndFile", func(t *testing.T) {
		cfg, err := parseConfig(strings.NewReader("tokens: [f1, f2]\npinned: a, b\n"), "hopper.yaml",
			[]string{"HOPPER_HOOKS_ALLOW=10.0.0.0/8, hooks.internal"}, flagSet(t, map[string]string{"tokens": "x,y"}))
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"x", "y"}; !slices.Equal(cfg.Tokens, want) {
			t.Errorf("tokens: got %q, want %q", cfg.Tokens, want)
		}
		if want := []string{"a", "b"}; !slices.Equal(cfg.Pinned, want) {
			t.Errorf("pinned: got %q, want %q", cfg.Pinned, want)
		}
		if want := []string{"10.0.0.0/8", "hooks.internal"}; !slices.Equal(cfg.Hooks.Allow, want) {
			t.Errorf("hooks.allow: got %q, want %q", cfg.Hooks.Allow, want)
		}
	})
	t.Run("TypedFlagsOverlayToo", func(t *testing.T) {
		cfg, err := parseConfig(nil, "", nil, flagSet(t, map[string]string{"timeout": "90s"}))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Timeout != 90*time.Second {
			t.Errorf("timeout: got %v, want 1m30s", cfg.Timeout)
		}
	})
	t.Run("EmptyEnvCountsAsUnset", func(t *testing.T) {
		cfg, err := parseConfig(strings.NewReader(file), "hopper.yaml", []string{"HOPPER_SPOOL="}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Spool != "/file" {
			t.Errorf("spool: got %q, want the file's /file", cfg.Spool)
		}
	})
}

func TestEnvNames(t *testing.T) {
	for key, want := range map[string]string{
		"hooks.secret":     "HOPPER_HOOKS_SECRET",
		"max_wait":         "HOPPER_MAX_WAIT",
		"retention.failed": "HOPPER_RETENTION_FAILED",
		"log.level":        "HOPPER_LOG_LEVEL",
	} {
		if got := envName(key); got != want {
			t.Errorf("envName(%q) = %q, want %q", key, got, want)
		}
	}
	seen := map[string]string{}
	for _, key := range envKeys() {
		if other, dup := seen[envName(key)]; dup {
			t.Errorf("%s and %s share %s", key, other, envName(key))
		}
		seen[envName(key)] = key
	}
	if _, ok := seen["HOPPER_FUNCTIONS"]; ok {
		t.Error("functions must not be settable from the environment")
	}
}

func TestUnknownKeyIsAnErrorNamingKeyAndFile(t *testing.T) {
	for _, tc := range []struct {
		name, file, key, want string
	}{
		{"Typo", "spool: x\nmax_wiat: 1m\n", "max_wiat",
			`config hopper.yaml:2: unknown key "max_wiat" (did you mean "max_wait"?)`},
		{"Nested", "hooks:\n  secrett: x\n", "hooks.secrett",
			`config hopper.yaml:2: unknown key "hooks.secrett" (did you mean "hooks.secret"?)`},
		{"InAListElement", "hooks:\n  webhooks:\n    - url: https://x\n      evnts: [job.done]\n", "hooks.webhooks[0].evnts",
			`config hopper.yaml:4: unknown key "hooks.webhooks[0].evnts" (did you mean "hooks.webhooks[0].events"?)`},
		{"AtTheWrongLevel", "format: json\n", "format",
			`config hopper.yaml:1: unknown key "format" (did you mean "log.format"?)`},
		{"WrongCase", "Max_Wait: 1m\n", "Max_Wait",
			`config hopper.yaml:1: unknown key "Max_Wait" (did you mean "max_wait"?)`},
		{"NothingClose", "frobnicate: 1\n", "frobnicate",
			`config hopper.yaml:1: unknown key "frobnicate"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.file, nil)
			configError(t, err, tc.key)
			if err.Error() != tc.want {
				t.Errorf("got  %s\nwant %s", err, tc.want)
			}
		})
	}
}

func TestFunctionsKeepTheirKeysAsWritten(t *testing.T) {
	cfg, err := parse(t, "functions:\n  Summarize:\n    model: llama3.2\n    format: {properties: {firstName: {type: string}}}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cfg.Functions["Summarize"].(functions.Inline)
	fn, ok := in.Def.(map[string]any)
	if !ok || in.Key != "functions.Summarize" {
		t.Fatalf("functions: got %#v, want key Summarize", cfg.Functions)
	}
	props := fn["format"].(map[string]any)["properties"].(map[string]any)
	if _, ok := props["firstName"]; !ok {
		t.Errorf("schema properties: got %v, want firstName kept", props)
	}
}

// inlineFunctions is a hopper.yaml whose functions: section has problems:
// a misspelt key, values of the wrong type, nested and in a list.
const inlineFunctions = `max_wait: 1m
functions:
  greet:
    model: llama3.2
    prompt: "hi {{.name}}"
    descripton: says hi
    max_attempts: three
    vars:
      name: {required: maybe}
  ask:
    model: llama3.2
    messages:
      - {role: user, content: hi}
      - role: boss
        content: hi
`

// inlineProblems is every problem of inlineFunctions, with its line, in the
// order of the file.
var inlineProblems = []string{
	`hopper.yaml:6: functions.greet.descripton: unknown key (did you mean "description"?)`,
	`hopper.yaml:7: functions.greet.max_attempts: must be an integer, got "three"`,
	`hopper.yaml:9: functions.greet.vars.name.required: must be true or false, got "maybe"`,
	`hopper.yaml:14: functions.ask.messages[1].role: must be one of system, user, assistant, tool, got "boss"`,
}

func TestInlineFunctionErrorsNameLineAndKey(t *testing.T) {
	cfg, err := parse(t, inlineFunctions, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = functions.Load(cfg.Functions, "")
	if err == nil {
		t.Fatal("Load: got no error")
	}
	var got []string
	for _, p := range err.(interface{ Unwrap() []error }).Unwrap() {
		got = append(got, p.Error())
	}
	var want []string
	for _, p := range inlineProblems {
		want = append(want, "config "+p)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	var de *functions.DefinitionError
	if !errors.As(err, &de) || de.Source != "config" || de.File != "hopper.yaml" || de.Line != 6 || de.Field != "descripton" {
		t.Errorf("first problem: got %+v, want config in hopper.yaml, line 6, field descripton", de)
	}
}

func TestFunctionsValidateNamesTheConfigFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hopper.yaml")
	if err := os.WriteFile(path, []byte(inlineFunctions+"functions_dir: ''\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	a := newApp(&stdout, &stderr, []string{"HOPPER_CONFIG=" + path})
	if !slices.ContainsFunc(a.root.Commands(), func(c *cobra.Command) bool { return c.Name() == "functions" }) {
		a.root.AddCommand(newFunctionsCmd(a))
	}
	if code := execute(context.Background(), a, []string{"functions", "validate"}); code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	for _, p := range inlineProblems {
		if want := "config " + filepath.Dir(path) + string(filepath.Separator) + p; !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
		}
	}
}

func TestFunctionsThroughAnAliasHaveTheLineOfTheirName(t *testing.T) {
	cfg, err := parse(t, "functions:\n  a: &fn {model: m, prompt: hi, tmeout: 1m}\n  b: *fn\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = functions.Load(cfg.Functions, "")
	for _, want := range []string{
		`config hopper.yaml:2: functions.a.tmeout: unknown key (did you mean "timeout"?)`,
		`config hopper.yaml:3: functions.b.tmeout: unknown key (did you mean "timeout"?)`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	}
}

func TestBadValuesNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        []string
		key, want  string
	}{
		{"DurationInFile", "max_wait: abc\n", nil, "max_wait",
			`config hopper.yaml:1: max_wait: must be a duration like "10m", got "abc"`},
		{"DurationInEnv", "", []string{"HOPPER_MAX_WAIT=abc"}, "max_wait",
			`config $HOPPER_MAX_WAIT: max_wait: must be a duration like "10m", got "abc"`},
		{"NestedDuration", "retention:\n  done: 1 week\n", nil, "retention.done",
			`config hopper.yaml:2: retention.done: must be a duration like "10m", got "1 week"`},
		{"DurationWithoutUnit", "timeout: 30\n", nil, "timeout",
			`config hopper.yaml:1: timeout: must be a duration like "10m", got "30"`},
		{"Integer", "max_attempts: three\n", nil, "max_attempts",
			`config hopper.yaml:1: max_attempts: must be an integer, got "three"`},
		{"Bool", "fsync: maybe\n", nil, "fsync",
			`config hopper.yaml:1: fsync: must be true or false, got "maybe"`},
		{"BoolInEnv", "", []string{"HOPPER_FSYNC=nope"}, "fsync",
			`config $HOPPER_FSYNC: fsync: must be true or false, got "nope"`},
		{"MappingForAString", "spool: {a: b}\n", nil, "spool",
			`config hopper.yaml:1: spool: must be a string, got a mapping`},
		{"ScalarForAMapping", "hooks: yes\n", nil, "hooks",
			`config hopper.yaml:1: hooks: must be a mapping, got "yes"`},
		{"MappingForAList", "tokens: {a: b}\n", nil, "tokens",
			`config hopper.yaml:1: tokens: must be a list, got a mapping`},
		{"Mode", "dir_mode: rwx\n", nil, "dir_mode",
			`config hopper.yaml:1: dir_mode: must be an octal mode like "0750", got "rwx"`},
		{"Size", "max_job_size: lots\n", nil, "max_job_size",
			`config hopper.yaml:1: max_job_size: must be a size like "32MiB", got "lots"`},
		{"SetTwice", "spool: a\nspool: b\n", nil, "spool",
			`config hopper.yaml:2: spool: set twice (first on line 1)`},
		{"Validation", "\n\nschedule: lifo\n", nil, "schedule",
			`config hopper.yaml:3: schedule: must be drain or fifo, got "lifo"`},
		{"ValidationFromEnv", "", []string{"HOPPER_LOG_LEVEL=trace"}, "log.level",
			`config $HOPPER_LOG_LEVEL: log.level: must be debug, info, warn or error, got "trace"`},
		{"ValidationInAList", "hooks:\n  webhooks:\n    - url: https://a\n    - url: ftp://b\n", nil, "hooks.webhooks[1].url",
			`config hopper.yaml:4: hooks.webhooks[1].url: must be an http or https URL, got "ftp://b"`},
		{"NotAMapping", "- a\n- b\n", nil, "",
			`config hopper.yaml:1: must be a mapping of settings`},
		{"ASecondDocument", "spool: a\n---\nspool: b\n", nil, "",
			`config hopper.yaml:3: holds more than one YAML document (---)`},
		{"AHooksSettingTheHooksPackageRefuses", "hooks:\n  env: [PATH, HOPPER_TOKENS]\n", nil, "hooks.env[1]",
			`config hopper.yaml:2: hooks.env[1]: HOPPER_TOKENS is one of hopper's own settings, which hooks never get; hooks get HOPPER_JOB_ID, HOPPER_STATE, HOPPER_EVENT, HOPPER_SPOOL and HOPPER_RECORD`},
		{"ATargetSettingTheRunnerRefuses", "targets:\n  - {name: a, url: x}\n  - name: b\n    url: y\n    models: ['[']\n", nil, "targets[1].models[0]",
			`config hopper.yaml:5: targets[1].models[0]: must be a model name or a pattern like "llama3*", got "["`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.file, tc.env)
			configError(t, err, tc.key)
			if err.Error() != tc.want {
				t.Errorf("got  %s\nwant %s", err, tc.want)
			}
		})
	}
	t.Run("YAMLSyntax", func(t *testing.T) {
		_, err := parse(t, "spool: [a\n", nil)
		if want := `config hopper.yaml: not valid YAML: line 1: did not find expected ',' or ']'`; err == nil || err.Error() != want {
			t.Errorf("got  %v\nwant %s", err, want)
		}
	})
	t.Run("BadDurationWithoutASource", func(t *testing.T) {
		_, derr := yamlconf.ParseDuration("abc")
		err := &ConfigError{Key: "max_wait", Err: derr}
		if want := `config: max_wait: must be a duration like "10m", got "abc"`; err.Error() != want {
			t.Errorf("got %s, want %s", err, want)
		}
	})
}

func TestValuesAsWritten(t *testing.T) {
	cfg, err := parse(t, `
keep_alive: 5m
max_age: 7d
retention: {done: 36h, failed: 1d12h}
dir_mode: 0700
file_mode: "600"
max_job_size: 1048576
fsync: false
max_attempts: 5
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KeepAlive != "5m" || cfg.MaxAge != 7*24*time.Hour || cfg.Retention.Done != 36*time.Hour ||
		cfg.Retention.Failed != 36*time.Hour || cfg.DirMode != 0o700 || cfg.FileMode != 0o600 ||
		cfg.MaxJobSize != 1<<20 || cfg.Fsync || cfg.MaxAttempts != 5 {
		t.Errorf("got %+v", cfg)
	}
	cfg, err = parse(t, "keep_alive: 3600\n", nil)
	if err != nil || cfg.KeepAlive != "3600" {
		t.Errorf("keep_alive 3600: got %q, %v; want \"3600\" kept as a string", cfg.KeepAlive, err)
	}
}

func TestYAMLMergeKeys(t *testing.T) {
	cfg, err := parse(t, `
hooks:
  webhooks:
    - &hook {url: https://a.example, events: [job.done]}
    - {<<: *hook, url: https://b.example}
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Webhook{
		{URL: "https://a.example", Events: []string{"job.done"}},
		{URL: "https://b.example", Events: []string{"job.done"}},
	}
	if !reflect.DeepEqual(cfg.Hooks.Webhooks, want) {
		t.Errorf("got %+v, want %+v", cfg.Hooks.Webhooks, want)
	}
}

func TestOllamaFallsBackToOLLAMA_HOST(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        []string
		want       string
	}{
		{"Default", "", nil, "http://127.0.0.1:11434"},
		{"EmptyInFileMeansUnset", `ollama: ""`, []string{"OLLAMA_HOST=gpu"}, "http://gpu:11434"},
		{"Host", "", []string{"OLLAMA_HOST=gpu"}, "http://gpu:11434"},
		{"HostPort", "", []string{"OLLAMA_HOST=gpu:8080"}, "http://gpu:8080"},
		{"URL", "", []string{"OLLAMA_HOST=http://gpu:8080"}, "http://gpu:8080"},
		{"HTTPWithoutPort", "", []string{"OLLAMA_HOST=http://gpu"}, "http://gpu:80"},
		{"HTTPSWithoutPort", "", []string{"OLLAMA_HOST=https://gpu"}, "https://gpu:443"},
		{"AllInterfacesIsDialledAsLoopback", "", []string{"OLLAMA_HOST=0.0.0.0"}, "http://127.0.0.1:11434"},
		{"PortOnly", "", []string{"OLLAMA_HOST=:9999"}, "http://127.0.0.1:9999"},
		{"IPv6", "", []string{"OLLAMA_HOST=::1"}, "http://[::1]:11434"},
		{"IPv6Port", "", []string{"OLLAMA_HOST=[::1]:9999"}, "http://[::1]:9999"},
		{"Path", "", []string{"OLLAMA_HOST=https://proxy.example/ollama/"}, "https://proxy.example:443/ollama"},
		{"Quoted", "", []string{`OLLAMA_HOST="gpu"`}, "http://gpu:11434"},
		{"FileBeatsOLLAMA_HOST", "ollama: http://file:1", []string{"OLLAMA_HOST=gpu"}, "http://file:1"},
		{"HOPPER_OLLAMABeatsOLLAMA_HOST", "", []string{"OLLAMA_HOST=gpu", "HOPPER_OLLAMA=env"}, "http://env:11434"},
		{"FileValueIsNormalisedToo", "ollama: gpu", nil, "http://gpu:11434"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parse(t, tc.file, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Ollama != tc.want {
				t.Errorf("got %q, want %q", cfg.Ollama, tc.want)
			}
		})
	}
	for _, bad := range []string{"ftp://gpu", "gpu:port", "gpu:70000", "http://a b"} {
		t.Run("Refuses "+bad, func(t *testing.T) {
			_, err := parse(t, "", []string{"OLLAMA_HOST=" + bad})
			if ce := configError(t, err, "ollama"); ce.Source != "$OLLAMA_HOST" {
				t.Errorf("source: got %q, want $OLLAMA_HOST", ce.Source)
			}
		})
	}
}

func TestHTTPOnANonLoopbackAddressNeedsTokens(t *testing.T) {
	for _, tc := range []struct {
		http   string
		tokens []string
		ok     bool
	}{
		{"127.0.0.1:11435", nil, true},
		{"localhost:11435", nil, true},
		{"[::1]:11435", nil, true},
		{"127.0.0.1:0", nil, true},
		{"off", nil, true},
		{"0.0.0.0:11435", nil, false},
		{":11435", nil, false},
		{"192.168.1.5:11435", nil, false},
		{"gpu.example:11435", nil, false},
		{"0.0.0.0:11435", []string{"s3cret"}, true},
		{"127.0.0.1", nil, false},
		{"127.0.0.1:http", nil, false},
		{"", nil, false},
	} {
		c := Default()
		c.HTTP, c.Tokens = tc.http, tc.tokens
		err := c.Validate()
		if tc.ok && err != nil {
			t.Errorf("http %q, tokens %q: %v", tc.http, tc.tokens, err)
		}
		if !tc.ok {
			configError(t, err, "http")
		}
	}
	_, err := parse(t, "http: 0.0.0.0:11435\n", nil)
	if want := `config hopper.yaml:1: http: "0.0.0.0:11435" is not a loopback address: set tokens to serve it, or listen on 127.0.0.1`; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		key string
		mod func(*Config)
	}{
		{"ollama", func(c *Config) { c.Ollama = "ftp://gpu" }},
		{"targets[0].url", func(c *Config) { c.Targets = []Target{{Name: "a", URL: "ftp://gpu"}} }},
		{"targets[1].name", func(c *Config) { c.Targets = []Target{{Name: "a", URL: "http://x"}, {Name: "a", URL: "http://y"}} }},
		{"parallel", func(c *Config) { c.Parallel = 0 }},
		{"hooks.env[0]", func(c *Config) { c.Hooks.Env = []string{"HOPPER_TOKENS"} }},
		{"tokens[1]", func(c *Config) { c.Tokens = []string{"a", " "} }},
		{"origins[1]", func(c *Config) { c.Origins = []string{"https://app.example", "https://app.example/path"} }},
		{"origins[0]", func(c *Config) { c.Origins = []string{"app.example"} }},
		{"keep_alive", func(c *Config) { c.KeepAlive = "7d" }},
		{"keep_alive", func(c *Config) { c.KeepAlive = "" }},
		{"schedule", func(c *Config) { c.Schedule = "lifo" }},
		{"pinned[0]", func(c *Config) { c.Pinned = []string{""} }},
		{"max_attempts", func(c *Config) { c.MaxAttempts = 0 }},
		{"max_wait", func(c *Config) { c.MaxWait = -time.Second }},
		{"timeout", func(c *Config) { c.Timeout = 0 }},
		{"max_age", func(c *Config) { c.MaxAge = -time.Hour }},
		{"shutdown_grace", func(c *Config) { c.ShutdownGrace = -1 }},
		{"retention.done", func(c *Config) { c.Retention.Done = -1 }},
		{"retention.failed", func(c *Config) { c.Retention.Failed = -1 }},
		{"settle", func(c *Config) { c.Settle = 0 }},
		{"retry_backoff", func(c *Config) { c.RetryBackoff = 0 }},
		{"retry_backoff_max", func(c *Config) { c.RetryBackoffMax = time.Second }},
		{"hooks.secret", func(c *Config) { c.Hooks.Secret = "hunter2" }},
		{"hooks.secret", func(c *Config) { c.Hooks.Secret = "whsec_not base64!" }},
		{"hooks.allow[0]", func(c *Config) { c.Hooks.Allow = []string{"10.0.0.0/33"} }},
		{"hooks.allow[0]", func(c *Config) { c.Hooks.Allow = []string{"https://x"} }},
		{"hooks.webhooks[0].url", func(c *Config) { c.Hooks.Webhooks = []Webhook{{URL: "example.com/hook"}} }},
		{"hooks.webhooks[0].secret", func(c *Config) { c.Hooks.Webhooks = []Webhook{{URL: "https://x", Secret: "s"}} }},
		{"hooks.webhooks[0].events[1]", func(c *Config) {
			c.Hooks.Webhooks = []Webhook{{URL: "https://x", Events: []string{"job.done", "job.finished"}}}
		}},
		{"log.format", func(c *Config) { c.Log.Format = "xml" }},
		{"log.level", func(c *Config) { c.Log.Level = "INFO" }},
		{"dir_mode", func(c *Config) { c.DirMode = 0o1777 }},
		{"dir_mode", func(c *Config) { c.DirMode = 0o600 }},
		{"file_mode", func(c *Config) { c.FileMode = 0o440 }},
		{"max_job_size", func(c *Config) { c.MaxJobSize = 0 }},
	} {
		c := Default()
		tc.mod(&c)
		configError(t, c.Validate(), tc.key)
	}
	c := Default()
	c.KeepAlive = "1h30m"
	c.Hooks.Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	c.Hooks.Allow = []string{"10.0.0.0/8", "fd00::1", "hooks.internal"}
	c.Hooks.Webhooks = []Webhook{{URL: "http://127.0.0.1:9/hook", Events: []string{"job.done", "batch.done"}}}
	c.Origins = []string{"https://app.example.com", "https://*.corp.example", "http://localhost:*", "*"}
	if err := c.Validate(); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}
}

func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(example), "", "max_wiat: 1m", "hooks: {webhooks: [{url: x}]}", "a: &a [*a]", "<<: {spool: x}", "hooks: &h {<<: *h}", "pinned: &p [*p]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg, err := parseConfig(strings.NewReader(s), "fuzz.yaml", nil, nil)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("got %T %v, want a *ConfigError", err, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parseConfig returned an invalid config: %v", err)
		}
	})
}

func TestFindConfig(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	xdg := filepath.Join(dir, "xdg")
	env := []string{"XDG_CONFIG_HOME=" + xdg}
	write := func(path string) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(path)
		return abs
	}
	find := func(explicit string, env []string) string {
		t.Helper()
		got, err := findConfig(explicit, env)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// /etc/hopper may exist on the machine; only check it is last.
	if got := configSearchPath(env); got[len(got)-1] != "/etc/hopper/hopper.yaml" {
		t.Errorf("search path %q does not end in /etc/hopper", got)
	}
	inXDG := write(filepath.Join(xdg, "hopper", "hopper.yaml"))
	if got := find("", env); got != inXDG {
		t.Errorf("got %q, want %q", got, inXDG)
	}
	if got := find("", []string{"HOME=" + dir}); got != "" && got != "/etc/hopper/hopper.yaml" {
		t.Errorf("HOME without .config: got %q", got)
	}
	inConfigs := write(filepath.Join("configs", "hopper.yaml"))
	if got := find("", env); got != inConfigs {
		t.Errorf("got %q, want %q (./configs before XDG)", got, inConfigs)
	}
	inDot := write("hopper.yaml")
	if got := find("", env); got != inDot {
		t.Errorf("got %q, want %q (. first)", got, inDot)
	}
	if got := find("", append(env, "HOPPER_CONFIG=other.yaml")); got != filepath.Join(dir, "other.yaml") {
		t.Errorf("$HOPPER_CONFIG: got %q", got)
	}
	if got := find("/x/flag.yaml", append(env, "HOPPER_CONFIG=other.yaml")); got != "/x/flag.yaml" {
		t.Errorf("--config: got %q, want it to beat $HOPPER_CONFIG", got)
	}
}

func TestTargets(t *testing.T) {
	t.Run("NoTargetsMeansTheOneOfOllamaNamedDefault", func(t *testing.T) {
		cfg, err := parse(t, "parallel: 4\n", []string{"OLLAMA_HOST=gpu:11434"})
		if err != nil {
			t.Fatal(err)
		}
		want := []runner.TargetConfig{{Name: "default", URL: "http://gpu:11434", Parallel: 4}}
		if got := cfg.TargetList(); !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("EachTargetTakesTheTopLevelParallelUnlessItSays", func(t *testing.T) {
		cfg, err := parse(t, `
parallel: 2
targets:
  - {name: gpu1, url: 10.0.0.5, parallel: 4}
  - name: gpu2
    url: http://10.0.0.6:11434
    models: ["llama3*"]
`, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []runner.TargetConfig{
			{Name: "gpu1", URL: "http://10.0.0.5:11434", Parallel: 4},
			{Name: "gpu2", URL: "http://10.0.0.6:11434", Parallel: 2, Models: []string{"llama3*"}},
		}
		if got := cfg.TargetList(); !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("HOPPER_PARALLELSetsTheDefault", func(t *testing.T) {
		cfg, err := parse(t, "", []string{"HOPPER_PARALLEL=3"})
		if err != nil || cfg.Parallel != 3 {
			t.Errorf("got %d, %v; want 3", cfg.Parallel, err)
		}
	})
	for _, tc := range []struct{ name, file, key string }{
		{"ANameWithCapitals", "targets: [{name: GPU, url: x}]", "targets[0].name"},
		{"ATargetWithoutName", "targets: [{url: x}]", "targets[0].name"},
		{"TwoTargetsOfOneName", "targets: [{name: a, url: x}, {name: a, url: y}]", "targets[1].name"},
		{"ATargetWithoutURL", "targets: [{name: a}]", "targets[0].url"},
		{"ABadURL", "targets: [{name: a, url: 'ftp://x'}]", "targets[0].url"},
		{"NegativeParallel", "targets: [{name: a, url: x, parallel: -1}]", "targets[0].parallel"},
		{"ZeroTopLevelParallel", "parallel: 0", "parallel"},
		{"ABadPattern", "targets: [{name: a, url: x, models: ['[']}]", "targets[0].models[0]"},
		{"AnUnknownKey", "targets: [{name: a, url: x, slots: 2}]", "targets[0].slots"},
	} {
		t.Run("RefusesAndNamesTheKey/"+tc.name, func(t *testing.T) {
			_, err := parse(t, tc.file, nil)
			ce := configError(t, err, tc.key)
			if !strings.HasPrefix(ce.Source, "hopper.yaml:") {
				t.Errorf("source %q, want the file and line (%v)", ce.Source, err)
			}
		})
	}
}

func TestOriginsComeFromHOPPER_ORIGINS(t *testing.T) {
	cfg, err := parse(t, "origins: [https://file.example]\n", []string{"HOPPER_ORIGINS=https://app.example.com, http://localhost:*"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example.com", "http://localhost:*"}; !slices.Equal(cfg.Origins, want) {
		t.Errorf("origins: got %q, want %q", cfg.Origins, want)
	}
	_, err = parse(t, "", []string{"HOPPER_ORIGINS=https://app.example.com/chat"})
	if ce := configError(t, err, "origins[0]"); ce.Source != "$HOPPER_ORIGINS" {
		t.Errorf("source: got %q, want $HOPPER_ORIGINS", ce.Source)
	}
}

// TestSIGHUPNamesWhatWaitsForARestart checks the warnings a reload logs:
// one per restart-only setting that changed, with the values only when
// they are plain ones (tokens and hooks may hold secrets), none for the
// settings a reload applies.
func TestSIGHUPNamesWhatWaitsForARestart(t *testing.T) {
	running := Default()
	next := running
	next.Parallel, next.Tokens, next.MaxAttempts = 4, []string{"s3cret"}, 9
	next.Hooks.Secret = "whsec_c2VjcmV0"
	var buf bytes.Buffer
	warnRestartOnly(slog.New(slog.NewTextHandler(&buf, nil)), running, next)
	got := buf.String()
	for _, want := range []string{
		`"SIGHUP: parallel changed; it takes effect at the next restart" running=1 configured=4`,
		`"SIGHUP: tokens changed; it takes effect at the next restart"` + "\n",
		`"SIGHUP: hooks changed; it takes effect at the next restart"` + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "s3cret") || strings.Contains(got, "whsec_") || strings.Contains(got, "max_attempts") {
		t.Errorf("the log shows a secret or a setting a reload applies:\n%s", got)
	}
}
