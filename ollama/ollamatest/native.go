package ollamatest

import (
	"fmt"
	"net/http"
	"time"
)

// handleChat serves POST /api/chat, checking the request in the order
// Ollama's ChatHandler does.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request, rec Request) {
	start := time.Now()
	var req chatRequest
	if err := decodeBody(rec.Body, &req, "ChatRequest"); err != nil {
		writeOllamaError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.TopLogprobs < 0 || req.TopLogprobs > 20 {
		writeOllamaError(w, http.StatusBadRequest, "top_logprobs must be between 0 and 20")
		return
	}
	if req.Model == "" {
		writeOllamaError(w, http.StatusBadRequest, "model is required")
		return
	}
	st := s.lookup(req.Model)
	if st == nil {
		writeOllamaError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", req.Model))
		return
	}
	out := nativeChat{s: s, model: req.Model, streaming: req.Stream == nil || *req.Stream}
	if len(req.Messages) == 0 && req.KeepAlive != nil && req.KeepAlive.Duration == 0 {
		s.unload(st)
		out.answer(w, &answer{model: req.Model, created: s.cfg.now().UTC(), reason: "unload"})
		return
	}
	think, ok := s.checkThink(w, st, req.Model, req.Think, writeOllamaError)
	if !ok {
		return
	}
	if st.Embedding {
		writeOllamaError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support chat", req.Model))
		return
	}
	if err := checkOptions(req.Options); err != nil {
		writeOllamaError(w, http.StatusInternalServerError, err.Error())
		return
	}
	j := &genJob{
		st: st, rec: rec, model: req.Model, keep: keepOf(req.KeepAlive), opts: runnerOptionsOf(req.Options),
		think: think, predict: numPredict(req.Options), start: start,
		prompt: lastUserText(req.Messages), loadOnly: len(req.Messages) == 0,
		invalid: formatError(req.Format),
	}
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
	if err := decodeBody(rec.Body, &req, "GenerateRequest"); err != nil {
		writeOllamaError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.TopLogprobs < 0 || req.TopLogprobs > 20 {
		writeOllamaError(w, http.StatusBadRequest, "top_logprobs must be between 0 and 20")
		return
	}
	st := s.lookup(req.Model)
	if st == nil {
		writeOllamaError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", req.Model))
		return
	}
	out := nativeGenerate{s: s, model: req.Model, streaming: req.Stream == nil || *req.Stream, raw: req.Raw}
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
	think, ok := s.checkThink(w, st, req.Model, req.Think, writeOllamaError)
	if !ok {
		return
	}
	if st.Embedding {
		writeOllamaError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support generate", req.Model))
		return
	}
	if err := checkOptions(req.Options); err != nil {
		writeOllamaError(w, http.StatusInternalServerError, err.Error())
		return
	}
	j := &genJob{
		st: st, rec: rec, model: req.Model, keep: keepOf(req.KeepAlive), opts: runnerOptionsOf(req.Options),
		think: think, predict: numPredict(req.Options), start: start,
		prompt: req.Prompt, prompts: []string{req.System, req.Prompt}, loadOnly: req.Prompt == "",
		invalid: formatError(req.Format),
	}
	if j.loadOnly {
		out.streaming, out.raw = false, true
	}
	s.serveGeneration(r.Context(), w, j, out)
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
