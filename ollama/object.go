package ollama

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// object is a JSON object that keeps its members in their original order, so
// that an answer rebuilt from stream chunks reads like the one Ollama sends.
type object []member

type member struct {
	key string
	val json.RawMessage
}

func parseObject(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errNotObject
	}
	var o object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("unexpected %v in object", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o = append(o, member{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o object) index(key string) int {
	for i, m := range o {
		if m.key == key {
			return i
		}
	}
	return -1
}

func (o object) get(key string) (json.RawMessage, bool) {
	if i := o.index(key); i >= 0 {
		return o[i].val, true
	}
	return nil, false
}

// put replaces key's value in place or, for a new key, inserts it right after
// the last present member named in after (at the end if none is present).
func (o *object) put(key string, val json.RawMessage, after ...string) {
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

func (o object) marshal() json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(m.key))
		b.WriteByte(':')
		b.Write(m.val)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// jsonString encodes s as encoding/json (and so Ollama) does.
func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}

// jsonArray joins already-encoded values into a JSON array.
func jsonArray(vals []json.RawMessage) json.RawMessage {
	b := []byte{'['}
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, ']')
}
