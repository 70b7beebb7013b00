package httpfront

import (
	"bytes"
	"encoding/json"
	"iter"

	"github.com/hopper-dev/hopper/internal/jsonscan"
)

// A request body becomes a job file in the buffer it was read into: the
// members hopper sets (endpoint, origin, priority) go first, into room left
// before the body, and the body's own members follow as sent, those hopper
// sets dropped. Decoding the body into a map and encoding it again would
// hold two more copies of it (a 31 MB prompt is 31 MB each time); this
// holds none.

// member is one member of a JSON object: its key as written (between the
// quotes, escapes and all) and the offsets of the member, from its key's
// opening quote to the end of its value, and of its value.
type member struct {
	key        []byte
	start, end int
	value      int
}

// is reports whether the member's key is name, as a map key would be.
func (m member) is(name string) bool {
	if bytes.IndexByte(m.key, '\\') < 0 {
		return string(m.key) == name
	}
	var k string
	quoted := make([]byte, 0, len(m.key)+2)
	quoted = append(append(append(quoted, '"'), m.key...), '"')
	return json.Unmarshal(quoted, &k) == nil && k == name
}

// members yields the members of obj, which must be valid JSON (json.Valid)
// holding an object. The offsets are into obj. obj may be changed behind
// the member yielded (before its end) while iterating.
func members(obj []byte) iter.Seq[member] {
	return func(yield func(member) bool) {
		i := jsonscan.SkipSpace(obj, 0)
		if i >= len(obj) || obj[i] != '{' {
			return
		}
		i++
		for {
			i = jsonscan.SkipSpace(obj, i)
			if i >= len(obj) || obj[i] == '}' {
				return
			}
			if obj[i] == ',' {
				i = jsonscan.SkipSpace(obj, i+1)
			}
			start := i
			keyEnd := jsonscan.SkipString(obj, i)
			key := obj[start+1 : keyEnd-1]
			i = jsonscan.SkipSpace(obj, keyEnd) // at ':'
			value := jsonscan.SkipSpace(obj, i+1)
			i = jsonscan.SkipValue(obj, value)
			if !yield(member{key: key, start: start, end: i, value: value}) {
				return
			}
		}
	}
}

// isObject reports whether data's first value begins as an object.
func isObject(data []byte) bool {
	i := jsonscan.SkipSpace(data, 0)
	return i < len(data) && data[i] == '{'
}

// rewriteObject turns the JSON object buf[front:] (valid JSON) into
// "{" + set + its members that drop does not name, in place, and returns
// the result, which begins at buf[0]. set is members to put first
// (`"origin":"http"`), without braces or trailing comma. Each member is
// written no further right than where it was, so nothing is overwritten
// before it is read; when set does not fit in the room before the object,
// a new buffer is used.
func rewriteObject(buf []byte, front int, set string, drop func(member) bool) []byte {
	obj := buf[front:]
	if 1+len(set) > front+jsonscan.SkipSpace(obj, 0) {
		buf = make([]byte, 1+len(set)+len(obj))
	}
	w := copy(buf, "{")
	w += copy(buf[w:], set)
	first := set == ""
	for m := range members(obj) {
		if drop(m) {
			continue
		}
		if !first {
			buf[w] = ','
			w++
		}
		first = false
		w += copy(buf[w:], obj[m.start:m.end])
	}
	buf[w] = '}'
	return buf[:w+1]
}
