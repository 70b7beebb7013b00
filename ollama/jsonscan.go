package ollama

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hopper-dev/hopper/internal/jsonscan"
)

// This file reads the chunks of a stream without decoding them into fresh
// values: the members of a chunk are slices of the line, and folded text is
// appended, in the escaped form encoding/json writes, to blocks that never
// move. Every function here expects JSON that json.Valid accepted.
//
// A chunk is read as encoding/json would read it into a struct, except that
// keys match exactly (encoding/json also takes "Content" for "content") and
// a key given twice counts once, the last time; Ollama writes neither.

// validObject reports whether line is a JSON object, with the decoder's own
// syntax error when it is not valid JSON at all.
func validObject(line []byte) error {
	if !json.Valid(line) {
		var v struct{}
		if err := json.Unmarshal(line, &v); err != nil {
			return err
		}
		return errNotObject
	}
	if i := jsonscan.SkipSpace(line, 0); i >= len(line) || line[i] != '{' {
		return errNotObject
	}
	return nil
}

// eachMember calls f with the quoted key and the value of each member of
// the JSON object obj, in order. It stops at f's first error.
func eachMember(obj []byte, f func(key, val []byte) error) error {
	i := jsonscan.SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errNotObject
	}
	for i = jsonscan.SkipSpace(obj, i+1); i < len(obj) && obj[i] == '"'; {
		k := jsonscan.SkipString(obj, i)
		key := obj[i:k]
		v := jsonscan.SkipSpace(obj, jsonscan.SkipSpace(obj, k)+1) // past the colon
		end := jsonscan.SkipValue(obj, v)
		if err := f(key, obj[v:end]); err != nil {
			return err
		}
		if i = jsonscan.SkipSpace(obj, end); i < len(obj) && obj[i] == ',' {
			i = jsonscan.SkipSpace(obj, i+1)
		}
	}
	return nil
}

// eachElement calls f with each element of the JSON array arr. It stops at
// f's first error.
func eachElement(arr []byte, f func(elem []byte) error) error {
	i := jsonscan.SkipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return errNotArray
	}
	for i = jsonscan.SkipSpace(arr, i+1); i < len(arr) && arr[i] != ']'; {
		end := jsonscan.SkipValue(arr, i)
		if err := f(arr[i:end]); err != nil {
			return err
		}
		if i = jsonscan.SkipSpace(arr, end); i < len(arr) && arr[i] == ',' {
			i = jsonscan.SkipSpace(arr, i+1)
		}
	}
	return nil
}

// keyIs reports whether the quoted key names name.
func keyIs(key []byte, name string) bool {
	if len(key) == len(name)+2 && string(key[1:len(key)-1]) == name {
		return true
	}
	if bytes.IndexByte(key, '\\') < 0 {
		return false
	}
	return string(unquote(nil, key)) == name
}

var (
	errNotArray  = errors.New("not a JSON array")
	errNotString = errors.New("not a JSON string")
	errNotBool   = errors.New("not true or false")
)

func isNull(val []byte) bool { return string(val) == "null" }

// stringValue checks that val is a string literal; null reports ok false.
func stringValue(val []byte) (lit []byte, ok bool, err error) {
	switch {
	case isNull(val):
		return nil, false, nil
	case len(val) > 0 && val[0] == '"':
		return val, true, nil
	}
	return nil, false, errNotString
}

// boolValue reads true, false, null or an absent value (false).
func boolValue(val []byte) (bool, error) {
	switch string(val) {
	case "true":
		return true, nil
	case "false", "null", "":
		return false, nil
	}
	return false, errNotBool
}

