package ollamatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// openaiErrorBody is openai.ErrorResponse.
type openaiErrorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   any     `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func openaiErrorOf(typ, msg string) openaiErrorBody {
	var b openaiErrorBody
	b.Error.Message, b.Error.Type = msg, typ
	return b
}

// openaiError writes a failure of the handler behind Ollama's OpenAI layer
// as that layer's writeError does: the handler's status, but type
// "api_error" whatever the status, encoded with a trailing newline.
func openaiError(w http.ResponseWriter, status int, msg string) {
	encodeJSON(w, status, "application/json", openaiErrorOf("api_error", msg))
}

// openaiBadRequest writes a request the OpenAI layer refuses itself, before
// any handler: 400, type "invalid_request_error", written by gin.
func openaiBadRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, openaiErrorOf("invalid_request_error", msg))
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
	Model            string               `json:"model"`
	Messages         []openaiMessage      `json:"messages"`
	Stream           bool                 `json:"stream"`
	StreamOptions    *openaiStreamOptions `json:"stream_options"`
	MaxTokens        *int                 `json:"max_tokens"`
	Seed             *int                 `json:"seed"`
	Temperature      *float64             `json:"temperature"`
	FrequencyPenalty *float64             `json:"frequency_penalty"`
	PresencePenalty  *float64             `json:"presence_penalty"`
	TopP             *float64             `json:"top_p"`
	Logprobs         *bool                `json:"logprobs"`
	TopLogprobs      int                  `json:"top_logprobs"`
	Tools            json.RawMessage      `json:"tools"`
	ReasoningEffort  *string              `json:"reasoning_effort"`
	Reasoning        *struct {
		Effort string `json:"effort"`
	} `json:"reasoning"`
}

type openaiCompletionRequest struct {
	Model            string               `json:"model"`
	Prompt           string               `json:"prompt"`
	FrequencyPenalty float32              `json:"frequency_penalty"`
	PresencePenalty  float32              `json:"presence_penalty"`
	Seed             *int                 `json:"seed"`
	Temperature      *float32             `json:"temperature"`
	TopP             float32              `json:"top_p"`
	Logprobs         *int                 `json:"logprobs"`
	MaxTokens        *int                 `json:"max_tokens"`
	Stream           bool                 `json:"stream"`
	StreamOptions    *openaiStreamOptions `json:"stream_options"`
	Suffix           string               `json:"suffix"`
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
	if !decodeOpenAIRequest(w, rec.Body, &req, "ChatCompletionRequest") {
		return
	}
	if len(req.Messages) == 0 {
		openaiBadRequest(w, "[] is too short - 'messages'")
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
					openaiBadRequest(w, "invalid message format")
					return
				}
				if text, ok := p["text"].(string); ok && p["type"] == "text" {
					texts = append(texts, text)
				}
			}
		default:
			if len(m.ToolCalls) == 0 {
				openaiBadRequest(w, fmt.Sprintf("invalid message content type: %T", c))
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
			openaiBadRequest(w, fmt.Sprintf(`invalid reasoning value: '%s' (must be "high", "medium", "low", or "none")`, effort))
			return
		}
		think = &thinkValue{value: effort != "none"}
	}
	st := s.requireModel(w, req.Model, notFound, openaiError)
	if st == nil {
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
		st: st, rec: rec, model: req.Model, keep: keepUnset, opts: runnerOptionsOf(nil), think: on, start: start,
		prompt: prompt, prompts: texts,
	}
	if req.MaxTokens != nil {
		j.predict = *req.MaxTokens
	}
	out := openaiChat{s.newSSEWire("chatcmpl", req.Model, req.Stream, req.StreamOptions)}
	s.serveGeneration(r.Context(), w, j, out)
}

// handleOpenAICompletion serves POST /v1/completions: Ollama's
// CompletionsMiddleware in front of the generate handler.
func (s *Server) handleOpenAICompletion(w http.ResponseWriter, r *http.Request, rec Request) {
	start := time.Now()
	var req openaiCompletionRequest
	if !decodeOpenAIRequest(w, rec.Body, &req, "CompletionRequest") {
		return
	}
	st := s.findModel(w, req.Model, notFound, openaiError)
	if st == nil {
		return
	}
	if st.Embedding {
		openaiError(w, http.StatusBadRequest, fmt.Sprintf("%q does not support generate", req.Model))
		return
	}
	j := &genJob{
		st: st, rec: rec, model: req.Model, keep: keepUnset, opts: runnerOptionsOf(nil), think: st.Thinking, start: start,
		prompt: req.Prompt, prompts: []string{req.Prompt}, loadOnly: req.Prompt == "",
	}
	if req.MaxTokens != nil {
		j.predict = *req.MaxTokens
	}
	out := openaiCompletion{s.newSSEWire("cmpl", req.Model, req.Stream, req.StreamOptions)}
	s.serveGeneration(r.Context(), w, j, out)
}
