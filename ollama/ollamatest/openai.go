package ollamatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// openaiError writes an error in the shape of Ollama's OpenAI layer
// (openai.NewError): {"error": {"message", "type", "param", "code"}}.
func openaiError(w http.ResponseWriter, status int, msg string) {
	typ := "api_error"
	switch status {
	case http.StatusBadRequest:
		typ = "invalid_request_error"
	case http.StatusNotFound:
		typ = "not_found_error"
	}
	type errorBody struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   any     `json:"param"`
		Code    *string `json:"code"`
	}
	encodeJSON(w, status, "application/json", struct {
		Error errorBody `json:"error"`
	}{errorBody{Message: msg, Type: typ}})
}

type openaiUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(a *answer) openaiUsage {
	m := metricsOf(a)
	return openaiUsage{m.PromptEvalCount, m.EvalCount, m.PromptEvalCount + m.EvalCount}
}

func finishReason(reason string) *string {
	if reason == "" {
		return nil
	}
	return &reason
}

type openaiStreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type openaiMessage struct {
	Role      string          `json:"role"`
	Content   any             `json:"content"`
	Reasoning string          `json:"reasoning,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
	Name      string          `json:"name,omitempty"`
}

type openaiChatRequest struct {
	Model           string               `json:"model"`
	Messages        []openaiMessage      `json:"messages"`
	Stream          bool                 `json:"stream"`
	StreamOptions   *openaiStreamOptions `json:"stream_options"`
	MaxTokens       *int                 `json:"max_tokens"`
	Tools           json.RawMessage      `json:"tools"`
	ReasoningEffort *string              `json:"reasoning_effort"`
	Reasoning       *struct {
		Effort string `json:"effort"`
	} `json:"reasoning"`
}

type openaiCompletionRequest struct {
	Model         string               `json:"model"`
	Prompt        string               `json:"prompt"`
	MaxTokens     *int                 `json:"max_tokens"`
	Stream        bool                 `json:"stream"`
	StreamOptions *openaiStreamOptions `json:"stream_options"`
	Suffix        string               `json:"suffix"`
}

// nextID returns Ollama-style ids such as "chatcmpl-7"; Ollama draws them at
// random below 999, the fake counts.
func (s *Server) nextID(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return fmt.Sprintf("%s-%d", prefix, s.seq%999)
}

// handleOpenAIChat serves POST /v1/chat/completions: Ollama's ChatMiddleware
// in front of the chat handler.
func (s *Server) handleOpenAIChat(w http.ResponseWriter, r *http.Request, rec Request) {
	start := time.Now()
	var req openaiChatRequest
	if err := decodeBody(rec.Body, &req); err != nil {
		openaiError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Messages) == 0 {
		openaiError(w, http.StatusBadRequest, "[] is too short - 'messages'")
		return
	}
	var texts []string
	for _, m := range req.Messages {
		switch c := m.Content.(type) {
		case string:
			texts = append(texts, c)
		case []any:
			for _, part := range c {
				p, ok := part.(map[string]any)
				if !ok {
					openaiError(w, http.StatusBadRequest, "invalid message format")
					return
				}
				if text, ok := p["text"].(string); ok && p["type"] == "text" {
					texts = append(texts, text)
				}
			}
		default:
			if len(m.ToolCalls) == 0 {
				openaiError(w, http.StatusBadRequest, fmt.Sprintf("invalid message content type: %T", c))
				return
			}
		}
	}
	var effort string
	switch {
	case req.Reasoning != nil:
		effort = req.Reasoning.Effort
	case req.ReasoningEffort != nil:
		effort = *req.ReasoningEffort
	}
	var think *thinkValue
	if effort != "" {
		if !slices.Contains([]string{"high", "medium", "low", "none"}, effort) {
			openaiError(w, http.StatusBadRequest, fmt.Sprintf(`invalid reasoning value: '%s' (must be "high", "medium", "low", or "none")`, effort))
			return
		}
		think = &thinkValue{value: effort != "none"}
	}
	if req.Model == "" {
		openaiError(w, http.StatusBadRequest, "model is required")
		return
	}
	st := s.lookup(req.Model)
	if st == nil {
		openaiError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", req.Model))
		return
	}
	on, ok := s.checkThink(w, st, req.Model, think, openaiError)
	if !ok {
		return
	}
	if st.Embedding {
		openaiError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support chat", req.Model))
		return
	}
	prompt := ""
	for i := len(req.Messages) - 1; i >= 0 && prompt == ""; i-- {
		if strings.EqualFold(req.Messages[i].Role, "user") {
			if c, ok := req.Messages[i].Content.(string); ok {
				prompt = c
			} else if len(texts) > 0 {
				prompt = texts[len(texts)-1]
			}
		}
	}
	j := &genJob{
		st: st, rec: rec, model: req.Model, keep: defaultKeepAlive, think: on, start: start,
		prompt: prompt, prompts: texts,
	}
	if req.MaxTokens != nil {
		j.predict = *req.MaxTokens
	}
	out := openaiChat{s: s, id: s.nextID("chatcmpl"), created: s.cfg.now().Unix(), model: req.Model,
		streaming: req.Stream, usage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage}
	s.serveGeneration(r.Context(), w, j, out)
}

// handleOpenAICompletion serves POST /v1/completions: Ollama's
// CompletionsMiddleware in front of the generate handler.
func (s *Server) handleOpenAICompletion(w http.ResponseWriter, r *http.Request, rec Request) {
	start := time.Now()
	var req openaiCompletionRequest
	if err := decodeBody(rec.Body, &req); err != nil {
		openaiError(w, http.StatusBadRequest, err.Error())
		return
	}
	st := s.lookup(req.Model)
	if st == nil {
		openaiError(w, http.StatusNotFound, fmt.Sprintf("model '%s' not found", req.Model))
		return
	}
	if st.Embedding {
		openaiError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support generate", req.Model))
		return
	}
	j := &genJob{
		st: st, rec: rec, model: req.Model, keep: defaultKeepAlive, think: st.Thinking, start: start,
		prompt: req.Prompt, prompts: []string{req.Prompt}, loadOnly: req.Prompt == "",
	}
	if req.MaxTokens != nil {
		j.predict = *req.MaxTokens
	}
	out := openaiCompletion{s: s, id: s.nextID("cmpl"), created: s.cfg.now().Unix(), model: req.Model,
		streaming: req.Stream, usage: req.StreamOptions != nil && req.StreamOptions.IncludeUsage}
	s.serveGeneration(r.Context(), w, j, out)
}

type openaiDelta struct {
	Role      string `json:"role"`
	Content   string `json:"content"`
	Reasoning string `json:"reasoning,omitempty"`
}

type openaiChunkChoice struct {
	Index        int         `json:"index"`
	Delta        openaiDelta `json:"delta"`
	FinishReason *string     `json:"finish_reason"`
}

type openaiChatChunk struct {
	ID                string              `json:"id"`
	Object            string              `json:"object"`
	Created           int64               `json:"created"`
	Model             string              `json:"model"`
	SystemFingerprint string              `json:"system_fingerprint"`
	Choices           []openaiChunkChoice `json:"choices"`
	Usage             *openaiUsage        `json:"usage,omitempty"`
}

type openaiChoice struct {
	Index        int         `json:"index"`
	Message      openaiDelta `json:"message"`
	FinishReason *string     `json:"finish_reason"`
}

type openaiChatCompletion struct {
	ID                string         `json:"id"`
	Object            string         `json:"object"`
	Created           int64          `json:"created"`
	Model             string         `json:"model"`
	SystemFingerprint string         `json:"system_fingerprint"`
	Choices           []openaiChoice `json:"choices"`
	Usage             openaiUsage    `json:"usage"`
}

// openaiChat is /v1/chat/completions' format.
type openaiChat struct {
	s         *Server
	id, model string
	created   int64
	streaming bool
	usage     bool
}

func (o openaiChat) fail(w http.ResponseWriter, status int, msg string) { openaiError(w, status, msg) }
func (o openaiChat) stream() bool                                       { return o.streaming }
func (o openaiChat) contentType() string                                { return sseType }

func (o openaiChat) chunk(model string, d openaiDelta, reason *string) openaiChatChunk {
	return openaiChatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.created, Model: model,
		SystemFingerprint: "fp_ollama", Choices: []openaiChunkChoice{{Delta: d, FinishReason: reason}}}
}

func (o openaiChat) token(tk token) []byte {
	d := openaiDelta{Role: "assistant", Content: tk.text}
	if tk.thinking {
		d = openaiDelta{Role: "assistant", Reasoning: tk.text}
	}
	return sseEvent(o.chunk(o.model, d, nil))
}

func (o openaiChat) final(a *answer) []byte {
	c := o.chunk(a.model, openaiDelta{Role: "assistant"}, finishReason(a.reason))
	b := sseEvent(c)
	if o.usage {
		u := usageOf(a)
		c.Usage, c.Choices = &u, []openaiChunkChoice{}
		b = append(b, sseEvent(c)...)
	}
	return append(b, "data: [DONE]\n\n"...)
}

// midError is what Ollama's ChatWriter makes of an {"error": ...} line: a
// chunk decoded from it as if it were a chat response, so an empty one.
func (o openaiChat) midError(string) []byte {
	return sseEvent(o.chunk("", openaiDelta{Role: "assistant"}, nil))
}

func (o openaiChat) answer(w http.ResponseWriter, a *answer) {
	encodeJSON(w, http.StatusOK, "application/json", openaiChatCompletion{
		ID: o.id, Object: "chat.completion", Created: a.created.Unix(), Model: a.model, SystemFingerprint: "fp_ollama",
		Choices: []openaiChoice{{Message: openaiDelta{Role: "assistant", Content: a.content, Reasoning: a.thinking},
			FinishReason: finishReason(a.reason)}},
		Usage: usageOf(a),
	})
}

type openaiTextChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	FinishReason *string `json:"finish_reason"`
}

// openaiTextChunk is Ollama's CompletionChunk; note choices before model.
type openaiTextChunk struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Choices           []openaiTextChoice `json:"choices"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Usage             *openaiUsage       `json:"usage,omitempty"`
}

