package functions

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"maps"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hopper-dev/hopper/internal/yamlconf"
)

// Set is a loaded, checked set of functions. It never changes once Load
// returns it, so it is safe to share between goroutines.
type Set struct {
	fns   map[string]*Function
	names []string
}

// Get returns the function called name.
func (s *Set) Get(name string) (*Function, bool) {
	if s == nil {
		return nil, false
	}
	f, ok := s.fns[name]
	return f, ok
}

// Names lists the functions' names, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.names)
}

// Lookup returns the function called name, or an *InputError saying there
// is none, in words for the person who asked for it.
func (s *Set) Lookup(name string) (*Function, error) {
	if f, ok := s.Get(name); ok {
		return f, nil
	}
	defined := "no functions are defined"
	if names := s.Names(); len(names) > 0 {
		defined = "defined: " + strings.Join(names, ", ")
	}
	return nil, inputError(name, "unknown function %q: no function of that name is defined (%s)", name, defined)
}

// DefinitionError is one problem with a function's definition. Source is
// "config" (the functions: section of hopper.yaml) or the file's path; File
// is the file Line counts in: the function's file, or the config file as
// it was named when read ("" when the definition came from no file); Line
// is 0 when not known; Field is the key at fault, dotted
// ("vars.text.default", "messages[1].role"), or "" for the whole definition.
// A function of the config names its key in full, as hopper.yaml's other
// settings do: "config hopper.yaml:12: functions.greet.temprature: ...".
type DefinitionError struct {
	Function string
	Source   string
	File     string
	Line     int
	Field    string
	Err      error
}

func (e *DefinitionError) Error() string {
	where, key := e.Source, e.Field
	if e.Source == "config" {
		key = "functions." + e.Function
		if e.Field != "" {
			key += "." + e.Field
		}
		if e.File == "" { // a config built in code
			return "config " + key + ": " + e.Err.Error()
		}
		where = "config " + e.File
	}
	if e.Line > 0 {
		where += ":" + strconv.Itoa(e.Line)
	}
	if key != "" {
		where += ": " + key
	}
	return where + ": " + e.Err.Error()
}

func (e *DefinitionError) Unwrap() error { return e.Err }

// Load reads and checks every function: config is the functions: section of
// hopper.yaml (names and keys as written; nil for none), each definition
// plain or, so that its problems name their lines, an Inline (see Section);
// dir holds one NAME.yaml or NAME.yml per function ("" or a directory that
// does not exist: none). Files whose names start with a dot or end
// otherwise are ignored.
// The error joins every problem found, each a *DefinitionError; a name
// defined twice is one of them. On error the Set is nil.
func Load(config map[string]any, dir string) (*Set, error) {
	s := &Set{fns: map[string]*Function{}}
	var errs []error
	add := func(f *Function, problems []error) {
		errs = append(errs, problems...)
		if f == nil {
			return
		}
		if prev, ok := s.fns[f.Name]; ok {
			where := "in the config"
			if prev.Source != "config" {
				where = "in " + prev.Source
			}
			errs = append(errs, &DefinitionError{Function: f.Name, Source: f.Source,
				Err: fmt.Errorf("function %q is defined twice: it is also %s", f.Name, where)})
			return
		}
		s.fns[f.Name] = f
	}
	at := func(name string) origin {
		if in, ok := config[name].(Inline); ok {
			return origin{file: in.File, key: in.Key}
		}
		return origin{}
	}
	names := slices.SortedFunc(maps.Keys(config), func(a, b string) int { // in the order of the file
		return cmp.Or(cmp.Compare(at(a).line(""), at(b).line("")), strings.Compare(a, b))
	})
	for _, name := range names {
		def := config[name]
		if in, ok := def.(Inline); ok {
			def = in.Def
		}
		add(compile(name, "config", def, at(name)))
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, fmt.Errorf("functions_dir %s: %w", dir, err))
		}
		for _, e := range entries {
			name, ok := fileFunction(e.Name())
			if !ok {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
				continue // a directory or a dangling link named like a function
			}
			add(loadFile(name, path))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.names = slices.Sorted(maps.Keys(s.fns))
	return s, nil
}

