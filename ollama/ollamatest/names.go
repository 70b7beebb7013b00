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

// modelState is one configured model and its residency. Fields below
// modified are guarded by Server.mu.
type modelState struct {
	Model
	key, display, digest string
	modified             time.Time

	loads    int
	resident bool // loaded and ready
	loading  bool
	opts     runnerOptions // what the current load was made with
	// slots holds one token per request being served by the current load:
	// Ollama's runner lets OLLAMA_NUM_PARALLEL requests run at once and
	// queues the rest on a semaphore (llm/server.go).
	slots   chan struct{}
	refs    int           // requests using the current load (Ollama's refCount)
	serving int           // requests holding a slot
	retire  bool          // unload when refs drops to zero: unloaded, evicted or reloading
	session time.Duration // keep_alive of the latest request
	expires time.Time
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
	}
}

// parallel is how many requests one load of the model serves at once:
// Ollama loads embedding models with one slot whatever OLLAMA_NUM_PARALLEL
// says (server/sched.go, load).
func (st *modelState) parallel(n int) int {
	if st.Embedding {
		return 1
	}
	return n
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
