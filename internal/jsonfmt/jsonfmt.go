package jsonfmt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Marshal is json.Marshal without escaping <, > and &: one line, no
// trailing newline.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MarshalIndent encodes v indented by two spaces, with a trailing newline,
// without escaping <, > and &: a document that cat and less show well.
func MarshalIndent(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// NewEncoder returns an encoder to w that leaves <, > and & as they are.
// Each Encode writes one value and a newline, as NDJSON wants.
func NewEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// SyntaxError says where and why JSON text does not parse.
type SyntaxError struct {
	// Msg is encoding/json's account of what is wrong; "" when the text
	// ends before its value does.
	Msg string
	// Offset is the byte offset, from 0, of the offending byte (of the
	// end of the text when it ends early).
	Offset int64
	// Line and Column, from 1, locate the same place; Column counts
	// characters, not bytes.
	Line, Column int
}

func (e *SyntaxError) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("it ends early at line %d, column %d, byte offset %d (was it cut off?)", e.Line, e.Column, e.Offset)
	}
	return fmt.Sprintf("%s at line %d, column %d, byte offset %d", e.Msg, e.Line, e.Column, e.Offset)
}

// Locate returns where decoding data went wrong when err, from decoding
// data with encoding/json, is a syntax error (a *json.SyntaxError, or
// io.ErrUnexpectedEOF from a Decoder), and nil for any other error.
func Locate(data []byte, err error) *SyntaxError {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn) && syn.Error() != "unexpected end of JSON input":
		// Offset counts the bytes read, the offending one included.
		return at(data, syn.Offset-1, syn.Error())
	case syn != nil, errors.Is(err, io.ErrUnexpectedEOF):
		return at(data, int64(len(data)), "")
	}
	return nil
}

// at locates byte offset of data.
func at(data []byte, offset int64, msg string) *SyntaxError {
	offset = min(max(offset, 0), int64(len(data)))
	e := &SyntaxError{Msg: msg, Offset: offset, Line: 1, Column: 1}
	for rest := data[:offset]; len(rest) > 0; {
		r, n := utf8.DecodeRune(rest)
		rest = rest[n:]
		if r == '\n' {
			e.Line, e.Column = e.Line+1, 1
		} else {
			e.Column++
		}
	}
	return e
}
