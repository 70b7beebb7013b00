package ollamatest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// embedRun applies the next fault to an embedding request and, unless the
// fault ends it, makes the model resident with opts for it and takes a slot
// for a moment. (Ollama's runner takes one slot per input, all inputs at
// once; the fake takes one per request.) It returns the load duration and
// whether to go on and answer.
func (s *Server) embedRun(ctx context.Context, w http.ResponseWriter, st *modelState, keep time.Duration,
	opts runnerOptions, start time.Time, fail func(http.ResponseWriter, int, string)) (time.Duration, bool) {
	f := s.takeFault()
	switch f.kind {
	case faultFail:
		fail(w, f.status, f.message)
		return 0, false
	case faultHang:
		<-ctx.Done()
		return 0, false
	}
	u, err := s.acquire(ctx, st, keep, opts, true)
	if err != nil {
		return 0, false
	}
	load := since(start, time.Now())
	s.release(u)
	switch f.kind {
	case faultDrop:
		w.Header().Set("Content-Type", jsonType)
		_, _ = w.Write([]byte(`{"model":`))
		abortConn(w)
		return 0, false
	case faultMidError:
		fail(w, http.StatusInternalServerError, f.message)
		return 0, false
	}
	return load, true
}

// embedInputs reads /api/embed's input: a string or an array of strings.
func embedInputs(v any) ([]string, bool) {
	switch in := v.(type) {
	case nil:
		return nil, true
	case string:
		if in == "" {
			return nil, true
		}
		return []string{in}, true
	case []any:
		out := make([]string, 0, len(in))
		for _, x := range in {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

type embedRequest struct {
	Model      string         `json:"model"`
	Input      any            `json:"input"`
	KeepAlive  *duration      `json:"keep_alive"`
	Truncate   *bool          `json:"truncate"`
	Dimensions int            `json:"dimensions"`
	Options    map[string]any `json:"options"`
}

type embedResponse struct {
	Model           string        `json:"model"`
	Embeddings      [][]float32   `json:"embeddings"`
	TotalDuration   time.Duration `json:"total_duration,omitempty"`
	LoadDuration    time.Duration `json:"load_duration,omitempty"`
	PromptEvalCount int           `json:"prompt_eval_count,omitempty"`
}

// embed computes /api/embed's answer for inputs.
func (s *Server) embed(ctx context.Context, w http.ResponseWriter, req embedRequest, inputs []string,
	fail func(http.ResponseWriter, int, string)) (embedResponse, bool) {
	start := time.Now()
	if req.Model == "" {
		// Ollama 0.17.4 schedules the unparsed empty name and fails there.
		fail(w, http.StatusInternalServerError, "unqualified name: registry.ollama.ai/library/!MISSING!:latest")
		return embedResponse{}, false
	}
	st := s.findModel(w, req.Model, notFoundOrPull, fail)
	if st == nil {
		return embedResponse{}, false
	}
	if err := checkOptions(req.Options); err != nil {
		fail(w, http.StatusInternalServerError, err.Error())
		return embedResponse{}, false
	}
	load, ok := s.embedRun(ctx, w, st, keepOf(req.KeepAlive), runnerOptionsOf(req.Options), start, fail)
	if !ok {
		return embedResponse{}, false
	}
	resp := embedResponse{Model: req.Model, Embeddings: [][]float32{}}
	if len(inputs) == 0 {
		return resp, true
	}
	for _, in := range inputs {
		raw := embedding(st, in)
		if req.Dimensions > 0 && req.Dimensions < len(raw) {
			raw = raw[:req.Dimensions]
		}
		resp.Embeddings = append(resp.Embeddings, normalize(raw))
	}
	resp.PromptEvalCount = countTokens(inputs...)
	resp.LoadDuration = load
	resp.TotalDuration = since(start, time.Now())
	return resp, true
}

// handleEmbed serves POST /api/embed.
func (s *Server) handleEmbed(w http.ResponseWriter, r *http.Request, rec Request) {
	var req embedRequest
	if !decodeRequest(w, rec.Body, &req, "EmbedRequest") {
		return
	}
	inputs, ok := embedInputs(req.Input)
	if !ok {
		writeOllamaError(w, http.StatusBadRequest, "invalid input type")
		return
	}
	if resp, ok := s.embed(r.Context(), w, req, inputs, writeOllamaError); ok {
		writeJSON(w, http.StatusOK, resp)
	}
}

// handleEmbeddings serves the legacy POST /api/embeddings, whose vector is
// the model's raw output, not normalized.
func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request, rec Request) {
	start := time.Now()
	var req struct {
		Model     string         `json:"model"`
		Prompt    string         `json:"prompt"`
		KeepAlive *duration      `json:"keep_alive"`
		Options   map[string]any `json:"options"`
	}
	if !decodeRequest(w, rec.Body, &req, "EmbeddingRequest") {
		return
	}
	st := s.requireModel(w, req.Model, notFoundOrPull, writeOllamaError)
	if st == nil {
		return
	}
	if err := checkOptions(req.Options); err != nil {
		writeOllamaError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if _, ok := s.embedRun(r.Context(), w, st, keepOf(req.KeepAlive), runnerOptionsOf(req.Options), start, writeOllamaError); !ok {
		return
	}
	vec := []float64{}
	if req.Prompt != "" {
		vec = embedding(st, req.Prompt)
	}
	writeJSON(w, http.StatusOK, map[string][]float64{"embedding": vec})
}

// handleOpenAIEmbeddings serves POST /v1/embeddings: Ollama's
// EmbeddingsMiddleware in front of the embed handler.
func (s *Server) handleOpenAIEmbeddings(w http.ResponseWriter, r *http.Request, rec Request) {
	var req struct {
		Input          any    `json:"input"`
		Model          string `json:"model"`
		Dimensions     int    `json:"dimensions"`
		EncodingFormat string `json:"encoding_format"`
	}
	if !decodeOpenAIRequest(w, rec.Body, &req, "EmbedRequest") {
		return
	}
	if req.EncodingFormat != "" && !strings.EqualFold(req.EncodingFormat, "float") && !strings.EqualFold(req.EncodingFormat, "base64") {
		openaiBadRequest(w, fmt.Sprintf("Invalid value for 'encoding_format' = %s. Supported values: ['float', 'base64'].", req.EncodingFormat))
		return
	}
	if req.Input == "" {
		req.Input = []any{""}
	}
	if a, isArray := req.Input.([]any); req.Input == nil || isArray && len(a) == 0 {
		openaiBadRequest(w, "invalid input")
		return
	}
	inputs, ok := embedInputs(req.Input)
	if !ok {
		openaiError(w, http.StatusBadRequest, "invalid input type")
		return
	}
	if len(inputs) == 0 {
		inputs = []string{""} // a lone "" became [""] above; keep it
	}
	resp, ok := s.embed(r.Context(), w, embedRequest{Model: req.Model, Dimensions: req.Dimensions}, inputs, openaiError)
	if !ok {
		return
	}
	type item struct {
		Object    string `json:"object"`
		Embedding any    `json:"embedding"`
		Index     int    `json:"index"`
	}
	type usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	}
	list := struct {
		Object string `json:"object"`
		Data   []item `json:"data"`
		Model  string `json:"model"`
		Usage  usage  `json:"usage"`
	}{Object: "list", Model: req.Model, Usage: usage{resp.PromptEvalCount, resp.PromptEvalCount}}
	for i, e := range resp.Embeddings {
		var v any = e
		if strings.EqualFold(req.EncodingFormat, "base64") {
			var b bytes.Buffer
			_ = binary.Write(&b, binary.LittleEndian, e)
			v = base64.StdEncoding.EncodeToString(b.Bytes())
		}
		list.Data = append(list.Data, item{Object: "embedding", Embedding: v, Index: i})
	}
	encodeJSON(w, http.StatusOK, "application/json", list)
}
