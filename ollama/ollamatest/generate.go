package ollamatest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"time"
)

// token is one unit of model output.
type token struct {
	text     string
	thinking bool
}

// genJob is one generation request, whatever API it came through.
type genJob struct {
	st       *modelState
	rec      Request
	model    string // as the request named it
	prompt   string // what the reply answers
	prompts  []string
	keep     time.Duration
	opts     runnerOptions
	think    bool
	predict  int // options.num_predict; <= 0 means no limit
	loadOnly bool
	// invalid, when set, is why the runner refuses the request once the
	// model is loaded (an unusable format).
	invalid string
	start   time.Time // when the request arrived, for durations
}

// genStats are the measured metrics of a generation.
type genStats struct {
	load, promptEval, eval, total time.Duration
	evalCount                     int
}

// answer is a finished generation, ready to be written in any format.
type answer struct {
	model             string
	created           time.Time
	content, thinking string
	reason            string
	stats             genStats
	promptCount       int
	context           []int
}

// tokens returns the job's output: thinking first, then the reply, cut at
// num_predict (done_reason "length").
func (s *Server) tokens(j *genJob) (toks []token, reason string) {
	if j.loadOnly {
		return nil, "load"
	}
	if j.think {
		for i, w := range strings.Fields(fmt.Sprintf("%s thinks about: %s", j.model, j.prompt)) {
			toks = append(toks, token{text: spaced(i, w), thinking: true})
		}
	}
	text := fmt.Sprintf("reply from %s to: %s", j.model, j.prompt)
	if s.cfg.reply != nil {
		text = s.cfg.reply(j.rec)
	}
	words := strings.Fields(text)
	n := len(words)
	if s.cfg.tokens > 0 && n > 0 {
		n = s.cfg.tokens
	}
	for i := range n {
		toks = append(toks, token{text: spaced(i, words[i%len(words)])})
	}
	if j.predict > 0 && j.predict < len(toks) {
		return toks[:j.predict], "length"
	}
	return toks, "stop"
}

// spaced gives every word but the first its leading space, as tokenizers do.
func spaced(i int, w string) string {
	if i == 0 {
		return w
	}
	return " " + w
}

// countTokens is the fake's tokenizer: one token per word, at least one.
func countTokens(texts ...string) int {
	n := 0
	for _, t := range texts {
		n += len(strings.Fields(t))
	}
	return max(n, 1)
}

// contextTokens returns deterministic token ids for generate's context.
func contextTokens(texts ...string) []int {
	var ids []int
	for _, t := range texts {
		for _, w := range strings.Fields(t) {
			h := fnv.New32a()
			h.Write([]byte(w))
			ids = append(ids, int(h.Sum32()%32000)+1)
		}
	}
	return ids
}

// run acquires the model and a slot, emits the tokens one by one after the
// token delay, and releases the model before returning, so that residency
// already reflects the request's keep_alive when the caller writes the final
// chunk. It stops at the first error from ctx or emit. A load-only request
// takes no slot: Ollama answers it once the model is loaded.
func (s *Server) run(ctx context.Context, j *genJob, toks []token, emit func(token) error) (genStats, error) {
	u, err := s.acquire(ctx, j.st, j.keep, j.opts, !j.loadOnly)
	if err != nil {
		return genStats{}, err
	}
	if j.loadOnly {
		s.release(u)
		return genStats{}, nil
	}
	loaded := time.Now()
	st := genStats{load: since(j.start, loaded)}
	evalStart := loaded
	for i, tk := range toks {
		if err = s.pause(ctx); err != nil {
			break
		}
		if i == 0 {
			evalStart = time.Now()
			st.promptEval = since(loaded, evalStart)
		}
		if err = emit(tk); err != nil {
			break
		}
		st.evalCount++
	}
	if st.promptEval == 0 {
		st.promptEval = since(loaded, time.Now())
	}
	st.eval = since(evalStart, time.Now())
	s.release(u)
	st.total = since(j.start, time.Now())
	return st, err
}

// since never reports zero, as Ollama's measured durations never are.
func since(a, b time.Time) time.Duration { return max(b.Sub(a), time.Microsecond) }

var errFault = errors.New("injected fault")

