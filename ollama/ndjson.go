package ollama

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ndjsonAggregate folds the lines of an Ollama stream into the object Ollama
// returns with "stream": false, as server/routes.go does: for chat,
// message.content and message.thinking are joined and message.tool_calls
// collected; for generate, response and thinking are joined; logprobs are
// collected for both; everything else comes from the final (done) chunk.
//
// It keeps no line: text is appended, escaped, to blocks as each line
// arrives, and the answer is written once at the end.
type ndjsonAggregate struct {
	folding
	chat, generate     bool
	content, thinking  text
	toolCalls, logprob list
}

// chunkField is one member of a chunk that the aggregate reads.
type chunkField int

const (
	fError chunkField = iota
	fMessage
	fResponse
	fThinking
	fLogprobs
	fDone
	nChunkFields
)

var chunkFields = [nChunkFields]string{"error", "message", "response", "thinking", "logprobs", "done"}

// messageFields are the members of a chat chunk's message that the
// aggregate reads.
var messageFields = []string{"content", "thinking", "tool_calls"}

// folding is what both stream aggregates keep as they fold: the bytes
// folded so far, the most allowed, and scratch space.
type folding struct {
	folded, max int
	sc          scratch
}

// text appends the string member val to t; it reports whether val is a
// string (absent and null are not).
func (f *folding) text(t *text, name string, val []byte) (bool, error) {
	if val == nil {
		return false, nil
	}
	lit, ok, err := stringValue(val)
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	if ok {
		f.folded += t.add(lit, &f.sc)
	}
	return ok, nil
}

// tooLarge is ErrAnswerTooLarge once more than max bytes are folded.
func (f *folding) tooLarge() error {
	if f.folded > f.max {
		return ErrAnswerTooLarge
	}
	return nil
}

// failure is the error a chunk's "error" member reports, or nil if it has
// none.
func failure(v []byte) error {
	if v == nil || isNull(v) {
		return nil
	}
	msg := messageOf(v)
	if msg == "" {
		msg = string(v)
	}
	return &JobFailedError{Status: 200, Message: clip(msg)}
}

// members sets vals[i] to obj's member names[i], the last of each as
// encoding/json would take it; a null obj has none.
func members(obj []byte, names []string, vals [][]byte) error {
	if isNull(obj) {
		return nil
	}
	return eachMember(obj, func(key, val []byte) error {
		for i, name := range names {
			if keyIs(key, name) {
				vals[i] = val
			}
		}
		return nil
	})
}

// add takes one line and reports whether it was the final chunk.
func (a *ndjsonAggregate) add(line []byte) (done bool, err error) {
	if err := validObject(line); err != nil {
		return false, fmt.Errorf("invalid JSON in stream: %w", err)
	}
	var f [nChunkFields][]byte
	_ = members(line, chunkFields[:], f[:])
	if err := failure(f[fError]); err != nil {
		return false, err
	}
	if err := a.fold(f); err != nil {
		return false, fmt.Errorf("invalid chunk in stream: %w", err)
	}
	if err := a.tooLarge(); err != nil {
		return false, err
	}
	if done, err = boolValue(f[fDone]); err != nil {
		return false, fmt.Errorf("invalid chunk in stream: done: %w", err)
	}
	return done, nil
}

// fold appends the chunk's text, tool calls and logprobs.
func (a *ndjsonAggregate) fold(f [nChunkFields][]byte) error {
	switch {
	case f[fMessage] != nil && !isNull(f[fMessage]):
		a.chat = true
		var m [3][]byte
		if err := members(f[fMessage], messageFields, m[:]); err != nil {
			return fmt.Errorf("message: %w", err)
		}
		if _, err := a.text(&a.content, "message.content", m[0]); err != nil {
			return err
		}
		if _, err := a.text(&a.thinking, "message.thinking", m[1]); err != nil {
			return err
		}
		if err := a.list(&a.toolCalls, "message.tool_calls", m[2]); err != nil {
			return err
		}
	case f[fResponse] != nil && !isNull(f[fResponse]):
		a.generate = true
		if _, err := a.text(&a.content, "response", f[fResponse]); err != nil {
			return err
		}
		if _, err := a.text(&a.thinking, "thinking", f[fThinking]); err != nil {
			return err
		}
	}
	return a.list(&a.logprob, "logprobs", f[fLogprobs])
}

// list appends the elements of an array member, if present.
func (a *ndjsonAggregate) list(l *list, name string, val []byte) error {
	if val == nil || isNull(val) {
		return nil
	}
	err := eachElement(val, func(elem []byte) error {
		a.folded += l.add(elem)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// result builds the stream:false object from the final chunk.
func (a *ndjsonAggregate) result(final []byte) (json []byte, err error) {
	o, err := parseObject(final)
	if err != nil {
		return nil, fmt.Errorf("final chunk: %w", err)
	}
	switch {
	case a.chat:
		v, _ := o.get("message")
		r, _ := v.(raw)
		msg, err := parseObject(r)
		if err != nil {
			return nil, fmt.Errorf("final chunk message: %w", err)
		}
		msg.put("content", &a.content, "role")
		if a.thinking.n > 0 {
			msg.put("thinking", &a.thinking, "content")
		} else {
			msg.del("thinking")
		}
		if a.toolCalls.count > 0 {
			msg.put("tool_calls", &a.toolCalls, "content", "thinking", "images")
		}
		o.put("message", msg)
		a.putLogprobs(&o, "done", "done_reason", "_debug_info")
	case a.generate:
		o.put("response", &a.content, "created_at")
		if a.thinking.n > 0 {
			o.put("thinking", &a.thinking, "response")
		} else {
			o.del("thinking")
		}
		a.putLogprobs(&o, "done", "done_reason", "context", "total_duration", "load_duration",
			"prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration", "tool_calls", "_debug_info")
	}
	return marshal(o), nil
}

func (a *ndjsonAggregate) putLogprobs(o *object, after ...string) {
	if a.logprob.count > 0 {
		o.put("logprobs", &a.logprob, after...)
	} else {
		o.del("logprobs")
	}
}

// readNDJSON reads an Ollama stream from r, passing each line to onChunk.
// I/O errors come back wrapped in *readError for the caller to classify.
func readNDJSON(r io.Reader, onChunk func([]byte) error, lim limits) ([]byte, error) {
	lines := newLineReader(r, lim.line)
	agg := ndjsonAggregate{folding: folding{max: lim.answer}}
	for {
		line, err := lines.next()
		if line = bytes.TrimSpace(line); len(line) > 0 {
			if onChunk != nil {
				// Capped, so that appending to it cannot write over the
				// stream's next bytes.
				if err := onChunk(line[:len(line):len(line)]); err != nil {
					return nil, &chunkError{err}
				}
			}
			done, aerr := agg.add(line)
			if aerr != nil {
				return nil, aerr
			}
			if done {
				return agg.result(line)
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil, &readError{io.ErrUnexpectedEOF, "stream ended before the final chunk"}
		case err != nil:
			return nil, streamError(err)
		}
	}
}

// streamError wraps an error from lineReader.next for the caller.
func streamError(err error) error {
	if errors.Is(err, ErrLineTooLong) {
		return err
	}
	return &readError{err, "connection lost mid-stream"}
}