// Inline is a function defined in a file of other settings too, such as
// hopper.yaml's functions: section, with where it was written: Def is the
// value at Key of File, as File.Decode gives it. In Load's config it stands
// for Def, and Load names the file and line of each problem.
type Inline struct {
	Def  any
	File *yamlconf.File
	Key  string // "functions.greet"
}

// Section reads the mapping at key of file ("functions" in hopper.yaml) as
// Load's config: an Inline for each function, its name as written. A key
// not written, or null, holds no functions.
func Section(file *yamlconf.File, key string) (map[string]any, error) {
	var defs map[string]any
	if err := file.Decode(key, &defs); err != nil {
		return nil, err
	}
	config := make(map[string]any, len(defs))
	for name, def := range defs {
		config[name] = Inline{Def: def, File: file, Key: key + "." + name}
	}
	return config, nil
}

// fileFunction returns the function a file in the functions directory
// defines, by its name: "summarize.yaml" and "summarize.yml" define
// "summarize"; dot files and other names define none.
func fileFunction(file string) (string, bool) {
	if strings.HasPrefix(file, ".") {
		return "", false
	}
	for _, ext := range []string{".yaml", ".yml"} {
		if name, ok := strings.CutSuffix(file, ext); ok {
			return name, true
		}
	}
	return "", false
}

// loadFile reads one function's YAML file.
func loadFile(name, path string) (*Function, []error) {
	bad := func(line int, field string, err error) (*Function, []error) {
		return nil, []error{&DefinitionError{Function: name, Source: path, File: path, Line: line, Field: field, Err: err}}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return bad(0, "", err)
	}
	file, err := yamlconf.Parse(path, data)
	var def any
	if err == nil {
		err = file.Decode("", &def)
	}
	var ye *yamlconf.Error
	switch {
	case errors.As(err, &ye):
		return bad(ye.Line, ye.Key, ye.Err)
	case err != nil:
		return bad(0, "", err)
	case file.Empty():
		return bad(0, "", errors.New("the file is empty: a function needs at least a model and a prompt"))
	}
	return compile(name, path, def, origin{file: file})
}

// orderedJSON writes a YAML mapping as JSON with its keys in the order
// written: a schema's property order is the order a model writes them in
// Ollama's structured outputs. It returns nil for what it cannot write
// (aliases, which could expand without bound, merge keys, values JSON has
// not), leaving the caller the unordered way.
func orderedJSON(n *yaml.Node) []byte {
	var b bytes.Buffer
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return nil
			}
			val := orderedJSON(v)
			if val == nil {
				return nil
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(encode(k.Value))
			b.WriteByte(':')
			b.Write(val)
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, item := range n.Content {
			val := orderedJSON(item)
			if val == nil {
				return nil
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(val)
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil
		}
		v, err := normalize(v)
		if err != nil {
			return nil
		}
		return encode(v)
	default:
		return nil
	}
	return b.Bytes()
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	varRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// The keys a definition may have, with what each holds, for suggestions.
var (
	functionKeys = []string{"description", "model", "endpoint", "system", "prompt", "messages", "vars",
		"options", "format", "keep_alive", "timeout", "max_age", "max_attempts", "priority", "webhook"}
	varKeys     = []string{"required", "default", "description"}
	messageKeys = []string{"role", "content"}
	roles       = []string{"system", "user", "assistant", "tool"}
)

// origin is where a definition was written: the value at key of file (""
// for the whole file). The zero origin is a definition from no file, whose
// keys have no lines.
type origin struct {
	file *yamlconf.File
	key  string
}

// path is the key in the file of the definition's field.
func (o origin) path(field string) string {
	switch {
	case o.key == "":
		return field
	case field == "":
		return o.key
	}
	return o.key + "." + field
}

// line is the line of the definition's field, or 0.
func (o origin) line(field string) int { return o.file.Line(o.path(field)) }

// ordered returns the mapping at field as JSON with its keys in the order
// written (see orderedJSON), or nil if that is not known.
func (o origin) ordered(field string) []byte {
	if o.file == nil {
		return nil
	}
	if n := o.file.Node(o.path(field)); n != nil && n.Kind == yaml.MappingNode {
		return orderedJSON(n)
	}
	return nil
}

// definition checks one function's definition as it collects problems.
type definition struct {
	name, source string
	at           origin
	errs         []error
}

func (d *definition) bad(field, format string, args ...any) {
	d.errs = append(d.errs, &DefinitionError{Function: d.name, Source: d.source, File: d.at.file.Name(),
		Line: d.at.line(field), Field: field, Err: fmt.Errorf(format, args...)})
}

// keys reports the keys of m not among known, with a suggestion each.
func (d *definition) keys(prefix string, m map[string]any, known []string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(known, k) {
			continue
		}
		if s := yamlconf.Suggest(k, known); s != "" {
			d.bad(prefix+k, "unknown key (did you mean %q?)", s)
		} else {
			d.bad(prefix+k, "unknown key (known: %s)", strings.Join(known, ", "))
		}
	}
}

