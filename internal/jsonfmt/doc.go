// Package jsonfmt is how hopper writes JSON and how it says where JSON it
// cannot read goes wrong, so that every package and every entry point does
// both the same way.
//
// The encoders never escape <, > and & (as \u003c and so on, which
// encoding/json does by default for HTML): job files, records, requests and
// events keep the text people wrote, byte for byte, and a prompt full of
// markup does not grow. [Locate] turns a decoding error into a position a
// person and a program can both use: line and column (counted from 1, the
// column in characters) and the byte offset (counted from 0).
//
// Any package may import it: it imports nothing of hopper's.
package jsonfmt
