package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a problem at a key of a file. Line is 0 when it is not known,
// Key "" when the problem is the whole document.
type Error struct {
	File string
	Line int
	Key  string
	Err  error
}

// Where is the file and line: "hopper.yaml:12", or "hopper.yaml".
func (e *Error) Where() string {
	if e.Line > 0 {
		return e.File + ":" + strconv.Itoa(e.Line)
	}
	return e.File
}

func (e *Error) Error() string {
	if e.Key == "" || errors.Is(e.Err, ErrUnknownKey) {
		return e.Where() + ": " + e.Err.Error()
	}
	return e.Where() + ": " + e.Key + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrUnknownKey is wrapped by the error about a key a struct does not have;
// its text names the key: `unknown key "max_wiat" (did you mean "max_wait"?)`.
var ErrUnknownKey = errors.New("unknown key")

// File is one parsed document: its values and where each key was written.
type File struct {
	name string
	root *yaml.Node // nil: the document is empty
	keys map[string]place
	text any // the values, every scalar as its text (see Settings)
}

// place is where a key was written and the node of its value.
type place struct {
	line  int
	value *yaml.Node
}

// Parse reads data, which name (a path, usually) stands for in errors.
func Parse(name string, data []byte) (*File, error) {
	f := &File{name: name, keys: map[string]place{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, more yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		return nil, f.yamlError(err)
	}
	switch err := dec.Decode(&more); {
	case err != nil && !errors.Is(err, io.EOF):
		return nil, f.yamlError(err)
	case err == nil && len(more.Content) > 0 && !isNull(more.Content[0]):
		return nil, &Error{File: name, Line: more.Content[0].Line, Err: errors.New("holds more than one YAML document (---)")}
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return f, nil
	}
	f.root = doc.Content[0]
	w := &walker{f: f, building: map[*yaml.Node]bool{}, built: map[*yaml.Node]any{}}
	text, err := w.value(f.root, "", true)
	if err != nil {
		return nil, err
	}
	f.text = text
	return f, nil
}

// Name is the name the file was parsed as: what its errors and Where call
// it. A nil File's is "".
func (f *File) Name() string {
	if f == nil {
		return ""
	}
	return f.name
}

// Empty reports whether the document holds nothing: no content, only
// comments, or null.
func (f *File) Empty() bool { return f.root == nil }

// Line returns the line of key, or of the nearest key around it that was
// written; 0 if none was.
func (f *File) Line(key string) int {
	if f == nil {
		return 0
	}
	for k := key; k != ""; k = parent(k) {
		if p, ok := f.keys[k]; ok {
			return p.line
		}
	}
	return 0
}

// Where is "name:line" for key (see Line), or "" when no key around it was
// written.
func (f *File) Where(key string) string {
	if line := f.Line(key); line > 0 {
		return f.name + ":" + strconv.Itoa(line)
	}
	return ""
}

// Node returns the value written at key as YAML read it, or nil if it was
// not written (or came from an alias or a merge). It is for readers that
// need what values lose, such as the order of a mapping's keys; they must
// not change it.
func (f *File) Node(key string) *yaml.Node {
	if key == "" {
		return f.root
	}
	return f.keys[key].value
}

// Decode decodes the value at key ("" for the whole document) into v the
// way YAML types it (yaml.v3's rules). A key that was not written, or is
// null, leaves v as it is.
func (f *File) Decode(key string, v any) error {
	n := f.Node(key)
	if n == nil || isNull(n) {
		return nil
	}
	if err := n.Decode(v); err != nil {
		e := f.yamlError(err)
		e.Key, e.Line = key, f.Line(key)
		return e
	}
	return nil
}

// yamlError turns an error of the YAML library into an *Error. Its text
// keeps the library's "line N" where it has one: for syntax errors that
// number is not always the line at fault, so it is not taken for Line.
func (f *File) yamlError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "\n  ", "; ")
	return &Error{File: f.name, Err: errors.New("not valid YAML: " + msg)}
}

// parent is the key that holds key: "a.b[1]" for "a.b[1].c", "a.b" for
// "a.b[1]", "" for "a".
func parent(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// walker reads a document's values as text and records where each key is.
type walker struct {
	f        *File
	building map[*yaml.Node]bool // values being read: an alias to one is a loop
	built    map[*yaml.Node]any  // anchored values already read, for their aliases
}

func (w *walker) fail(line int, key string, format string, args ...any) error {
	return &Error{File: w.f.name, Line: line, Key: key, Err: fmt.Errorf(format, args...)}
}

// value reads n, the value of key. Keys are recorded only where written:
// an alias is read once, where its anchor is.
func (w *walker) value(n *yaml.Node, key string, record bool) (any, error) {
	if n.Kind == yaml.AliasNode {
		target := n.Alias
		if w.building[target] {
			return nil, w.fail(n.Line, key, "*%s refers to the value it is in", n.Value)
		}
		if v, ok := w.built[target]; ok {
			return v, nil
		}
		return w.value(target, key, false)
	}
	w.building[n] = true
	defer delete(w.building, n)
	var v any
	var err error
	switch n.Kind {
	case yaml.MappingNode:
		v, err = w.mapping(n, key, record)
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			k := fmt.Sprintf("%s[%d]", key, i)
			if record {
				w.f.keys[k] = place{item.Line, item}
			}
			iv, err := w.value(item, k, record)
			if err != nil {
				return nil, err
			}
			list = append(list, iv)
		}
		v = list
	case yaml.ScalarNode:
		if !isNull(n) {
			v = n.Value
		}
	}
	if err == nil && n.Anchor != "" {
		w.built[n] = v
	}
	return v, err
}

// mapping reads mapping n: the merged mappings first, so its own keys win.
func (w *walker) mapping(n *yaml.Node, key string, record bool) (map[string]any, error) {
	m := map[string]any{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Tag == "!!merge" {
			merges = append(merges, n.Content[i+1])
		}
	}
	for _, v := range merges {
		sources := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			sources = v.Content
		}
		// Of several, the first written wins: read it last.
		for i := len(sources) - 1; i >= 0; i-- {
			src := sources[i]
			if src.Kind == yaml.AliasNode && w.building[src.Alias] {
				return nil, w.fail(src.Line, key, "<< merges a mapping into itself")
			}
			sv, err := w.value(src, key, false)
			if err != nil {
				return nil, err
			}
			sm, ok := sv.(map[string]any)
			if !ok {
				return nil, w.fail(src.Line, key, "<< must merge a mapping")
			}
			for k, x := range sm {
				m[k] = x
			}
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" {
			continue
		}
		path := k.Value
		if key != "" {
			path = key + "." + k.Value
		}
		if k.Kind != yaml.ScalarNode {
			return nil, w.fail(k.Line, key, "a key must be text, not a mapping or a list")
		}
		if first, dup := seen[k.Value]; dup {
			return nil, w.fail(k.Line, path, "set twice (first on line %d)", first)
		}
		seen[k.Value] = k.Line
		if record {
			w.f.keys[path] = place{k.Line, v}
		}
		val, err := w.value(v, path, record)
		if err != nil {
			return nil, err
		}
		m[k.Value] = val
	}
	return m, nil
}
