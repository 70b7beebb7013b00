package ollama

import (
	"bufio"
	"errors"
	"io"
)

// lineReader reads the lines of a stream, each at most max bytes, reusing
// its buffers: a line is valid until the next call.
type lineReader struct {
	br   *bufio.Reader
	long []byte // a line that did not fit in br's buffer
	max  int
}

// readBuffer is the size of a stream's read buffer: lines up to this long
// are never copied.
const readBuffer = 64 << 10

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, readBuffer), max: max}
}

// next returns the next line without its "\n", or ErrLineTooLong once a
// line passes max bytes, without reading the rest of it. At the end of the
// stream it returns what follows the last "\n" (perhaps nothing) with
// io.EOF. After any other error, a line cut short is not returned.
func (l *lineReader) next() ([]byte, error) {
	l.long = l.long[:0]
	for {
		frag, err := l.br.ReadSlice('\n')
		n := len(l.long) + len(frag)
		if err == nil {
			n-- // the "\n"
		}
		if n > l.max {
			return nil, ErrLineTooLong
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			l.grow(len(frag))
			l.long = append(l.long, frag...)
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return nil, err
		}
		line := frag
		if len(l.long) > 0 {
			l.grow(len(frag))
			l.long = append(l.long, frag...)
			line = l.long
		}
		if err == nil {
			line = line[:len(line)-1]
		}
		return line, err
	}
}

// grow makes room for n more bytes in l.long, doubling it, so that a long
// line costs at most twice its size however it arrives.
func (l *lineReader) grow(n int) {
	if need := len(l.long) + n; need > cap(l.long) {
		b := make([]byte, len(l.long), min(max(2*cap(l.long), need), l.max+1))
		copy(b, l.long)
		l.long = b
	}
}
