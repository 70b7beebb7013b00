package ollama

import (
	"bytes"
	"encoding/json"
)

// AnswerText returns the text of a final answer, whichever endpoint gave
// it: a chat message's content (/api/chat), a generation's response
// (/api/generate), or the first choice's message or text (/v1/chat/completions,
// /v1/completions). It returns "" for answers without text, such as
// embeddings.
func AnswerText(response json.RawMessage) string {
	t, _ := answerText(response)
	return t
}

func answerText(response json.RawMessage) (string, bool) {
	var a struct {
		Message *struct {
			Content string `json:"content"`
		} `json:"message"`
		Response *string `json:"response"`
		Choices  []struct {
			Message *struct {
				Content string `json:"content"`
			} `json:"message"`
			Text *string `json:"text"`
		} `json:"choices"`
	}
	if json.Unmarshal(response, &a) != nil {
		return "", false
	}
	switch {
	case a.Message != nil:
		return a.Message.Content, true
	case a.Response != nil:
		return *a.Response, true
	case len(a.Choices) > 0 && a.Choices[0].Message != nil:
		return a.Choices[0].Message.Content, true
	case len(a.Choices) > 0 && a.Choices[0].Text != nil:
		return *a.Choices[0].Text, true
	}
	return "", false
}

// HasText reports whether a final answer carries text (chat, generate,
// completions) rather than, say, embeddings.
func HasText(response json.RawMessage) bool {
	_, ok := answerText(response)
	return ok
}

// ChunkText returns the text one streamed chunk adds to the answer, as
// `hopper tail` and the dashboard show it: a chat message's content, a
// generation's response, an OpenAI chunk's delta or text. A line may carry
// an event stream's "data:" prefix. It returns "" for a chunk without text
// (the final one's statistics) and for a line that is not JSON.
func ChunkText(line []byte) string {
	line = bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimSpace(line), []byte("data:")))
	var c struct {
		Message *struct {
			Content string `json:"content"`
		} `json:"message"` // /api/chat
		Response string `json:"response"` // /api/generate
		Choices  []struct {
			Delta *struct {
				Content string `json:"content"`
			} `json:"delta"` // /v1/chat/completions
			Text string `json:"text"` // /v1/completions
		} `json:"choices"`
	}
	if json.Unmarshal(line, &c) != nil {
		return ""
	}
	switch {
	case c.Message != nil:
		return c.Message.Content
	case len(c.Choices) > 0 && c.Choices[0].Delta != nil:
		return c.Choices[0].Delta.Content
	case len(c.Choices) > 0:
		return c.Choices[0].Text
	}
	return c.Response
}
