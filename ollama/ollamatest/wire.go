package ollamatest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// Content types as Ollama (gin) writes them.
const (
	jsonType   = "application/json; charset=utf-8"
	ndjsonType = "application/x-ndjson"
	sseType    = "text/event-stream"
)

// wire is an endpoint's answer format.
type wire interface {
	// fail writes an error answer; nothing has been written yet.
	fail(w http.ResponseWriter, status int, msg string)
	stream() bool
	contentType() string
	// token frames the stream element for one token.
	token(tk token) []byte
	// final frames what a stream sends after its last token.
	final(a *answer) []byte
	// midError frames what a started stream carries when generation fails.
	midError(msg string) []byte
	// answer writes the whole answer of a request that did not stream.
	answer(w http.ResponseWriter, a *answer)
}

// writeJSON writes v as gin's c.JSON does: compact, HTML-escaped, no
// newline, and a Content-Type unless one was set already.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the fake's own types always marshal
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", jsonType)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeText writes a plain-text answer, as gin does for 404 and 405.
func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

// decodeRequest decodes a native endpoint's body into v as decodeBody
// does, or answers 400 with its error and reports false.
func decodeRequest(w http.ResponseWriter, body []byte, v any, apiType string) bool {
	if err := decodeBody(body, v, apiType); err != nil {
		writeOllamaError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}

// decodeOpenAIRequest is decodeRequest for an OpenAI endpoint, answering as
// Ollama's OpenAI layer does.
func decodeOpenAIRequest(w http.ResponseWriter, body []byte, v any, apiType string) bool {
	if err := decodeOpenAIBody(body, v, apiType); err != nil {
		openaiBadRequest(w, err.Error())
		return false
	}
	return true
}

// writeOllamaError writes Ollama's {"error": msg}.
func writeOllamaError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func ndjsonLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

func sseEvent(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return append(append([]byte("data: "), b...), "\n\n"...)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// metrics are Ollama's api.Metrics.
type metrics struct {
	TotalDuration      time.Duration `json:"total_duration,omitempty"`
	LoadDuration       time.Duration `json:"load_duration,omitempty"`
	PromptEvalCount    int           `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration time.Duration `json:"prompt_eval_duration,omitempty"`
	EvalCount          int           `json:"eval_count,omitempty"`
	EvalDuration       time.Duration `json:"eval_duration,omitempty"`
}

func metricsOf(a *answer) metrics {
	if a.stats == (genStats{}) {
		return metrics{} // load and unload answers carry none
	}
	return metrics{
		TotalDuration:      a.stats.total,
		LoadDuration:       a.stats.load,
		PromptEvalCount:    a.promptCount,
		PromptEvalDuration: a.stats.promptEval,
		EvalCount:          a.stats.evalCount,
		EvalDuration:       a.stats.eval,
	}
}

// chatResponse is Ollama's api.ChatResponse, fields in its order.
type chatResponse struct {
	Model      string      `json:"model"`
	CreatedAt  time.Time   `json:"created_at"`
	Message    chatMessage `json:"message"`
	Done       bool        `json:"done"`
	DoneReason string      `json:"done_reason,omitempty"`
	metrics
}

type chatMessage struct {
	Role     string `json:"role"`
	Content  string `json:"content"`
	Thinking string `json:"thinking,omitempty"`
}

// generateResponse is Ollama's api.GenerateResponse, fields in its order.
type generateResponse struct {
	Model      string    `json:"model"`
	CreatedAt  time.Time `json:"created_at"`
	Response   string    `json:"response"`
	Thinking   string    `json:"thinking,omitempty"`
	Done       bool      `json:"done"`
	DoneReason string    `json:"done_reason,omitempty"`
	Context    []int     `json:"context,omitempty"`
	metrics
}

// ndjsonWire is what the native formats share: an NDJSON stream unless the
// request said "stream": false, and errors as {"error": "..."}.
type ndjsonWire struct {
	s         *Server
	model     string
	streaming bool
}

func (n ndjsonWire) fail(w http.ResponseWriter, status int, msg string) {
	writeOllamaError(w, status, msg)
}
func (n ndjsonWire) stream() bool        { return n.streaming }
func (n ndjsonWire) contentType() string { return ndjsonType }

// nativeChat is /api/chat's format.
type nativeChat struct{ ndjsonWire }

func (n nativeChat) token(tk token) []byte {
	r := chatResponse{Model: n.model, CreatedAt: n.s.cfg.now().UTC(), Message: chatMessage{Role: "assistant"}}
	if tk.thinking {
		r.Message.Thinking = tk.text
	} else {
		r.Message.Content = tk.text
	}
	return ndjsonLine(r)
}

func (n nativeChat) response(a *answer) chatResponse {
	return chatResponse{
		Model:      a.model,
		CreatedAt:  a.created,
		Message:    chatMessage{Role: "assistant", Content: a.content, Thinking: a.thinking},
		Done:       true,
		DoneReason: a.reason,
		metrics:    metricsOf(a),
	}
}

func (n nativeChat) final(a *answer) []byte {
	r := n.response(a)
	r.Message.Content, r.Message.Thinking = "", "" // the text went out token by token
	return ndjsonLine(r)
}

func (n nativeChat) midError(msg string) []byte { return ndjsonLine(map[string]string{"error": msg}) }

func (n nativeChat) answer(w http.ResponseWriter, a *answer) {
	writeJSON(w, http.StatusOK, n.response(a))
}

// nativeGenerate is /api/generate's format.
type nativeGenerate struct {
	ndjsonWire
	raw bool
}

func (n nativeGenerate) token(tk token) []byte {
	r := generateResponse{Model: n.model, CreatedAt: n.s.cfg.now().UTC()}
	if tk.thinking {
		r.Thinking = tk.text
	} else {
		r.Response = tk.text
	}
	return ndjsonLine(r)
}

func (n nativeGenerate) response(a *answer) generateResponse {
	r := generateResponse{
		Model:      a.model,
		CreatedAt:  a.created,
		Response:   a.content,
		Thinking:   a.thinking,
		Done:       true,
		DoneReason: a.reason,
		metrics:    metricsOf(a),
	}
	if !n.raw {
		r.Context = a.context
	}
	return r
}

func (n nativeGenerate) final(a *answer) []byte {
	r := n.response(a)
	r.Response, r.Thinking = "", ""
	return ndjsonLine(r)
}

func (n nativeGenerate) midError(msg string) []byte {
	return ndjsonLine(map[string]string{"error": msg})
}

func (n nativeGenerate) answer(w http.ResponseWriter, a *answer) {
	writeJSON(w, http.StatusOK, n.response(a))
}

// encodeJSON writes v as json.Encoder does (Ollama's /v1 layer): with a
// trailing newline.
func encodeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
