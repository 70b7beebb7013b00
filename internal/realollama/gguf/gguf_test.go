package gguf_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hopper-dev/hopper/internal/realollama/gguf"
)

func write(t *testing.T, c gguf.Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := gguf.Write(&buf, c); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func TestWriteReadBack(t *testing.T) {
	c := gguf.Tiny(1)
	data := write(t, c)

	h, err := gguf.ReadHeader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ReadHeader: %v", err)
	}
	if h.Version != 3 {
		t.Errorf("version = %d, want 3", h.Version)
	}
	if !bytes.HasPrefix(data, []byte("GGUF")) {
		t.Errorf("file does not start with GGUF")
	}

	want := map[string]any{
		"general.architecture":                   "llama",
		"general.name":                           "hopper-tiny-seed-1",
		"general.alignment":                      uint32(32),
		"llama.context_length":                   uint32(512),
		"llama.embedding_length":                 uint32(64),
		"llama.block_count":                      uint32(2),
		"llama.feed_forward_length":              uint32(128),
		"llama.attention.head_count":             uint32(4),
		"llama.attention.head_count_kv":          uint32(4),
		"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"llama.rope.dimension_count":             uint32(16),
		"tokenizer.ggml.model":                   "llama",
		"tokenizer.ggml.bos_token_id":            uint32(1),
		"tokenizer.ggml.eos_token_id":            uint32(2),
		"tokenizer.ggml.add_bos_token":           true,
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}

	tokens, _ := h.Get("tokenizer.ggml.tokens").([]string)
	scores, _ := h.Get("tokenizer.ggml.scores").([]float32)
	types, _ := h.Get("tokenizer.ggml.token_type").([]int32)
	n := 3 + 256 + len(gguf.DefaultWords)
	if len(tokens) != n || len(scores) != n || len(types) != n {
		t.Fatalf("vocabulary lengths tokens=%d scores=%d types=%d, want %d", len(tokens), len(scores), len(types), n)
	}
	if got := h.Get("llama.vocab_size"); got != uint32(n) {
		t.Errorf("llama.vocab_size = %v, want %d", got, n)
	}
	for id, want := range map[int]string{0: "<unk>", 1: "<s>", 2: "</s>", 3: "<0x00>", 3 + 0x0A: "<0x0A>", 258: "<0xFF>", 259: "▁"} {
		if tokens[id] != want {
			t.Errorf("token %d = %q, want %q", id, tokens[id], want)
		}
	}
	if types[0] != gguf.TokenUnknown || types[1] != gguf.TokenControl || types[3] != gguf.TokenByte || types[n-1] != gguf.TokenNormal {
		t.Errorf("token types wrong: %v...%v", types[:4], types[n-1])
	}

	// Tensor table: the names llama.cpp expects, F32, aligned, in bounds.
	names := make([]string, 0, len(h.Tensors))
	for _, ti := range h.Tensors {
		names = append(names, ti.Name)
		if ti.Type != gguf.TensorF32 {
			t.Errorf("%s: type %d, want F32", ti.Name, ti.Type)
		}
		if ti.Offset%gguf.Alignment != 0 {
			t.Errorf("%s: offset %d not aligned", ti.Name, ti.Offset)
		}
		if end := h.DataOffset + ti.Offset + 4*ti.Elements(); end > uint64(len(data)) {
			t.Errorf("%s: ends at %d, past file size %d", ti.Name, end, len(data))
		}
	}
	for _, name := range []string{
		"token_embd.weight", "output_norm.weight", "output.weight",
		"blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
		"blk.0.attn_output.weight", "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight",
		"blk.0.ffn_up.weight", "blk.1.ffn_down.weight",
	} {
		if !slices.Contains(names, name) {
			t.Errorf("tensor %s missing", name)
		}
	}
	if len(h.Tensors) != 3+9*2 {
		t.Errorf("%d tensors, want %d", len(h.Tensors), 3+9*2)
	}
	if !slices.Equal(h.Tensors[0].Shape, []uint64{64, uint64(n)}) {
		t.Errorf("token_embd shape %v", h.Tensors[0].Shape)
	}
	if h.DataOffset%gguf.Alignment != 0 {
		t.Errorf("data offset %d not aligned", h.DataOffset)
	}
	last := h.Tensors[len(h.Tensors)-1]
	if end := h.DataOffset + last.Offset + 4*last.Elements(); end != uint64(len(data)) {
		t.Errorf("file is %d bytes, last tensor ends at %d", len(data), end)
	}

	// Norm weights are ones; the others are random in range.
	at := func(ti gguf.TensorInfo, i uint64) float32 {
		o := h.DataOffset + ti.Offset + 4*i
		return math.Float32frombits(binary.LittleEndian.Uint32(data[o:]))
	}
	for _, ti := range h.Tensors {
		for _, i := range []uint64{0, ti.Elements() - 1} {
			v := at(ti, i)
			if len(ti.Shape) == 1 && v != 1 {
				t.Errorf("%s[%d] = %v, want 1", ti.Name, i, v)
			}
			if len(ti.Shape) == 2 && (v == 0 || math.Abs(float64(v)) > float64(c.Scale)) {
				t.Errorf("%s[%d] = %v, want nonzero within ±%v", ti.Name, i, v, c.Scale)
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	a1 := sha256.Sum256(write(t, gguf.Tiny(1)))
	a2 := sha256.Sum256(write(t, gguf.Tiny(1)))
	b := sha256.Sum256(write(t, gguf.Tiny(2)))
	if a1 != a2 {
		t.Error("same seed gave different bytes")
	}
	if a1 == b {
		t.Error("seeds 1 and 2 gave the same bytes")
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "tiny.gguf")
	if err := gguf.WriteFile(path, gguf.Tiny(7)); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, write(t, gguf.Tiny(7))) {
		t.Error("WriteFile wrote different bytes from Write")
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the model", len(entries))
	}
}

func TestInvalidConfig(t *testing.T) {
	c := gguf.Tiny(1)
	c.HeadCount = 5
	if err := gguf.Write(&bytes.Buffer{}, c); err == nil {
		t.Error("Write accepted embedding 64 with 5 heads")
	}
}

func TestReadHeaderRejectsGarbage(t *testing.T) {
	data := write(t, gguf.Tiny(1))
	for name, in := range map[string][]byte{
		"magic":     append([]byte("GGML"), data[4:]...),
		"truncated": data[:200],
		"empty":     nil,
	} {
		_, err := gguf.ReadHeader(bytes.NewReader(in))
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !errors.Is(err, gguf.ErrFormat) {
			t.Errorf("%s: error %v does not wrap ErrFormat", name, err)
		}
	}
}
