package ollamatest

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

// displayName returns Ollama's shortest display form of a model name.
func displayName(s string) string { return ollama.DisplayName(s) }

// keyOf is the case-insensitive identity Ollama matches model names by.
func keyOf(name string) string { return strings.ToLower(displayName(name)) }

// modelState is one configured model and its residency. Fields below slot
// are guarded by Server.mu.
type modelState struct {
	Model
	key, display, digest string
	modified             time.Time
	// slot holds one token while a request uses the model: Ollama runs one
	// request at a time per model (OLLAMA_NUM_PARALLEL=1).
	slot chan struct{}

	loads          int
	resident       bool
	loading        bool
	busy           bool
	unloadWhenIdle bool
	session        time.Duration // keep_alive of the latest request
	expires        time.Time
}

func newModelState(m Model, modified time.Time) *modelState {
	if m.Dims <= 0 {
		m.Dims = 16
	}
	if m.Size <= 0 {
		m.Size = 1 << 30
	}
	d := displayName(m.Name)
	sum := sha256.Sum256([]byte(d))
	return &modelState{
		Model:    m,
		key:      strings.ToLower(d),
		display:  d,
		digest:   hex.EncodeToString(sum[:]),
		modified: modified,
		slot:     make(chan struct{}, 1),
	}
}

// capabilities lists what /api/show reports for the model.
func (st *modelState) capabilities() []string {
	if st.Embedding {
		return []string{"embedding"}
	}
	caps := []string{"completion", "tools"}
	if st.Thinking {
		caps = append(caps, "thinking")
	}
	return caps
}