// unquote appends the text of the string literal lit to dst, decoded as
// encoding/json decodes it: escapes resolved, and invalid UTF-8 or a lone
// surrogate replaced by U+FFFD.
func unquote(dst, lit []byte) []byte {
	s := lit[1 : len(lit)-1]
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\' && r+1 < len(s):
			r++
			switch s[r] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r--
				rr := u4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, u4(s[r:])); dec != utf8.RuneError {
						r += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					rr = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, s[r])
			}
			r++
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			if rr == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, rr)
			} else {
				dst = append(dst, s[r:r+size]...)
			}
			r += size
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends s as encoding/json writes it inside a string
// literal (HTML-safe, U+2028 and U+2029 escaped, invalid UTF-8 as \ufffd),
// without the quotes.
func appendEscaped[S ~string | ~[]byte](dst []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if plain(b) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}

// escapedLen is len(appendEscaped(nil, s)).
func escapedLen[S ~string | ~[]byte](s S) int {
	n := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			switch {
			case plain(b):
				n++
			case b == '\\', b == '"', b == '\b', b == '\f', b == '\n', b == '\r', b == '\t':
				n += 2
			default:
				n += 6
			}
			i++
			continue
		}
		c, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		switch {
		case c == utf8.RuneError && size == 1, c == '\u2028' || c == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// plain reports whether encoding/json writes the ASCII byte b as it is.
func plain(b byte) bool {
	return b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
}

// canonical reports whether the string literal lit is already written as
// encoding/json would write its text, so that it can be copied as it is.
func canonical(lit []byte) bool {
	s := lit[1 : len(lit)-1]
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if !plain(b) {
				return false
			}
			i++
			continue
		}
		c, size := utf8.DecodeRune(s[i:])
		if c == utf8.RuneError && size == 1 || c == '\u2028' || c == '\u2029' {
			return false
		}
		i += size
	}
	return true
}

// ropeBlock is the largest block a rope allocates.
const ropeBlock = 64 << 10

// rope holds bytes in blocks, so that growing it never copies what it
// already holds.
type rope struct {
	blocks [][]byte
	n      int
}

func (r *rope) write(p []byte) {
	r.n += len(p)
	for len(p) > 0 {
		last := len(r.blocks) - 1
		if last < 0 || len(r.blocks[last]) == cap(r.blocks[last]) {
			size := 256
			if last >= 0 {
				size = min(2*cap(r.blocks[last]), ropeBlock)
			}
			r.blocks = append(r.blocks, make([]byte, 0, size))
			last++
		}
		b := r.blocks[last]
		k := min(len(p), cap(b)-len(b))
		r.blocks[last] = append(b, p[:k]...)
		p = p[k:]
	}
}

func (r *rope) appendTo(dst []byte) []byte {
	for _, b := range r.blocks {
		dst = append(dst, b...)
	}
	return dst
}

// text is a string folded from a stream, held in its escaped form. As a
// value it is the JSON string.
type text struct {
	rope
}

// scratch holds the buffers that re-escaping a literal reuses.
type scratch struct{ dec, enc []byte }

// add appends the text of the string literal lit and returns how many bytes
// its escaped form took.
func (t *text) add(lit []byte, sc *scratch) int {
	n := t.n
	if canonical(lit) {
		t.write(lit[1 : len(lit)-1])
	} else {
		sc.dec = unquote(sc.dec[:0], lit)
		sc.enc = appendEscaped(sc.enc[:0], sc.dec)
		t.write(sc.enc)
	}
	return t.n - n
}

func (t *text) size() int { return t.n + 2 }

func (t *text) appendTo(dst []byte) []byte {
	return append(t.rope.appendTo(append(dst, '"')), '"')
}

// list collects JSON values from a stream. As a value it is their array.
type list struct {
	rope
	count int
}

// add appends the JSON value v and returns how many bytes it took.
func (l *list) add(v []byte) int {
	n := l.n
	if l.count > 0 {
		l.write([]byte{','})
	}
	l.write(v)
	l.count++
	return l.n - n
}

func (l *list) size() int { return l.n + 2 }

func (l *list) appendTo(dst []byte) []byte {
	return append(l.rope.appendTo(append(dst, '[')), ']')
}

// u4 decodes \uXXXX at the start of s, or returns -1.
func u4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	return jsonscan.Hex4(s[2:])
}
