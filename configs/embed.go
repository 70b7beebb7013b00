package configs

import _ "embed"

// Example is configs/hopper.yaml: every setting with its default.
//
//go:embed hopper.yaml
var Example []byte

// SampleHook is an example hook executable that `hopper init` writes into
// the hooks directory as done.sample.
//
//go:embed done.sample
var SampleHook []byte
