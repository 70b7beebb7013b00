package ollamatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// handleChat serves POST /api/chat, checking the request in the order
// Ollama's ChatHandler does.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, rec Request) {
	start := time.Now()
	var req chatRequest
	if !decodeRequest(w, rec.Body, &req, "ChatRequest") || !validTopLogprobs(w, req.TopLogprobs) {
		return
	}
	st := s.requireModel(w, req.Model, notFound, writeOllamaError)
	if st == nil {
		return
	}
	out := nativeChat{ndjsonWire{s: s, model: req.Model, streaming: req.Stream == nil || *req.Stream}}
	if len(req.Messages) == 0 && req.KeepAlive != nil && req.KeepAlive.Duration == 0 {
		s.unload(st)
		out.answer(w, &answer{model: req.Model, created: s.cfg.now().UTC(), reason: "unload"})
		return
	}
	j := s.nativeJob(w, st, rec, start, "chat", nativeRequest{
		model: req.Model, think: req.Think, keepAlive: req.KeepAlive, options: req.Options, format: req.Format})
	if j == nil {
		return
	}
	j.prompt, j.loadOnly = lastUserText(req.Messages), len(req.Messages) == 0
	for _, m := range req.Messages {
		j.prompts = append(j.prompts, m.Content)
	}
	if j.loadOnly {
		out.streaming = false // Ollama answers a load with one JSON object
	}
	s.serveGeneration(r.Context(), w, j, out)
}

// handleGenerate serves POST /api/generate, checking the request in the
// order Ollama's GenerateHandler does.
func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request, rec Request) {
	start := time.Now()
	var req generateRequest
	if !decodeRequest(w, rec.Body, &req, "GenerateRequest") || !validTopLogprobs(w, req.TopLogprobs) {
		return
	}
	st := s.findModel(w, req.Model, notFound, writeOllamaError)
	if st == nil {
		return
	}
	out := nativeGenerate{ndjsonWire{s: s, model: req.Model, streaming: req.Stream == nil || *req.Stream}, req.Raw}
	if req.Prompt == "" && req.KeepAlive != nil && req.KeepAlive.Duration == 0 {
		s.unload(st)
		out.raw = true // no context in an unload answer
		out.answer(w, &answer{model: req.Model, created: s.cfg.now().UTC(), reason: "unload"})
		return
	}
	if req.Raw && (req.Template != "" || req.System != "" || len(req.Context) > 0) {
		writeOllamaError(w, http.StatusBadRequest, "raw mode does not support template, system, or context")
		return
	}
	j := s.nativeJob(w, st, rec, start, "generate", nativeRequest{
		model: req.Model, think: req.Think, keepAlive: req.KeepAlive, options: req.Options, format: req.Format})
	if j == nil {
		return
	}
	j.prompt, j.prompts, j.loadOnly = req.Prompt, []string{req.System, req.Prompt}, req.Prompt == ""
	if j.loadOnly {
		out.streaming, out.raw = false, true
	}
	s.serveGeneration(r.Context(), w, j, out)
}

// validTopLogprobs answers 400 and reports false if n is out of Ollama's
// range.
func validTopLogprobs(w http.ResponseWriter, n int) bool {
	if n < 0 || n > 20 {
		writeOllamaError(w, http.StatusBadRequest, "top_logprobs must be between 0 and 20")
		return false
	}
	return true
}

// nativeRequest is what /api/chat and /api/generate requests share.
type nativeRequest struct {
	model     string
	think     *thinkValue
	keepAlive *duration
	options   map[string]any
	format    json.RawMessage
}

// nativeJob makes the checks Ollama's chat and generate handlers make once
// a request is not an unload, in their order (think, a model that only
// embeds, which does not support what, the options), and returns the job
// with the fields the two set alike. It answers the first check that fails
// and returns nil.
func (s *Server) nativeJob(w http.ResponseWriter, st *modelState, rec Request, start time.Time, what string, req nativeRequest) *genJob {
	think, ok := s.checkThink(w, st, req.model, req.think, writeOllamaError)
	if !ok {
		return nil
	}
	if st.Embedding {
		writeOllamaError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support %s", req.model, what))
		return nil
	}
	if err := checkOptions(req.options); err != nil {
		writeOllamaError(w, http.StatusInternalServerError, err.Error())
		return nil
	}
	return &genJob{
		st: st, rec: rec, model: req.model, keep: keepOf(req.keepAlive), opts: runnerOptionsOf(req.options),
		think: think, predict: numPredict(req.options), start: start, invalid: formatError(req.format),
	}
}

// checkThink applies Ollama's rule: thinking models think unless told not
// to; asking any other model to think is a 400.
func (s *Server) checkThink(w http.ResponseWriter, st *modelState, model string, t *thinkValue,
	fail func(http.ResponseWriter, int, string)) (think, ok bool) {
	if st.Thinking {
		return t == nil || t.on(), true
	}
	if t.on() {
		fail(w, http.StatusBadRequest, fmt.Sprintf("%q does not support thinking", model))
		return false, false
	}
	return false, true
}
