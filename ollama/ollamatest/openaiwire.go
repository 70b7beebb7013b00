package ollamatest

import "net/http"

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

type openaiChoice struct {
	Index        int         `json:"index"`
	Message      openaiDelta `json:"message"`
	FinishReason *string     `json:"finish_reason"`
}

// openaiObject is a chat completion, one of its stream chunks, or a text
// completion, C being its kind of choice. A chunk has a usage only when
// the request asked for it; an answer always has one.
type openaiObject[C any] struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []C          `json:"choices"`
	Usage             *openaiUsage `json:"usage,omitempty"`
}

// usageChunk is the chunk after the final one of a stream that asked for
// usage: c with usage u and no choices.
func (c openaiObject[C]) usageChunk(u *openaiUsage) any {
	c.Usage, c.Choices = u, []C{}
	return c
}

type (
	openaiChatChunk      = openaiObject[openaiChunkChoice]
	openaiChatCompletion = openaiObject[openaiChoice]
	openaiTextCompletion = openaiObject[openaiTextChoice]
)

// sseWire is what the OpenAI formats share: an event stream when the
// request asked for one, with usage when stream_options asked for it, and
// errors in OpenAI's shape.
type sseWire struct {
	s         *Server
	id, model string
	streaming bool
	usage     bool
}

// newSSEWire is the format of a request for model, its ID made from prefix.
func (s *Server) newSSEWire(prefix, model string, stream bool, so *openaiStreamOptions) sseWire {
	return sseWire{s: s, id: s.nextID(prefix), model: model, streaming: stream, usage: so != nil && so.IncludeUsage}
}

func (o sseWire) fail(w http.ResponseWriter, status int, msg string) { openaiError(w, status, msg) }
func (o sseWire) stream() bool                                       { return o.streaming }
func (o sseWire) contentType() string                                { return sseType }

// end is the end of a stream: the final chunk c, then, when the request
// asked for usage, the chunk with a's, then [DONE].
func (o sseWire) end(c interface{ usageChunk(*openaiUsage) any }, a *answer) []byte {
	b := sseEvent(c)
	if o.usage {
		u := usageOf(a)
		b = append(b, sseEvent(c.usageChunk(&u))...)
	}
	return append(b, "data: [DONE]\n\n"...)
}

// openaiChat is /v1/chat/completions' format. Stream chunks carry the time
// they were made, the whole answer the time of the final response.
type openaiChat struct{ sseWire }

func (o openaiChat) chunk(model string, d openaiDelta, reason *string) openaiChatChunk {
	return openaiChatChunk{ID: o.id, Object: "chat.completion.chunk", Created: o.s.cfg.now().Unix(), Model: model,
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
	return o.end(o.chunk(a.model, openaiDelta{Role: "assistant"}, finishReason(a.reason)), a)
}

// midError is what Ollama's ChatWriter makes of an {"error": ...} line: a
// chunk decoded from it as if it were a chat response, so an empty one.
func (o openaiChat) midError(string) []byte {
	return sseEvent(o.chunk("", openaiDelta{Role: "assistant"}, nil))
}

func (o openaiChat) answer(w http.ResponseWriter, a *answer) {
	u := usageOf(a)
	encodeJSON(w, http.StatusOK, "application/json", openaiChatCompletion{
		ID: o.id, Object: "chat.completion", Created: a.created.Unix(), Model: a.model, SystemFingerprint: "fp_ollama",
		Choices: []openaiChoice{{Message: openaiDelta{Role: "assistant", Content: a.content, Reasoning: a.thinking},
			FinishReason: finishReason(a.reason)}},
		Usage: &u,
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

func (c openaiTextChunk) usageChunk(u *openaiUsage) any {
	c.Usage, c.Choices = u, []openaiTextChoice{}
	return c
}

// openaiCompletion is /v1/completions' format. With include_usage Ollama
// puts a zero usage on every chunk and the real one on a last, choiceless
// chunk.
type openaiCompletion struct{ sseWire }

func (o openaiCompletion) chunk(model, text string, reason *string) openaiTextChunk {
	c := openaiTextChunk{ID: o.id, Object: "text_completion", Created: o.s.cfg.now().Unix(), Model: model,
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
	return o.end(o.chunk(a.model, "", finishReason(a.reason)), a)
}

func (o openaiCompletion) midError(string) []byte { return sseEvent(o.chunk("", "", nil)) }

func (o openaiCompletion) answer(w http.ResponseWriter, a *answer) {
	u := usageOf(a)
	encodeJSON(w, http.StatusOK, "application/json", openaiTextCompletion{
		ID: o.id, Object: "text_completion", Created: a.created.Unix(), Model: a.model, SystemFingerprint: "fp_ollama",
		Choices: []openaiTextChoice{{Text: a.content, FinishReason: finishReason(a.reason)}},
		Usage:   &u,
	})
}