// serveGeneration runs j and writes its answer in out's format, applying
// the next scripted fault.
func (s *Server) serveGeneration(ctx context.Context, w http.ResponseWriter, j *genJob, out wire) {
	f := s.takeFault()
	switch f.kind {
	case faultFail:
		out.fail(w, f.status, f.message)
		return
	case faultHang:
		<-ctx.Done()
		return
	}
	if j.invalid != "" && !j.loadOnly {
		// Ollama's runner checks the format when the completion starts,
		// so the model is loaded first; the check comes before the runner
		// takes a slot (llm/server.go, Completion).
		u, err := s.acquire(ctx, j.st, j.keep, j.opts, false)
		if err != nil {
			return
		}
		s.release(u)
		failGeneration(w, out, j.invalid)
		return
	}
	toks, reason := s.tokens(j)
	stopAt := -1
	if f.kind == faultDrop || f.kind == faultMidError {
		stopAt = min(max(len(toks)/2, 1), len(toks))
	}
	var (
		sent              int
		started           bool
		content, thinking strings.Builder
	)
	write := func(b []byte) error {
		if !started {
			w.Header().Set("Content-Type", out.contentType())
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		_ = http.NewResponseController(w).Flush() // a failed flush shows in the next write
		return nil
	}
	emit := func(tk token) error {
		if sent == stopAt {
			return errFault
		}
		sent++
		if tk.thinking {
			thinking.WriteString(tk.text)
		} else {
			content.WriteString(tk.text)
		}
		if out.stream() {
			return write(out.token(tk))
		}
		return nil
	}
	stats, err := s.run(ctx, j, toks, emit)
	if err == nil && stopAt >= 0 {
		err = errFault // every token went out before the fault's turn
	}
	switch {
	case errors.Is(err, errFault) && f.kind == faultDrop:
		if !out.stream() {
			w.Header().Set("Content-Type", jsonType)
			_, _ = w.Write([]byte(`{"model":` + quote(j.model) + `,"created_at":`))
		} else if !started {
			_ = write(nil)
		}
		abortConn(w)
		return
	case errors.Is(err, errFault):
		if started {
			_ = write(out.midError(f.message))
		} else {
			failGeneration(w, out, f.message)
		}
		return
	case err != nil:
		return // the client went away
	}
	a := &answer{
		model:       j.model,
		created:     s.cfg.now().UTC(),
		content:     content.String(),
		thinking:    thinking.String(),
		reason:      reason,
		stats:       stats,
		promptCount: countTokens(j.prompts...),
	}
	if !j.loadOnly {
		a.context = contextTokens(append(j.prompts, content.String())...)
	}
	if out.stream() {
		_ = write(out.final(a))
		return
	}
	out.answer(w, a)
}

// failGeneration answers 500 for a generation that failed before its first
// token. When the answer was to stream, Ollama's streamResponse sets a plain
// "application/json" Content-Type before gin writes the error, and gin keeps
// it; errors from scheduling (faults injected by FailNext) come before that
// and carry gin's "application/json; charset=utf-8".
func failGeneration(w http.ResponseWriter, out wire, msg string) {
	if out.stream() && out.contentType() == ndjsonType {
		w.Header().Set("Content-Type", "application/json")
	}
	out.fail(w, http.StatusInternalServerError, msg)
}

// formatError is what Ollama's runner says of a request's format
// (llm.Completion): nothing for none, null, "", "json" or an object (a JSON
// schema, which the fake does not check further), otherwise that it is
// invalid.
func formatError(format json.RawMessage) string {
	switch f := bytes.TrimSpace(format); {
	case len(f) == 0, string(f) == "null", string(f) == `""`, string(f) == `"json"`, f[0] == '{':
		return ""
	}
	return fmt.Sprintf("invalid format: %q; expected \"json\" or a valid JSON Schema object", []byte(format))
}

// abortConn ends the response without completing it, so that the client
// sees the connection close mid-response.
func abortConn(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// embedding returns the model's raw vector for text: deterministic values in
// [-1, 1) derived from the model and the text.
func embedding(st *modelState, text string) []float64 {
	v := make([]float64, st.Dims)
	seed := sha256.Sum256([]byte(st.key + "\x00" + text))
	var block [sha256.Size]byte
	for i := range v {
		if i%8 == 0 {
			var ctr [8]byte
			binary.BigEndian.PutUint64(ctr[:], uint64(i/8))
			block = sha256.Sum256(append(seed[:], ctr[:]...))
		}
		u := binary.BigEndian.Uint32(block[(i%8)*4:])
		v[i] = float64(u)/float64(1<<31) - 1
	}
	return v
}

// normalize scales v to unit length, as Ollama's /api/embed does.
func normalize(v []float64) []float32 {
	var sum float64
	for _, x := range v {
		sum += x * x
	}
	norm := 1 / max(math.Sqrt(sum), 1e-12)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x * norm)
	}
	return out
}