func (d *definition) str(m map[string]any, key, field string) (string, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		d.bad(field, "must be text, got %s", describeYAML(v))
		return "", false
	}
	return s, true
}

func (d *definition) integer(m map[string]any, key string) (int, bool) {
	v, ok := m[key]
	if !ok || v == nil {
		return 0, false
	}
	switch n := v.(type) {
	case int:
		return n, true
	case float64:
		if n == math.Trunc(n) && math.Abs(n) < 1<<53 {
			return int(n), true
		}
	}
	d.bad(key, "must be an integer, got %s", describeYAML(v))
	return 0, false
}

func (d *definition) duration(m map[string]any, key string) time.Duration {
	v, ok := m[key]
	if !ok || v == nil {
		return 0
	}
	if n, isInt := v.(int); isInt && n == 0 {
		return 0
	}
	s, isStr := v.(string)
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if !isStr || err != nil || dur < 0 {
		d.bad(key, "must be a duration like \"90s\" or \"10m\", got %s", describeYAML(v))
		return 0
	}
	return dur
}

// compile checks the definition def of function name, from source ("config"
// or a file's path) and written at at, and builds the function. It returns
// every problem it finds.
func compile(name, source string, def any, at origin) (*Function, []error) {
	d := &definition{name: name, source: source, at: at}
	if !nameRE.MatchString(name) {
		d.bad("", "%q cannot name a function: use letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
	def, err := normalize(def)
	if err != nil {
		d.bad("", "%v", err)
		return nil, d.errs
	}
	m, ok := def.(map[string]any)
	if !ok {
		if def == nil {
			d.bad("", "the definition is empty: a function needs at least a model and a prompt")
		} else {
			d.bad("", "must be a mapping of settings (model, prompt, ...), got %s", describeYAML(def))
		}
		return nil, d.errs
	}
	d.keys("", m, functionKeys)

	f := &Function{Name: name, Source: source}
	f.Description, _ = d.str(m, "description", "description")
	f.Model, _ = d.str(m, "model", "model")
	if model, isStr := m["model"].(string); m["model"] == nil || (isStr && strings.TrimSpace(model) == "") {
		d.bad("model", "is required: name the model to run, e.g. model: llama3.2")
	}
	f.Endpoint, _ = d.str(m, "endpoint", "endpoint")
	if f.Endpoint != "" && f.Endpoint != "chat" && f.Endpoint != "generate" {
		d.bad("endpoint", "must be chat or generate, got %q", f.Endpoint)
	}
	hasSystem, hasPrompt := false, false
	f.System, hasSystem = d.str(m, "system", "system")
	f.Prompt, hasPrompt = d.str(m, "prompt", "prompt")
	d.messages(f, m["messages"])
	d.vars(f, m["vars"])

	if opts, ok := m["options"]; ok && opts != nil {
		if om, isMap := opts.(map[string]any); isMap {
			if len(om) > 0 {
				f.Options, f.options = om, encode(om)
			}
		} else {
			d.bad("options", "must be a mapping of Ollama options (temperature, num_ctx, ...), got %s", describeYAML(opts))
		}
	}
	switch v := m["format"].(type) {
	case nil:
	case string:
		// "json", or a schema written as JSON text: that keeps its
		// properties in order even where mappings lose it (a definition
		// built in code, or one reached through an alias).
		if v == "json" {
			f.Format = encode(v)
			break
		}
		if t := strings.TrimSpace(v); !strings.HasPrefix(t, "{") || !json.Valid([]byte(t)) {
			d.bad("format", `must be "json" or a JSON schema (a mapping, or a JSON object as text), got %s`, describeYAML(v))
			break
		}
		var b bytes.Buffer
		_ = json.Compact(&b, []byte(v))
		f.Format = b.Bytes()
	case map[string]any:
		f.Format = d.at.ordered("format")
		if f.Format == nil {
			f.Format = encode(v)
		}
	default:
		d.bad("format", `must be "json" or a JSON schema (a mapping), got %s`, describeYAML(v))
	}
	if f.Format != nil && f.Format[0] == '{' {
		sch, err := compileSchema(f.Format)
		if err != nil {
			d.bad("format", "%v", err)
		}
		f.schema = sch
	}
	switch v := m["keep_alive"].(type) {
	case nil:
	case int, float64:
		f.KeepAlive = fmt.Sprint(v)
		f.keepAlive = keepAlive(f.KeepAlive)
	case string:
		if ka := keepAlive(v); ka != nil {
			f.KeepAlive, f.keepAlive = v, ka
		} else {
			d.bad("keep_alive", `must be a number of seconds like -1 or a duration like "5m", got %q`, v)
		}
	default:
		d.bad("keep_alive", `must be a number of seconds like -1 or a duration like "5m", got %s`, describeYAML(v))
	}
	f.Timeout = d.duration(m, "timeout")
	f.MaxAge = d.duration(m, "max_age")
	if n, ok := d.integer(m, "max_attempts"); ok {
		if n < 0 {
			d.bad("max_attempts", "must be 1 or more (0: the configured default), got %d", n)
		}
		f.MaxAttempts = max(n, 0)
	}
	f.Priority, _ = d.integer(m, "priority")
	if hook, ok := d.str(m, "webhook", "webhook"); ok {
		if u, err := url.Parse(hook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			d.bad("webhook", "must be an http or https URL, got %q", hook)
		}
		f.Webhook = hook
	}

	if f.Endpoint == "" {
		f.Endpoint = "generate"
		if len(f.Messages) > 0 || hasSystem {
			f.Endpoint = "chat"
		}
	}
	switch {
	case !hasPrompt && len(f.Messages) == 0:
		if m["messages"] == nil {
			d.bad("prompt", "a function needs a prompt or messages")
		}
	case f.Endpoint == "generate" && len(f.Messages) > 0:
		d.bad("messages", "endpoint generate takes a prompt, not messages: use endpoint chat, or leave endpoint out")
	case f.Endpoint == "generate" && !hasPrompt:
		d.bad("prompt", "endpoint generate needs a prompt")
	}

	parse := func(field, text string) *template.Template {
		t, err := parseTemplate(field, text)
		if err != nil {
			d.bad(field, "%v", err)
			return nil
		}
		for _, v := range varsUsed(t) {
			if _, ok := f.Vars[v]; !ok {
				declared := "it declares none"
				if len(f.Vars) > 0 {
					declared = "it declares " + quoteList(slices.Sorted(maps.Keys(f.Vars)))
				}
				d.bad(field, "uses var %q, which vars does not declare (%s)", v, declared)
			}
		}
		return t
	}
	if hasSystem {
		f.system = parse("system", f.System)
	}
	if hasPrompt {
		f.prompt = parse("prompt", f.Prompt)
	}
	for i, msg := range f.Messages {
		f.messages = append(f.messages, parse(fmt.Sprintf("messages[%d].content", i), msg.Content))
	}
	if len(d.errs) > 0 {
		slices.SortStableFunc(d.errs, func(a, b error) int {
			return a.(*DefinitionError).Line - b.(*DefinitionError).Line // in the order of the file
		})
		return nil, d.errs
	}
	return f, nil
}

func (d *definition) messages(f *Function, v any) {
	if v == nil {
		return
	}
	list, ok := v.([]any)
	if !ok {
		d.bad("messages", "must be a list of {role, content}, got %s", describeYAML(v))
		return
	}
	if len(list) == 0 {
		d.bad("messages", "is empty: give at least one {role, content}, or use a prompt")
		return
	}
	for i, item := range list {
		field := fmt.Sprintf("messages[%d]", i)
		mm, ok := item.(map[string]any)
		if !ok {
			d.bad(field, "must be a mapping {role, content}, got %s", describeYAML(item))
			continue
		}
		d.keys(field+".", mm, messageKeys)
		role, ok := d.str(mm, "role", field+".role")
		if !ok {
			if mm["role"] == nil {
				d.bad(field+".role", "is required: one of %s", strings.Join(roles, ", "))
			}
		} else if !slices.Contains(roles, role) {
			d.bad(field+".role", "must be one of %s, got %q", strings.Join(roles, ", "), role)
		}
		content, ok := d.str(mm, "content", field+".content")
		if !ok && mm["content"] == nil {
			d.bad(field+".content", "is required: the message's text (a template)")
		}
		f.Messages = append(f.Messages, Message{Role: role, Content: content})
	}
}

func (d *definition) vars(f *Function, v any) {
	f.Vars = map[string]Var{}
	f.defaults = map[string]any{}
	if v == nil {
		return
	}
	vm, ok := v.(map[string]any)
	if !ok {
		d.bad("vars", "must be a mapping of var names to {required, default, description}, got %s", describeYAML(v))
		return
	}
	for _, name := range slices.Sorted(maps.Keys(vm)) {
		field := "vars." + name
		if !varRE.MatchString(name) {
			d.bad(field, "%q cannot name a var: use letters, digits and '_', not starting with a digit, so templates can say {{.%s}}", name, name)
			continue
		}
		var decl Var
		switch spec := vm[name].(type) {
		case nil: // declared: optional, no default
		case map[string]any:
			d.keys(field+".", spec, varKeys)
			switch r := spec["required"].(type) {
			case nil:
			case bool:
				decl.Required = r
			default:
				d.bad(field+".required", "must be true or false, got %s", describeYAML(r))
			}
			decl.Description, _ = d.str(spec, "description", field+".description")
			if def, ok := spec["default"]; ok && def != nil {
				decl.Default = def
				if decl.Required {
					d.bad(field, "is required and has a default: a var with a default is never missing, so drop one of them")
				}
				dv, err := decodeJSON(encode(def))
				if err != nil {
					d.bad(field+".default", "%v", err)
				}
				f.defaults[name] = dv
			}
		default:
			d.bad(field, "must be a mapping {required, default, description}, or empty, got %s", describeYAML(spec))
		}
		f.Vars[name] = decl
	}
}

// keepAlive converts a keep_alive as written to what Ollama takes: a number
// of seconds as a JSON number (Ollama rejects the string "3600"), a duration
// as a string. It returns nil if v is neither.
func keepAlive(v string) []byte {
	v = strings.TrimSpace(v)
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return []byte(strconv.FormatFloat(f, 'f', -1, 64))
	}
	if _, err := time.ParseDuration(v); err != nil {
		return nil
	}
	return encode(v)
}

// normalize turns a YAML-decoded value into one encoding/json can write:
// mappings with string keys, lists, text, numbers, booleans and null.
func normalize(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		if err := normalizeAll(maps.All(v), func(k string, n any) { out[k] = n }); err != nil {
			return nil, err
		}
		return out, nil
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("mapping key %v is not text: quote it", k)
			}
			m[ks] = x
		}
		return normalize(m)
	case []any:
		out := make([]any, len(v))
		if err := normalizeAll(slices.All(v), func(i int, n any) { out[i] = n }); err != nil {
			return nil, err
		}
		return out, nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("%v cannot be written as JSON", v)
		}
		return v, nil
	case int64:
		return int(v), nil
	case uint64:
		if v > math.MaxInt64 {
			return float64(v), nil
		}
		return int(v), nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	case nil, string, bool, int:
		return v, nil
	}
	return nil, fmt.Errorf("unsupported value %v (%T)", v, v)
}

// normalizeAll normalizes each value of all and hands it to set with its
// key; it stops at the first error.
func normalizeAll[K any](all iter.Seq2[K, any], set func(K, any)) error {
	for k, x := range all {
		n, err := normalize(x)
		if err != nil {
			return err
		}
		set(k, n)
	}
	return nil
}

// describeYAML names a decoded YAML value for an error message.
func describeYAML(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(excerpt(v, 40))
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}
