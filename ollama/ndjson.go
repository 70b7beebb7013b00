package ollama

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// streamChunk is what the aggregator needs from one line of an Ollama stream.
type streamChunk struct {
	Error   json.RawMessage `json:"error"`
	Message *struct {
		Content   string            `json:"content"`
		Thinking  string            `json:"thinking"`
		ToolCalls []json.RawMessage `json:"tool_calls"`
	} `json:"message"`
	Response *string           `json:"response"`
	Thinking string            `json:"thinking"`
	Logprobs []json.RawMessage `json:"logprobs"`
	Done     bool              `json:"done"`
}

// ndjsonAggregate folds the lines of an Ollama stream into the object Ollama
// returns with "stream": false, as server/routes.go does: for chat,
// message.content and message.thinking are joined and message.tool_calls
// collected; for generate, response and thinking are joined; logprobs are
// collected for both; everything else comes from the final (done) chunk.
type ndjsonAggregate struct {
	chat, generate     bool
	content, thinking  strings.Builder
	toolCalls, logprob []json.RawMessage
	final              []byte
}

// add takes one line and reports whether it was the final chunk.
func (a *ndjsonAggregate) add(line []byte) (done bool, err error) {
	var c streamChunk
	if err := json.Unmarshal(line, &c); err != nil {
		return false, fmt.Errorf("invalid JSON in stream: %w", err)
	}
	if len(c.Error) > 0 && !bytes.Equal(c.Error, []byte("null")) {
		msg := messageOf(c.Error)
		if msg == "" {
			msg = string(c.Error)
		}
		return false, &JobFailedError{Status: 200, Message: msg}
	}
	switch {
	case c.Message != nil:
		a.chat = true
		a.content.WriteString(c.Message.Content)
		a.thinking.WriteString(c.Message.Thinking)
		a.toolCalls = append(a.toolCalls, c.Message.ToolCalls...)
	case c.Response != nil:
		a.generate = true
		a.content.WriteString(*c.Response)
		a.thinking.WriteString(c.Thinking)
	}
	a.logprob = append(a.logprob, c.Logprobs...)
	if c.Done {
		a.final = line
	}
	return c.Done, nil
}

// result builds the stream:false object from the final chunk.
func (a *ndjsonAggregate) result() (json.RawMessage, error) {
	o, err := parseObject(a.final)
	if err != nil {
		return nil, fmt.Errorf("final chunk: %w", err)
	}
	switch {
	case a.chat:
		raw, _ := o.get("message")
		msg, err := parseObject(raw)
		if err != nil {
			return nil, fmt.Errorf("final chunk message: %w", err)
		}
		msg.put("content", jsonString(a.content.String()), "role")
		if a.thinking.Len() > 0 {
			msg.put("thinking", jsonString(a.thinking.String()), "content")
		} else {
			msg.del("thinking")
		}
		if len(a.toolCalls) > 0 {
			msg.put("tool_calls", jsonArray(a.toolCalls), "content", "thinking", "images")
		}
		o.put("message", msg.marshal())
		a.putLogprobs(&o, "done", "done_reason", "_debug_info")
	case a.generate:
		o.put("response", jsonString(a.content.String()), "created_at")
		if a.thinking.Len() > 0 {
			o.put("thinking", jsonString(a.thinking.String()), "response")
		} else {
			o.del("thinking")
		}
		a.putLogprobs(&o, "done", "done_reason", "context", "total_duration", "load_duration",
			"prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration", "tool_calls", "_debug_info")
	}
	return o.marshal(), nil
}

func (a *ndjsonAggregate) putLogprobs(o *object, after ...string) {
	if len(a.logprob) > 0 {
		o.put("logprobs", jsonArray(a.logprob), after...)
	} else {
		o.del("logprobs")
	}
}

// readNDJSON reads an Ollama stream from r, passing each line to onChunk.
// I/O errors come back wrapped in *readError for the caller to classify.
func readNDJSON(r io.Reader, onChunk func([]byte) error) (json.RawMessage, error) {
	br := bufio.NewReader(r)
	var agg ndjsonAggregate
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if onChunk != nil {
				if err := onChunk(line); err != nil {
					return nil, &chunkError{err}
				}
			}
			done, aerr := agg.add(line)
			if aerr != nil {
				return nil, aerr
			}
			if done {
				return agg.result()
			}
		}
		if errors.Is(err, io.EOF) {
			return nil, &readError{io.ErrUnexpectedEOF, "stream ended before the final chunk"}
		}
		if err != nil {
			return nil, &readError{err, "connection lost mid-stream"}
		}
	}
}
