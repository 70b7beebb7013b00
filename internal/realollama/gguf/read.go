package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Header is what ReadHeader finds before the tensor data.
type Header struct {
	Version  uint32
	Metadata []KV // in file order
	Tensors  []TensorInfo
	// DataOffset is where the tensor data section starts in the file.
	DataOffset uint64
}

// Get returns the value of the metadata key, or nil.
func (h *Header) Get(key string) any {
	for _, kv := range h.Metadata {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

// ErrFormat is wrapped by the errors ReadHeader returns for malformed input.
var ErrFormat = errors.New("gguf: malformed file")

// maxCount bounds array and string lengths so a corrupt file cannot make
// ReadHeader allocate without limit.
const maxCount = 1 << 24

// ReadHeader reads the header, metadata and tensor table from r. Arrays of
// the types Write uses decode to []string, []float32 and []int32; other
// arrays decode to []any.
func ReadHeader(r io.Reader) (*Header, error) {
	rd := &reader{r: bufio.NewReader(r)}
	magic := rd.bytes(4)
	if rd.err == nil && string(magic) != Magic {
		return nil, fmt.Errorf("%w: bad magic %q", ErrFormat, magic)
	}
	h := &Header{Version: rd.u32()}
	if rd.err == nil && h.Version != 2 && h.Version != 3 {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrFormat, h.Version)
	}
	nt, nkv := rd.u64(), rd.u64()
	if rd.err == nil && (nt > maxCount || nkv > maxCount) {
		return nil, fmt.Errorf("%w: %d tensors, %d keys", ErrFormat, nt, nkv)
	}
	for range nkv {
		if rd.err != nil {
			break
		}
		k := rd.str()
		v := rd.value(rd.u32())
		h.Metadata = append(h.Metadata, KV{Key: k, Value: v})
	}
	for range nt {
		if rd.err != nil {
			break
		}
		t := TensorInfo{Name: rd.str()}
		dims := rd.u32()
		if dims > 4 {
			rd.fail(fmt.Errorf("%w: tensor %q has %d dimensions", ErrFormat, t.Name, dims))
			break
		}
		for range dims {
			t.Shape = append(t.Shape, rd.u64())
		}
		t.Type = rd.u32()
		t.Offset = rd.u64()
		h.Tensors = append(h.Tensors, t)
	}
	if rd.err != nil {
		if errors.Is(rd.err, io.EOF) || errors.Is(rd.err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %w", ErrFormat, io.ErrUnexpectedEOF)
		}
		return nil, rd.err
	}
	align := uint64(32)
	if a, ok := h.Get("general.alignment").(uint32); ok && a > 0 {
		align = uint64(a)
	}
	h.DataOffset = (rd.n + align - 1) / align * align
	return h, nil
}

type reader struct {
	r   *bufio.Reader
	n   uint64
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > maxCount {
		r.fail(fmt.Errorf("%w: length %d", ErrFormat, n))
		return nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		r.fail(err)
		return nil
	}
	r.n += n
	return b
}

// fixed reads n bytes and decodes them with dec: zero after an error.
func fixed[T any](r *reader, n uint64, dec func([]byte) T) T {
	var v T
	if b := r.bytes(n); b != nil {
		v = dec(b)
	}
	return v
}

func (r *reader) u8() uint8   { return fixed(r, 1, func(b []byte) uint8 { return b[0] }) }
func (r *reader) u16() uint16 { return fixed(r, 2, binary.LittleEndian.Uint16) }
func (r *reader) u32() uint32 { return fixed(r, 4, binary.LittleEndian.Uint32) }
func (r *reader) u64() uint64 { return fixed(r, 8, binary.LittleEndian.Uint64) }

func (r *reader) str() string { return string(r.bytes(r.u64())) }

func (r *reader) scalar(t uint32) any {
	switch t {
	case TypeUint8:
		return r.u8()
	case TypeInt8:
		return int8(r.u8())
	case TypeUint16:
		return r.u16()
	case TypeInt16:
		return int16(r.u16())
	case TypeUint32:
		return r.u32()
	case TypeInt32:
		return int32(r.u32())
	case TypeFloat32:
		return math.Float32frombits(r.u32())
	case TypeBool:
		return r.u8() != 0
	case TypeString:
		return r.str()
	case TypeUint64:
		return r.u64()
	case TypeInt64:
		return int64(r.u64())
	case TypeFloat64:
		return math.Float64frombits(r.u64())
	default:
		r.fail(fmt.Errorf("%w: unknown value type %d", ErrFormat, t))
	}
	return nil
}

func (r *reader) value(t uint32) any {
	if t != TypeArray {
		return r.scalar(t)
	}
	et, n := r.u32(), r.u64()
	if n > maxCount {
		r.fail(fmt.Errorf("%w: array of %d", ErrFormat, n))
		return nil
	}
	switch et {
	case TypeString:
		return readArray(r, n, r.str)
	case TypeFloat32:
		return readArray(r, n, func() float32 { return math.Float32frombits(r.u32()) })
	case TypeInt32:
		return readArray(r, n, func() int32 { return int32(r.u32()) })
	case TypeArray:
		r.fail(fmt.Errorf("%w: nested arrays are not supported", ErrFormat))
		return nil
	default:
		return readArray(r, n, func() any { return r.scalar(et) })
	}
}

// readArray reads n elements with get, stopping at the first error.
func readArray[T any](r *reader, n uint64, get func() T) []T {
	out := make([]T, 0, min(n, 4096))
	for range n {
		if r.err != nil {
			break
		}
		out = append(out, get())
	}
	return out
}
