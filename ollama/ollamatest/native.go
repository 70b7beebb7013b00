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
	req, st := openNative[chatRequest](s, w, rec, "ChatRequest", s.requireModel)
	if st == nil {
		return
	}
	out := nativeChat{req.wire(s)}
	if len(req.Messages) == 0 && req.unloads() {
		s.unload(st)
		out.answer(w, &answer{model: req.Model, created: s.cfg.now().UTC(), reason: "unload"})
		return
	}
	j := s.nativeJob(w, st, rec, start, "chat", &req.nativeFields)
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
	req, st := openNative[generateRequest](s, w, rec, "GenerateRequest", s.findModel)
	if st == nil {
		return
	}
	out := nativeGenerate{req.wire(s), req.Raw}
	if req.Prompt == "" && req.unloads() {
		s.unload(st)
		out.raw = true // no context in an unload answer
		out.answer(w, &answer{model: req.Model, created: s.cfg.now().UTC(), reason: "unload"})
		return
	}
	if req.Raw && (req.Template != "" || req.System != "" || len(req.Context) > 0) {
		writeOllamaError(w, http.StatusBadRequest, "raw mode does not support template, system, or context")
		return
	}
	j := s.nativeJob(w, st, rec, start, "generate", &req.nativeFields)
	if j == nil {
		return
	}
	j.prompt, j.prompts, j.loadOnly = req.Prompt, []string{req.System, req.Prompt}, req.Prompt == ""
	if j.loadOnly {
		out.streaming, out.raw = false, true
	}
	s.serveGeneration(r.Context(), w, j, out)
}

// openNative decodes the body of a native generation request (a
// chatRequest or generateRequest, named apiType in errors), checks its
// top_logprobs and finds its model with find (requireModel or findModel,
// as Ollama's handler does), answering any error itself: it returns a nil
// model when it did.
func openNative[T any, P interface {
	*T
	shared() *nativeFields
}](s *Server, w http.ResponseWriter, rec Request, apiType string,
	find func(w http.ResponseWriter, name, notFound string, fail func(http.ResponseWriter, int, string)) *modelState) (*T, *modelState) {
	req := P(new(T))
	if !decodeRequest(w, rec.Body, req, apiType) || !validTopLogprobs(w, req.shared().TopLogprobs) {
		return req, nil
	}
	return req, find(w, req.shared().Model, notFound, writeOllamaError)
}

// wire is the request's answer format before the handler's own fields.
func (f *nativeFields) wire(s *Server) ndjsonWire {
	return ndjsonWire{s: s, model: f.Model, streaming: f.Stream == nil || *f.Stream}
}

// unloads reports whether the request asks for keep_alive 0, which with
// nothing to generate unloads the model.
func (f *nativeFields) unloads() bool { return f.KeepAlive != nil && f.KeepAlive.Duration == 0 }

// validTopLogprobs answers 400 and reports false if n is out of Ollama's
// range.
func validTopLogprobs(w http.ResponseWriter, n int) bool {
	if n < 0 || n > 20 {
		writeOllamaError(w, http.StatusBadRequest, "top_logprobs must be between 0 and 20")
		return false
	}
	return true
}

// nativeJob makes the checks Ollama's chat and generate handlers make once
// a request is not an unload, in their order (think, a model that only
// embeds, which does not support what, the options), and returns the job
// with the fields the two set alike. It answers the first check that fails
// and returns nil.
func (s *Server) nativeJob(w http.ResponseWriter, st *modelState, rec Request, start time.Time, what string, req *nativeFields) *genJob {
	think, ok := s.checkThink(w, st, req.Model, req.Think, writeOllamaError)
	if !ok {
		return nil
	}
	if st.Embedding {
		writeOllamaError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support %s", req.Model, what))
		return nil
	}
	if err := checkOptions(req.Options); err != nil {
		writeOllamaError(w, http.StatusInternalServerError, err.Error())
		return nil
	}
	return &genJob{
		st: st, rec: rec, model: req.Model, keep: keepOf(req.KeepAlive), opts: runnerOptionsOf(req.Options),
		think: think, predict: numPredict(req.Options), start: start, invalid: formatError(req.Format),
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
