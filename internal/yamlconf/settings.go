package yamlconf

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Settings returns the document's values as text, checked against struct
// type t, whose fields are named by the struct tag tag ("mapstructure"). A
// key t does not have is an error wrapping ErrUnknownKey, suggesting the key
// probably meant; a mapping, list or scalar where the field wants another
// is an error too. The first error in the order of the file is returned.
//
// A null leaves its key out (the default stays), and so does a field of map
// type, which is checked to be a mapping only: Decode it as written. A list
// of text may be one scalar ("a, b"), as the environment writes it: Text
// splits it.
func (f *File) Settings(t reflect.Type, tag string) (map[string]any, error) {
	if f.root == nil {
		return map[string]any{}, nil
	}
	m, ok := f.text.(map[string]any)
	if !ok {
		return nil, &Error{File: f.name, Line: f.root.Line, Err: errors.New("must be a mapping of settings")}
	}
	return schema{f: f, root: t, tag: tag}.fields(m, t, "")
}

// schema checks a document's text against a struct type.
type schema struct {
	f    *File
	root reflect.Type
	tag  string
}

func (s schema) fail(key string, err error) error {
	return &Error{File: s.f.name, Line: s.f.Line(key), Key: key, Err: err}
}

// fields checks mapping m against struct type t; prefix is m's key and a dot.
func (s schema) fields(m map[string]any, t reflect.Type, prefix string) (map[string]any, error) {
	names := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(s.f.keys[prefix+a].line, s.f.keys[prefix+b].line), strings.Compare(a, b))
	})
	out := map[string]any{}
	for _, name := range names {
		key := prefix + name
		f, ok := field(t, s.tag, name)
		if !ok {
			return nil, s.fail(key, s.unknown(t, prefix, name))
		}
		v, err := s.value(m[name], f.Type, key)
		if err != nil {
			return nil, err
		}
		if v != nil {
			out[name] = v
		}
	}
	return out, nil
}

// value checks v, the value of key, against the field type t.
func (s schema) value(v any, t reflect.Type, key string) (any, error) {
	if v == nil {
		return nil, nil
	}
	mismatch := func(want string) error {
		return s.fail(key, fmt.Errorf("must be %s, got %s", want, describeValue(v)))
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, mismatch("a mapping")
		}
		return s.fields(m, t, key+".")
	case reflect.Map:
		if _, ok := v.(map[string]any); !ok {
			return nil, mismatch("a mapping")
		}
		return nil, nil
	case reflect.Slice:
		if _, ok := v.(string); ok && t.Elem().Kind() != reflect.Struct {
			return v, nil
		}
		list, ok := v.([]any)
		if !ok {
			return nil, mismatch("a list")
		}
		out := make([]any, 0, len(list))
		for i, item := range list {
			k := fmt.Sprintf("%s[%d]", key, i)
			if item == nil {
				return nil, s.fail(k, errors.New("must not be empty"))
			}
			iv, err := s.value(item, t.Elem(), k)
			if err != nil {
				return nil, err
			}
			out = append(out, iv)
		}
		return out, nil
	}
	if _, ok := v.(string); !ok {
		return nil, mismatch(Describe(t))
	}
	return v, nil
}

// unknown is the error for the key prefix+name, which struct t lacks: it
// suggests a sibling a typo or two away, else the one key of that name
// elsewhere ("format" → "log.format").
func (s schema) unknown(t reflect.Type, prefix, name string) error {
	var siblings []string
	for f := range t.Fields() {
		siblings = append(siblings, f.Tag.Get(s.tag))
	}
	suggestion := ""
	if best := Suggest(name, siblings); best != "" {
		suggestion = prefix + best
	} else {
		var found []string
		for key := range Keys(s.root, s.tag) {
			if !strings.Contains(key, "[]") && (key == normalize(name) || strings.HasSuffix(key, "."+normalize(name))) {
				found = append(found, key)
			}
		}
		if len(found) == 1 {
			suggestion = found[0]
		}
	}
	if suggestion == "" {
		return fmt.Errorf("%w %q", ErrUnknownKey, prefix+name)
	}
	return fmt.Errorf("%w %q (did you mean %q?)", ErrUnknownKey, prefix+name, suggestion)
}

// field finds the field of struct t whose tag names it name.
func field(t reflect.Type, tag, name string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if f.Tag.Get(tag) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// Keys lists every key of struct type t with its type, its fields named by
// the struct tag tag, nested keys joined by dots and the fields of list
// elements under "[]": "retention.done", "hooks.webhooks",
// "hooks.webhooks[].url".
func Keys(t reflect.Type, tag string) map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for f := range t.Fields() {
			key := prefix + f.Tag.Get(tag)
			keys[key] = f.Type
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key+".")
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
				walk(f.Type.Elem(), key+"[].")
			}
		}
	}
	walk(t, "")
	return keys
}

// Suggest returns the one of known that name is probably a misspelling of
// (ignoring case, and '-' for '_'), or "".
func Suggest(name string, known []string) string {
	best, bestDist := "", len(name)/3+1
	for _, k := range known {
		if d := editDistance(normalize(name), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func normalize(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }

// editDistance counts the insertions, deletions, substitutions and swaps of
// adjacent characters that turn a into b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// describeValue names a value as read for an error message.
func describeValue(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprint(v)
}
