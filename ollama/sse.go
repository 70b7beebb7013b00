package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// sseChunk is what the aggregator needs from one OpenAI streaming chunk.
type sseChunk struct {
	Error             json.RawMessage `json:"error"`
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint"`
	Choices           []struct {
		Index        int     `json:"index"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Delta        *struct {
			Role             string  `json:"role"`
			Content          *string `json:"content"`
			Reasoning        string  `json:"reasoning"`
			ReasoningContent string  `json:"reasoning_content"`
			ToolCalls        []struct {
				Index    *int   `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

// The non-streaming OpenAI objects, in the field order Ollama writes them.
type (
	chatCompletion struct {
		ID                string          `json:"id"`
		Object            string          `json:"object"`
		Created           int64           `json:"created"`
		Model             string          `json:"model"`
		SystemFingerprint string          `json:"system_fingerprint,omitempty"`
		Choices           []chatChoice    `json:"choices"`
		Usage             json.RawMessage `json:"usage,omitempty"`
	}
	chatChoice struct {
		Index        int         `json:"index"`
		Message      chatMessage `json:"message"`
		FinishReason *string     `json:"finish_reason"`
	}
	chatMessage struct {
		Role             string      `json:"role"`
		Content          string      `json:"content"`
		Reasoning        string      `json:"reasoning,omitempty"`
		ReasoningContent string      `json:"reasoning_content,omitempty"`
		ToolCalls        []*toolCall `json:"tool_calls,omitempty"`
	}
	toolCall struct {
		ID       string `json:"id"`
		Index    int    `json:"index"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	textCompletion struct {
		ID                string          `json:"id"`
		Object            string          `json:"object"`
		Created           int64           `json:"created"`
		Model             string          `json:"model"`
		SystemFingerprint string          `json:"system_fingerprint,omitempty"`
		Choices           []textChoice    `json:"choices"`
		Usage             json.RawMessage `json:"usage,omitempty"`
	}
	textChoice struct {
		Text         string  `json:"text"`
		Index        int     `json:"index"`
		FinishReason *string `json:"finish_reason"`
	}
)

// choiceAggregate collects one choice across chunks.
type choiceAggregate struct {
	role                          string
	content, reasoning, reasonAlt strings.Builder
	toolCalls                     []*toolCall
	finish                        *string
}

// sseAggregate folds OpenAI streaming chunks into the non-streaming object:
// content, text and reasoning joined per choice, tool-call deltas merged by
// index, the last finish_reason, and usage from the last chunk carrying it.
type sseAggregate struct {
	id, object, model, fingerprint string
	created                        int64
	choices                        map[int]*choiceAggregate
	usage                          json.RawMessage
}

func (a *sseAggregate) add(data []byte) error {
	var c sseChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("invalid JSON in event stream: %w", err)
	}
	if len(c.Error) > 0 && !bytes.Equal(c.Error, []byte("null")) {
		msg := messageOf(c.Error)
		if msg == "" {
			msg = string(c.Error)
		}
		return &JobFailedError{Status: 200, Message: msg}
	}
	if a.id == "" {
		a.id, a.created = c.ID, c.Created
	}
	a.model = cmpOr(c.Model, a.model)
	a.fingerprint = cmpOr(c.SystemFingerprint, a.fingerprint)
	a.object = cmpOr(c.Object, a.object)
	if len(c.Usage) > 0 && !bytes.Equal(c.Usage, []byte("null")) {
		a.usage = c.Usage
	}
	if a.choices == nil {
		a.choices = map[int]*choiceAggregate{}
	}
	for _, ch := range c.Choices {
		agg := a.choices[ch.Index]
		if agg == nil {
			agg = &choiceAggregate{}
			a.choices[ch.Index] = agg
		}
		if ch.FinishReason != nil {
			agg.finish = ch.FinishReason
		}
		if ch.Text != nil {
			a.object = cmpOr(a.object, "text_completion")
			agg.content.WriteString(*ch.Text)
		}
		if d := ch.Delta; d != nil {
			a.object = cmpOr(a.object, "chat.completion.chunk")
			agg.role = cmpOr(d.Role, agg.role)
			if d.Content != nil {
				agg.content.WriteString(*d.Content)
			}
			agg.reasoning.WriteString(d.Reasoning)
			agg.reasonAlt.WriteString(d.ReasoningContent)
			for _, tc := range d.ToolCalls {
				agg.mergeToolCall(tc.Index, tc.ID, tc.Type, tc.Function.Name, tc.Function.Arguments)
			}
		}
	}
	return nil
}

// mergeToolCall appends a streamed tool-call delta: a delta continues the
// call with the same index unless it names a different id.
func (c *choiceAggregate) mergeToolCall(index *int, id, typ, name, args string) {
	i := len(c.toolCalls)
	if index != nil {
		i = *index
	}
	for k := len(c.toolCalls) - 1; k >= 0; k-- {
		tc := c.toolCalls[k]
		if tc.Index == i && (id == "" || id == tc.ID) {
			tc.Type = cmpOr(tc.Type, typ)
			tc.Function.Name += name
			tc.Function.Arguments += args
			return
		}
	}
	tc := &toolCall{ID: id, Index: i, Type: typ}
	tc.Function.Name, tc.Function.Arguments = name, args
	c.toolCalls = append(c.toolCalls, tc)
}

func (a *sseAggregate) result() (json.RawMessage, error) {
	indexes := make([]int, 0, len(a.choices))
	for i := range a.choices {
		indexes = append(indexes, i)
	}
	slices.Sort(indexes)
	if a.object == "text_completion" {
		out := textCompletion{ID: a.id, Object: "text_completion", Created: a.created, Model: a.model,
			SystemFingerprint: a.fingerprint, Choices: []textChoice{}, Usage: a.usage}
		for _, i := range indexes {
			c := a.choices[i]
			out.Choices = append(out.Choices, textChoice{Text: c.content.String(), Index: i, FinishReason: c.finish})
		}
		return json.Marshal(out)
	}
	out := chatCompletion{ID: a.id, Object: "chat.completion", Created: a.created, Model: a.model,
		SystemFingerprint: a.fingerprint, Choices: []chatChoice{}, Usage: a.usage}
	for _, i := range indexes {
		c := a.choices[i]
		out.Choices = append(out.Choices, chatChoice{Index: i, FinishReason: c.finish, Message: chatMessage{
			Role:             cmpOr(c.role, "assistant"),
			Content:          c.content.String(),
			Reasoning:        c.reasoning.String(),
			ReasoningContent: c.reasonAlt.String(),
			ToolCalls:        c.toolCalls,
		}})
	}
	return json.Marshal(out)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// readSSE reads an OpenAI event stream from r, passing each data payload to
// onChunk. I/O errors come back wrapped in *readError for the caller.
func readSSE(r io.Reader, onChunk func([]byte) error) (json.RawMessage, error) {
	br := bufio.NewReader(r)
	var (
		agg     sseAggregate
		data    []byte
		hasData bool
	)
	dispatch := func() (done bool, err error) {
		payload := data
		data, hasData = nil, false
		if string(bytes.TrimSpace(payload)) == "[DONE]" {
			return true, nil
		}
		if onChunk != nil {
			if err := onChunk(payload); err != nil {
				return false, &chunkError{err}
			}
		}
		return false, agg.add(payload)
	}
	for {
		line, err := br.ReadBytes('\n')
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0 && hasData && err == nil:
			done, derr := dispatch()
			if derr != nil {
				return nil, derr
			}
			if done {
				return agg.result()
			}
		case len(line) == 0 || line[0] == ':':
			// blank line without data, or a comment
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			if string(field) == "data" {
				if hasData {
					data = append(data, '\n')
				}
				data, hasData = append(data, value...), true
			}
		}
		if errors.Is(err, io.EOF) {
			if hasData { // a last event without its blank line
				done, derr := dispatch()
				if derr != nil {
					return nil, derr
				}
				if done {
					return agg.result()
				}
			}
			return nil, &readError{io.ErrUnexpectedEOF, "event stream ended before [DONE]"}
		}
		if err != nil {
			return nil, &readError{err, "connection lost mid-stream"}
		}
	}
}
