package ollama

import "encoding/json"

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