type openaiTextCompletion struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []openaiTextChoice `json:"choices"`
	Usage             openaiUsage        `json:"usage"`
}

// openaiCompletion is /v1/completions' format. With include_usage Ollama
// puts a zero usage on every chunk and the real one on a last, choiceless
// chunk.
type openaiCompletion struct {
	s         *Server
	id, model string
	created   int64
	streaming bool
	usage     bool
}

func (o openaiCompletion) fail(w http.ResponseWriter, status int, msg string) {
	openaiError(w, status, msg)
}
func (o openaiCompletion) stream() bool        { return o.streaming }
func (o openaiCompletion) contentType() string { return sseType }

func (o openaiCompletion) chunk(model, text string, reason *string) openaiTextChunk {
	c := openaiTextChunk{ID: o.id, Object: "text_completion", Created: o.created, Model: model,
		SystemFingerprint: "fp_ollama", Choices: []openaiTextChoice{{Text: text, FinishReason: reason}}}
	if o.usage {
		c.Usage = &openaiUsage{}
	}
	return c
}

func (o openaiCompletion) token(tk token) []byte {
	if tk.thinking {
		return sseEvent(o.chunk(o.model, "", nil)) // the completions API has no place for thinking
	}
	return sseEvent(o.chunk(o.model, tk.text, nil))
}

func (o openaiCompletion) final(a *answer) []byte {
	c := o.chunk(a.model, "", finishReason(a.reason))
	b := sseEvent(c)
	if o.usage {
		u := usageOf(a)
		c.Usage, c.Choices = &u, []openaiTextChoice{}
		b = append(b, sseEvent(c)...)
	}
	return append(b, "data: [DONE]\n\n"...)
}

func (o openaiCompletion) midError(string) []byte { return sseEvent(o.chunk("", "", nil)) }

func (o openaiCompletion) answer(w http.ResponseWriter, a *answer) {
	encodeJSON(w, http.StatusOK, "application/json", openaiTextCompletion{
		ID: o.id, Object: "text_completion", Created: a.created.Unix(), Model: a.model, SystemFingerprint: "fp_ollama",
		Choices: []openaiTextChoice{{Text: a.content, FinishReason: finishReason(a.reason)}},
		Usage:   usageOf(a),
	})
}
