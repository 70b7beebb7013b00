package ollama

import (
	"encoding/json"
	"strconv"
)

// value is a JSON value that knows the size of its encoding, so that an
// answer is written once, into a buffer of exactly its size, however large
// the text folded into it.
type value interface {
	size() int
	appendTo(dst []byte) []byte
}

// marshal encodes v.
func marshal(v value) json.RawMessage {
	return v.appendTo(make([]byte, 0, v.size()))
}

// raw is an encoded JSON value, written as it is.
type raw []byte

func (r raw) size() int                  { return len(r) }
func (r raw) appendTo(dst []byte) []byte { return append(dst, r...) }

// str is a string, encoded as encoding/json (and so Ollama) encodes it.
type str string

func (s str) size() int { return escapedLen(s) + 2 }
func (s str) appendTo(dst []byte) []byte {
	return append(appendEscaped(append(dst, '"'), s), '"')
}

// integer is a JSON number.
type integer int64

func (n integer) size() int                  { return len(strconv.AppendInt(make([]byte, 0, 24), int64(n), 10)) }
func (n integer) appendTo(dst []byte) []byte { return strconv.AppendInt(dst, int64(n), 10) }

// array is a JSON array of values.
type array []value

func (a array) size() int                  { return listSize(a) }
func (a array) appendTo(dst []byte) []byte { return appendList(dst, '[', a, ']') }

// listSize is the size of the items, comma-separated and bracketed.
func listSize[V value](items []V) int {
	n := 2 + max(0, len(items)-1)
	for _, v := range items {
		n += v.size()
	}
	return n
}

// appendList appends open, the items separated by commas, and close.
func appendList[V value](dst []byte, open byte, items []V, close byte) []byte {
	dst = append(dst, open)
	for i, v := range items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = v.appendTo(dst)
	}
	return append(dst, close)
}

// object is a JSON object that keeps its members in their order, so that
// an answer rebuilt from stream chunks reads like the one Ollama sends.
type object []member

type member struct {
	key string
	val value
}

func (m member) size() int { return escapedLen(m.key) + 3 + m.val.size() }
func (m member) appendTo(dst []byte) []byte {
	return m.val.appendTo(append(str(m.key).appendTo(dst), ':'))
}

// parseObject splits the JSON object data into its members; their values
// are slices of data.
func parseObject(data []byte) (object, error) {
	if err := validObject(data); err != nil {
		return nil, err
	}
	var o object
	err := eachMember(data, func(key, val []byte) error {
		o = append(o, member{string(unquote(nil, key)), raw(val)})
		return nil
	})
	return o, err
}

func (o object) index(key string) int {
	for i, m := range o {
		if m.key == key {
			return i
		}
	}
	return -1
}

func (o object) get(key string) (value, bool) {
	if i := o.index(key); i >= 0 {
		return o[i].val, true
	}
	return nil, false
}

// put replaces key's value in place or, for a new key, inserts it right after
// the last present member named in after (at the end if none is present).
func (o *object) put(key string, val value, after ...string) {
	if i := o.index(key); i >= 0 {
		(*o)[i].val = val
		return
	}
	at := len(*o)
	if len(after) > 0 {
		at = 0
		for _, a := range after {
			if i := o.index(a); i >= 0 && i+1 > at {
				at = i + 1
			}
		}
		if at == 0 {
			at = len(*o)
		}
	}
	*o = append(*o, member{})
	copy((*o)[at+1:], (*o)[at:])
	(*o)[at] = member{key, val}
}

func (o *object) del(key string) {
	if i := o.index(key); i >= 0 {
		*o = append((*o)[:i], (*o)[i+1:]...)
	}
}

func (o object) size() int                  { return listSize(o) }
func (o object) appendTo(dst []byte) []byte { return appendList(dst, '{', o, '}') }
