package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"

	"github.com/hopper-dev/hopper/spool"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version Write produces.
const Version = 3

// Alignment is the byte alignment of tensor data (general.alignment).
const Alignment = 32

// Metadata value types, as numbered by the GGUF specification: 0 to 12,
// in this order.
const (
	TypeUint8 uint32 = iota
	TypeInt8
	TypeUint16
	TypeInt16
	TypeUint32
	TypeInt32
	TypeFloat32
	TypeBool
	TypeString
	TypeArray
	TypeUint64
	TypeInt64
	TypeFloat64
)

// TensorF32 is ggml's type number for 32-bit float tensors.
const TensorF32 uint32 = 0

// Token types of the "llama" tokenizer (tokenizer.ggml.token_type).
const (
	TokenNormal  int32 = 1
	TokenUnknown int32 = 2
	TokenControl int32 = 3
	TokenByte    int32 = 6
)

// Special token ids.
const (
	UnknownID = 0
	BOSID     = 1
	EOSID     = 2
)

// Config describes the model to write. The zero value is not useful; start
// from Tiny.
type Config struct {
	Seed              int64   // seeds the weights
	Name              string  // general.name; default "hopper-tiny-seed-N"
	ContextLength     int     // llama.context_length
	EmbeddingLength   int     // llama.embedding_length
	BlockCount        int     // llama.block_count
	FeedForwardLength int     // llama.feed_forward_length
	HeadCount         int     // llama.attention.head_count
	HeadCountKV       int     // llama.attention.head_count_kv
	RMSEpsilon        float32 // llama.attention.layer_norm_rms_epsilon
	RopeFreqBase      float32 // llama.rope.freq_base
	Scale             float32 // weights are uniform in [-Scale, Scale)
	Words             []string
}

// DefaultWords are the word pieces after the byte tokens. "▁" (U+2581) marks
// a leading space, as in SentencePiece.
var DefaultWords = []string{
	"▁", "▁the", "▁a", "▁is", "▁sky", "▁blue", "▁why", "▁hello", "▁hi",
	"▁world", "▁job", "▁queue", "▁hopper", "▁ok", "▁yes", "▁no", ".", ",", "?", "!",
	"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
	"n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z",
}

// Tiny returns the configuration the hopper tests use: embedding 64, 2
// layers, 4 heads, feed-forward 128, context 512.
func Tiny(seed int64) Config {
	return Config{
		Seed:              seed,
		ContextLength:     512,
		EmbeddingLength:   64,
		BlockCount:        2,
		FeedForwardLength: 128,
		HeadCount:         4,
		HeadCountKV:       4,
		RMSEpsilon:        1e-5,
		RopeFreqBase:      10000,
		Scale:             0.5,
		Words:             DefaultWords,
	}
}

// Vocabulary returns the tokens, scores and token types Write stores for
// words (see DefaultWords).
func Vocabulary(words []string) (tokens []string, scores []float32, types []int32) {
	tokens = append(tokens, "<unk>", "<s>", "</s>")
	scores = append(scores, 0, 0, 0)
	types = append(types, TokenUnknown, TokenControl, TokenControl)
	for b := range 256 {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		scores = append(scores, 0)
		types = append(types, TokenByte)
	}
	for i, w := range words {
		tokens = append(tokens, w)
		// SentencePiece prefers higher scores; longer pieces first.
		scores = append(scores, float32(-i)/float32(len(words))+float32(len([]rune(w))))
		types = append(types, TokenNormal)
	}
	return tokens, scores, types
}

// TensorInfo is one entry of the tensor table.
type TensorInfo struct {
	Name   string
	Shape  []uint64 // ggml order: Shape[0] is the innermost (row length)
	Type   uint32
	Offset uint64 // from the start of the tensor data section
}

// Elements is the number of values in the tensor.
func (t TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Tensors returns the tensor table Write lays out for c, offsets included.
func (c Config) Tensors() []TensorInfo {
	vocab := uint64(3 + 256 + len(c.Words))
	e := uint64(c.EmbeddingLength)
	ff := uint64(c.FeedForwardLength)
	kv := e / uint64(c.HeadCount) * uint64(c.HeadCountKV)

	var ts []TensorInfo
	add := func(name string, shape ...uint64) {
		ts = append(ts, TensorInfo{Name: name, Shape: shape, Type: TensorF32})
	}
	add("token_embd.weight", e, vocab)
	for i := range c.BlockCount {
		p := fmt.Sprintf("blk.%d.", i)
		add(p+"attn_norm.weight", e)
		add(p+"attn_q.weight", e, e)
		add(p+"attn_k.weight", e, kv)
		add(p+"attn_v.weight", e, kv)
		add(p+"attn_output.weight", e, e)
		add(p+"ffn_norm.weight", e)
		add(p+"ffn_gate.weight", e, ff)
		add(p+"ffn_up.weight", e, ff)
		add(p+"ffn_down.weight", ff, e)
	}
	add("output_norm.weight", e)
	add("output.weight", e, vocab)

	var off uint64
	for i := range ts {
		ts[i].Offset = off
		off += pad(ts[i].Elements() * 4)
	}
	return ts
}

func (c Config) validate() error {
	switch {
	case c.EmbeddingLength <= 0, c.BlockCount <= 0, c.FeedForwardLength <= 0,
		c.HeadCount <= 0, c.HeadCountKV <= 0, c.ContextLength <= 0:
		return errors.New("gguf: dimensions must be positive")
	case c.EmbeddingLength%c.HeadCount != 0:
		return fmt.Errorf("gguf: embedding length %d is not a multiple of head count %d", c.EmbeddingLength, c.HeadCount)
	case c.HeadCount%c.HeadCountKV != 0:
		return fmt.Errorf("gguf: head count %d is not a multiple of KV head count %d", c.HeadCount, c.HeadCountKV)
	}
	return nil
}

// KV is one metadata entry. Value holds a Go value of the matching type:
// uint32, int32, float32, bool, string, uint64, or a slice of those for
// arrays ([]string, []float32, []int32).
type KV struct {
	Key   string
	Value any
}

// Metadata returns the metadata entries Write stores for c, in file order.
func (c Config) Metadata() []KV {
	tokens, scores, types := Vocabulary(c.Words)
	name := c.Name
	if name == "" {
		name = fmt.Sprintf("hopper-tiny-seed-%d", c.Seed)
	}
	u := func(n int) uint32 { return uint32(n) }
	return []KV{
		{"general.architecture", "llama"},
		{"general.name", name},
		{"general.alignment", uint32(Alignment)},
		{"general.file_type", uint32(0)}, // all F32
		{"llama.vocab_size", u(len(tokens))},
		{"llama.context_length", u(c.ContextLength)},
		{"llama.embedding_length", u(c.EmbeddingLength)},
		{"llama.block_count", u(c.BlockCount)},
		{"llama.feed_forward_length", u(c.FeedForwardLength)},
		{"llama.attention.head_count", u(c.HeadCount)},
		{"llama.attention.head_count_kv", u(c.HeadCountKV)},
		{"llama.attention.layer_norm_rms_epsilon", c.RMSEpsilon},
		{"llama.rope.dimension_count", u(c.EmbeddingLength / c.HeadCount)},
		{"llama.rope.freq_base", c.RopeFreqBase},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.scores", scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.unknown_token_id", uint32(UnknownID)},
		{"tokenizer.ggml.bos_token_id", uint32(BOSID)},
		{"tokenizer.ggml.eos_token_id", uint32(EOSID)},
		{"tokenizer.ggml.add_bos_token", true},
		{"tokenizer.ggml.add_eos_token", false},
	}
}

