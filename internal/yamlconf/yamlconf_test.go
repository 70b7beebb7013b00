package yamlconf

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"
)

// parse is Parse of text named f.yaml, failing the test on error.
func parse(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse("f.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLinesNameEveryKeyAsWritten(t *testing.T) {
	f := parse(t, `a: 1
b:
  c: x
  list:
    - name: one
    - name: two
      url: u
`)
	for key, want := range map[string]int{
		"a": 1, "b": 2, "b.c": 3, "b.list": 4, "b.list[0]": 5, "b.list[0].name": 5,
		"b.list[1].url": 7,
		"b.list[0].url": 5, // not written: the item's line
		"b.missing":     2,
		"nothing":       0,
		"":              0,
	} {
		if got := f.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
	if got := f.Where("b.c"); got != "f.yaml:3" {
		t.Errorf(`Where("b.c") = %q, want "f.yaml:3"`, got)
	}
	if got := f.Where("nothing"); got != "" {
		t.Errorf(`Where("nothing") = %q, want ""`, got)
	}
	var nilFile *File
	if got := nilFile.Where("a"); got != "" {
		t.Errorf("a nil File: Where = %q, want \"\"", got)
	}
}

func TestEmptyDocuments(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "---\n", "~\n", "name: x\n---\n"} {
		f, err := Parse("f.yaml", []byte(text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if f.Empty() != !strings.HasPrefix(text, "name:") {
			t.Errorf("%q: Empty() = %v", text, f.Empty())
		}
		if _, err := f.Settings(reflect.TypeFor[settings](), "yaml"); err != nil {
			t.Errorf("%q: Settings: %v", text, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"AKeySetTwice", "a: 1\nb:\n  c: 1\n  c: 2\n", "f.yaml:4: b.c: set twice (first on line 3)"},
		{"ASecondDocument", "a: 1\n---\nb: 2\n", "f.yaml:3: holds more than one YAML document (---)"},
		{"AnAliasInsideItself", "a: &a [*a]\n", "f.yaml:1: a[0]: *a refers to the value it is in"},
		{"AMergeOfItself", "h: &h {<<: *h}\n", "f.yaml:1: h: << merges a mapping into itself"},
		{"AMergeOfAList", "l: &l [1]\nm: {<<: *l}\n", "f.yaml:2: m: << must merge a mapping"},
		{"AListAsAKey", "? [a]\n: b\n", "f.yaml:1: a key must be text, not a mapping or a list"},
		{"BadSyntax", "a: [b\n", "f.yaml: not valid YAML: line 1: did not find expected ',' or ']'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tc.text))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v (%T), want an *Error", err, err)
			}
			if err.Error() != tc.want {
				t.Errorf("got  %s\nwant %s", err, tc.want)
			}
		})
	}
}

func TestMergeKeys(t *testing.T) {
	f := parse(t, `
base: &base {a: base, b: base}
other: &other {b: other, c: other}
m:
  <<: [*base, *other]
  a: own
`)
	var got map[string]any
	if err := f.Decode("m", &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": "own", "b": "base", "c": "other"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode: got %v, want %v", got, want)
	}
	if got := f.text.(map[string]any)["m"]; !reflect.DeepEqual(got, want) {
		t.Errorf("text: got %v, want %v (as YAML merges them)", got, want)
	}
	if got := f.Line("m.c"); got != 4 {
		t.Errorf(`Line("m.c") = %d, want 4, that of m`, got)
	}
}

