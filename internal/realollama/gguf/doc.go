// Package gguf writes tiny llama-architecture model files in the GGUF v3
// format, for tests that need a real Ollama server to load a real model.
//
// Contract:
//   - Write produces a complete, loadable GGUF v3 file: little-endian, the
//     metadata keys llama.cpp and Ollama read for the "llama" architecture,
//     a SentencePiece-style "llama" tokenizer (<unk>=0, <s>=1, </s>=2, the 256
//     byte tokens <0x00>..<0xFF>, then a few word pieces), and F32 tensors laid
//     out at Alignment-byte boundaries.
//   - The output is a pure function of the Config: the same Config (and so the
//     same seed) always gives the same bytes; different seeds give different
//     weights, so Ollama sees different models.
//   - The weights are random, so a model built from the file talks gibberish.
//     That is the point: it loads in well under a second on a CPU.
//
// ReadHeader reads back the header, metadata and tensor table of any GGUF
// v2/v3 file; it exists so tests can check what was written.
package gguf