func pad(n uint64) uint64 { return (n + Alignment - 1) / Alignment * Alignment }

// Write writes the model c describes to w.
func Write(w io.Writer, c Config) error {
	if err := c.validate(); err != nil {
		return err
	}
	bw := &writer{w: bufio.NewWriterSize(w, 1<<16)}
	md := c.Metadata()
	ts := c.Tensors()

	bw.bytes([]byte(Magic))
	bw.u32(Version)
	bw.u64(uint64(len(ts)))
	bw.u64(uint64(len(md)))
	for _, kv := range md {
		bw.str(kv.Key)
		bw.value(kv.Value)
	}
	for _, t := range ts {
		bw.str(t.Name)
		bw.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			bw.u64(d)
		}
		bw.u32(t.Type)
		bw.u64(t.Offset)
	}
	bw.align()

	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x686f70706572)) // "hopper"
	for _, t := range ts {
		norm := len(t.Shape) == 1
		for range t.Elements() {
			v := float32(1)
			if !norm {
				v = (rng.Float32()*2 - 1) * c.Scale
			}
			bw.u32(math.Float32bits(v))
		}
		bw.align()
	}
	if bw.err != nil {
		return fmt.Errorf("gguf: write: %w", bw.err)
	}
	if err := bw.w.Flush(); err != nil {
		return fmt.Errorf("gguf: write: %w", err)
	}
	return nil
}

// WriteFile writes the model to path atomically (spool.WriteAtomic: a
// temporary file in the same directory, then rename), creating the
// directory if needed.
func WriteFile(path string, c Config) error {
	if err := spool.WriteAtomic(path, 0o640, func(w io.Writer) error { return Write(w, c) }); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

type writer struct {
	w   *bufio.Writer
	n   uint64
	err error
	buf [8]byte
}

func (w *writer) bytes(b []byte) {
	if w.err != nil {
		return
	}
	_, w.err = w.w.Write(b)
	w.n += uint64(len(b))
}

func (w *writer) u32(v uint32) {
	binary.LittleEndian.PutUint32(w.buf[:4], v)
	w.bytes(w.buf[:4])
}

func (w *writer) u64(v uint64) {
	binary.LittleEndian.PutUint64(w.buf[:8], v)
	w.bytes(w.buf[:8])
}

func (w *writer) str(s string) {
	w.u64(uint64(len(s)))
	w.bytes([]byte(s))
}

func (w *writer) align() {
	if p := pad(w.n) - w.n; p > 0 {
		w.bytes(make([]byte, p))
	}
}

func (w *writer) value(v any) {
	switch v := v.(type) {
	case uint32:
		w.u32(TypeUint32)
		w.u32(v)
	case int32:
		w.u32(TypeInt32)
		w.u32(uint32(v))
	case float32:
		w.u32(TypeFloat32)
		w.u32(math.Float32bits(v))
	case uint64:
		w.u32(TypeUint64)
		w.u64(v)
	case bool:
		w.u32(TypeBool)
		if v {
			w.bytes([]byte{1})
		} else {
			w.bytes([]byte{0})
		}
	case string:
		w.u32(TypeString)
		w.str(v)
	case []string:
		array(w, TypeString, v, w.str)
	case []float32:
		array(w, TypeFloat32, v, func(f float32) { w.u32(math.Float32bits(f)) })
	case []int32:
		array(w, TypeInt32, v, func(i int32) { w.u32(uint32(i)) })
	default:
		if w.err == nil {
			w.err = fmt.Errorf("unsupported metadata value type %T", v)
		}
	}
}

// array writes an array of element type typ, each element with put.
func array[T any](w *writer, typ uint32, v []T, put func(T)) {
	w.u32(TypeArray)
	w.u32(typ)
	w.u64(uint64(len(v)))
	for _, e := range v {
		put(e)
	}
}