func TestDecodeTypesAsYAMLDoes(t *testing.T) {
	f := parse(t, "n: 3\nx: 1.5\nb: true\ns: \"3\"\nnothing:\n")
	var got map[string]any
	if err := f.Decode("", &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": 3, "x": 1.5, "b": true, "s": "3", "nothing": nil}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
	kept := map[string]any{"kept": true}
	if err := f.Decode("missing", &kept); err != nil || !kept["kept"].(bool) {
		t.Errorf("a missing key: got %v, %v; want v left as it was", kept, err)
	}
	var n int
	err := f.Decode("b", &n)
	var e *Error
	if !errors.As(err, &e) || e.Key != "b" || e.Line != 3 || !strings.Contains(err.Error(), "not valid YAML") {
		t.Errorf("a bool into an int: got %v, want an *Error at f.yaml:3 for b", err)
	}
}

// settings is a configuration as a caller of Settings declares it.
type settings struct {
	Name    string         `yaml:"name"`
	Wait    time.Duration  `yaml:"wait"`
	Tokens  []string       `yaml:"tokens"`
	Log     logSettings    `yaml:"log"`
	Targets []target       `yaml:"targets"`
	Free    map[string]any `yaml:"free"`
}

type logSettings struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

type target struct {
	URL  string `yaml:"url"`
	Size Size   `yaml:"size"`
}

func TestSettingsAreTextCheckedAgainstTheStruct(t *testing.T) {
	f := parse(t, `
name: 0700
wait: 7d
tokens: a, b
log: {format: json, level: ~}
targets: [{url: u, size: 1KiB}]
free: {Any: [thing]}
`)
	got, err := f.Settings(reflect.TypeFor[settings](), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"name": "0700", "wait": "7d", "tokens": "a, b",
		"log":     map[string]any{"format": "json"},
		"targets": []any{map[string]any{"url": "u", "size": "1KiB"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	var s settings
	if err := Fill(&s, "yaml", got); err != nil {
		t.Fatal(err)
	}
	if s.Wait != 7*24*time.Hour || s.Targets[0].Size != 1024 || !reflect.DeepEqual(s.Tokens, []string{"a", "b"}) {
		t.Errorf("Fill: got %+v", s)
	}
}

func TestSettingsRefuse(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"ATypo", "name: x\nwiat: 1m\n", `f.yaml:2: unknown key "wiat" (did you mean "wait"?)`},
		{"ASwap", "naem: x\n", `f.yaml:1: unknown key "naem" (did you mean "name"?)`},
		{"NestedTypo", "log:\n  levle: x\n", `f.yaml:2: unknown key "log.levle" (did you mean "log.level"?)`},
		{"InAListItem", "targets:\n  - url: u\n    szie: 1\n", `f.yaml:3: unknown key "targets[0].szie" (did you mean "targets[0].size"?)`},
		{"AtTheWrongLevel", "format: x\n", `f.yaml:1: unknown key "format" (did you mean "log.format"?)`},
		{"WrongCase", "Log: {}\n", `f.yaml:1: unknown key "Log" (did you mean "log"?)`},
		{"NothingClose", "frobnicate: 1\n", `f.yaml:1: unknown key "frobnicate"`},
		{"AMappingForText", "name: {a: b}\n", "f.yaml:1: name: must be a string, got a mapping"},
		{"ATextForAMapping", "log: yes\n", `f.yaml:1: log: must be a mapping, got "yes"`},
		{"AListForADuration", "wait: [1]\n", `f.yaml:1: wait: must be a duration like "10m", got a list`},
		{"AMappingForAList", "tokens: {a: b}\n", "f.yaml:1: tokens: must be a list, got a mapping"},
		{"ATextForAListOfMappings", "targets: u\n", `f.yaml:1: targets: must be a list, got "u"`},
		{"AListForAFreeMapping", "free: [a]\n", "f.yaml:1: free: must be a mapping, got a list"},
		{"AnEmptyItem", "tokens:\n  - a\n  -\n", "f.yaml:3: tokens[1]: must not be empty"},
		{"NotAMapping", "- a\n", "f.yaml:1: must be a mapping of settings"},
		{"TheFirstInTheFile", "wiat: 1\nname: {}\n", `f.yaml:1: unknown key "wiat" (did you mean "wait"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.text).Settings(reflect.TypeFor[settings](), "yaml")
			if err == nil || err.Error() != tc.want {
				t.Errorf("got  %v\nwant %s", err, tc.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("%T is not an *Error", err)
			}
			if strings.Contains(tc.want, "unknown key") != errors.Is(err, ErrUnknownKey) {
				t.Errorf("errors.Is(ErrUnknownKey) = %v", errors.Is(err, ErrUnknownKey))
			}
		})
	}
}

func TestFillNamesTheKey(t *testing.T) {
	var s settings
	err := Fill(&s, "yaml", map[string]any{"targets": []any{map[string]any{"size": "lots"}}})
	var e *Error
	if !errors.As(err, &e) || e.Key != "targets[0].size" || e.Error() != `: targets[0].size: must be a size like "32MiB", got "lots"` {
		t.Errorf("got %v, want an *Error for targets[0].size", err)
	}
}

func TestKeys(t *testing.T) {
	got := Keys(reflect.TypeFor[settings](), "yaml")
	for key, want := range map[string]reflect.Type{
		"wait":           reflect.TypeFor[time.Duration](),
		"log.level":      reflect.TypeFor[string](),
		"targets":        reflect.TypeFor[[]target](),
		"targets[].size": reflect.TypeFor[Size](),
	} {
		if got[key] != want {
			t.Errorf("Keys()[%q] = %v, want %v", key, got[key], want)
		}
	}
	if len(got) != 10 {
		t.Errorf("got %d keys, want 10: %v", len(got), got)
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		t    reflect.Type
		want any
		err  string
	}{
		{" true", reflect.TypeFor[bool](), true, ""},
		{"maybe", reflect.TypeFor[bool](), nil, `must be true or false, got "maybe"`},
		{"12", reflect.TypeFor[int](), 12, ""},
		{"three", reflect.TypeFor[int](), nil, `must be an integer, got "three"`},
		{"a, ,b", reflect.TypeFor[[]string](), []string{"a", "b"}, ""},
		{"0750", reflect.TypeFor[fs.FileMode](), fs.FileMode(0o750), ""},
		{"rwx", reflect.TypeFor[fs.FileMode](), nil, `must be an octal mode like "0750", got "rwx"`},
		{"32MiB", reflect.TypeFor[Size](), Size(32 << 20), ""},
		{"1d", reflect.TypeFor[time.Duration](), 24 * time.Hour, ""},
		{"as is", reflect.TypeFor[string](), "as is", ""},
	} {
		got, err := Text(tc.in, tc.t)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Text(%q, %v): got %v, want %q", tc.in, tc.t, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Text(%q, %v) = %#v, %v; want %#v", tc.in, tc.t, got, err, tc.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"prompt", "model", "max_wait"}
	for name, want := range map[string]string{"promt": "prompt", "modle": "model", "Max-Wait": "max_wait", "xyz": ""} {
		if got := Suggest(name, known); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", name, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"a: 1", "a: &a [*a]", "<<: {b: 1}", "h: &h {<<: *h}", "a: &x {b: 1}\nc: [*x, *x]", "- [a, {b: c}]", "a: 1\n---\nb: 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		file, err := Parse("fuzz.yaml", []byte(s))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want an *Error", err, err)
			}
			return
		}
		_, _ = file.Settings(reflect.TypeFor[settings](), "yaml")
		var v any
		_ = file.Decode("", &v)
	})
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"10m":   10 * time.Minute,
		"36h":   36 * time.Hour,
		"7d":    7 * 24 * time.Hour,
		"1d12h": 36 * time.Hour,
		"1.5d":  36 * time.Hour,
		"2d30m": 48*time.Hour + 30*time.Minute,
		"0":     0,
		"0d":    0,
		" 90s ": 90 * time.Second,
		"-1h":   -time.Hour,
		"-1d":   -24 * time.Hour,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "7", "d", "1dd", "1d-3h", "1d 3h", ".d", "1.2.3d", "1e3d", "99999999d", "7days", "1w", "1h2m3s4"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		} else if want := `must be a duration like "10m", got "` + in + `"`; err.Error() != want {
			t.Errorf("ParseDuration(%q): got %q, want %q", in, err, want)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"7d", "1d12h", "36h", "-1.5d", "0", "1dd", "9223372036s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDuration(s)
		if strings.Contains(s, "d") {
			return
		}
		want, werr := time.ParseDuration(strings.TrimSpace(s))
		if (err == nil) != (werr == nil) || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; time.ParseDuration: %v, %v", s, got, err, want, werr)
		}
	})
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"33554432": 32 << 20,
		"32MiB":    32 << 20,
		"32 mib":   32 << 20,
		"512KB":    512000,
		"1.5GiB":   3 << 29,
		"100B":     100,
		"1MB":      1e6,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "32XB", "-1", "1.5", "1e6", "9999999999GiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %v, want an error", in, got)
		}
	}
	if got := Size(32 << 20).String(); got != "32MiB" {
		t.Errorf("String: got %q, want 32MiB", got)
	}
}

type named struct{}

func (named) Section() string { return "runner" }

type unnamed struct{}

func (unnamed) Section() string { return "" }

func TestKeyError(t *testing.T) {
	cause := errors.New("must be at least 1")
	var err error = &KeyError[named]{Field: "max_attempts", Err: cause}
	if got, want := err.Error(), "runner: max_attempts: must be at least 1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, cause) {
		t.Errorf("%v does not wrap its cause", err)
	}
	var other *KeyError[unnamed]
	if errors.As(err, &other) {
		t.Errorf("errors.As took a KeyError of one section for another's")
	}
	other = &KeyError[unnamed]{Field: "cluster.listen", Err: cause}
	if got, want := other.Error(), "cluster.listen: must be at least 1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if key, reason := other.Setting(); key != "cluster.listen" || reason != cause {
		t.Errorf("Setting() = %q, %v", key, reason)
	}
}
