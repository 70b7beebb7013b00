package ollama

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// choiceAggregate collects one choice across chunks.
type choiceAggregate struct {
	role                          string
	content, reasoning, reasonAlt text
	toolCalls                     []*toolCall
	byIndex                       map[int]*toolCall     // the latest call with each index
	byIndexID                     map[toolKey]*toolCall // the latest with each index and id
	finish                        *string
}

// toolCall is a tool call merged from its deltas.
type toolCall struct {
	id, typ    string
	index      int
	name, args text
}

type toolKey struct {
	index int
	id    string
}

// sseAggregate folds OpenAI streaming chunks into the non-streaming object:
// content, text and reasoning joined per choice, tool-call deltas merged by
// index, the last finish_reason, and usage from the last chunk carrying it.
// Like ndjsonAggregate it keeps no chunk.
type sseAggregate struct {
	folding
	id, object, model, fingerprint string
	created                        int64
	choices                        map[int]*choiceAggregate
	usage                          []byte
}

// sseField is one member of a chunk that the aggregate reads.
type sseField int

const (
	sError sseField = iota
	sID
	sObject
	sCreated
	sModel
	sFingerprint
	sChoices
	sUsage
	nSSEFields
)

var sseFields = [nSSEFields]string{"error", "id", "object", "created", "model", "system_fingerprint", "choices", "usage"}

// The members of a choice, its delta, a tool call and its function that
// the aggregate reads.
var (
	choiceFields   = []string{"index", "text", "finish_reason", "delta"}
	deltaFields    = []string{"role", "content", "reasoning", "reasoning_content", "tool_calls"}
	toolCallFields = []string{"index", "id", "type", "function"}
	functionFields = []string{"name", "arguments"}
)

func (a *sseAggregate) add(data []byte) error {
	if err := validObject(data); err != nil {
		return fmt.Errorf("invalid JSON in event stream: %w", err)
	}
	var f [nSSEFields][]byte
	_ = members(data, sseFields[:], f[:])
	if err := failure(f[sError]); err != nil {
		return err
	}
	if err := a.fold(f); err != nil {
		return fmt.Errorf("invalid chunk in event stream: %w", err)
	}
	return a.tooLarge()
}

func (a *sseAggregate) fold(f [nSSEFields][]byte) (err error) {
	if a.id == "" {
		if a.id, err = a.str(a.id, "id", f[sID], true); err != nil {
			return err
		}
		if a.created, err = intValue("created", f[sCreated]); err != nil {
			return err
		}
	}
	if a.model, err = a.str(a.model, "model", f[sModel], false); err != nil {
		return err
	}
	if a.fingerprint, err = a.str(a.fingerprint, "system_fingerprint", f[sFingerprint], false); err != nil {
		return err
	}
	if a.object, err = a.str(a.object, "object", f[sObject], false); err != nil {
		return err
	}
	if u := f[sUsage]; u != nil && !isNull(u) {
		a.folded += len(u) - len(a.usage)
		a.usage = append(a.usage[:0], u...)
	}
	if c := f[sChoices]; c != nil && !isNull(c) {
		if err := eachElement(c, a.choice); err != nil {
			return fmt.Errorf("choices: %w", err)
		}
	}
	return nil
}

// str returns the string member val if it is set and not empty, else old;
// with always, an empty string replaces old too. It allocates only when the
// value changes.
func (a *sseAggregate) str(old, name string, val []byte, always bool) (string, error) {
	if val == nil {
		return old, nil
	}
	lit, ok, err := stringValue(val)
	if err != nil {
		return old, fmt.Errorf("%s: %w", name, err)
	}
	if !ok {
		return old, nil
	}
	a.sc.dec = unquote(a.sc.dec[:0], lit)
	if (len(a.sc.dec) == 0 && !always) || string(a.sc.dec) == old {
		return old, nil
	}
	return string(a.sc.dec), nil
}

// intValue reads an integer member; null or absent is 0.
func intValue(name string, val []byte) (int64, error) {
	if val == nil || isNull(val) {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(val), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %s is not an integer", name, clip(string(val)))
	}
	return n, nil
}

// choice folds one element of a chunk's choices.
func (a *sseAggregate) choice(elem []byte) error {
	var m [4][]byte
	if err := members(elem, choiceFields, m[:]); err != nil {
		return err
	}
	index, text, finish, delta := m[0], m[1], m[2], m[3]
	i, err := intValue("index", index)
	if err != nil {
		return err
	}
	if a.choices == nil {
		a.choices = map[int]*choiceAggregate{}
	}
	agg := a.choices[int(i)]
	if agg == nil {
		agg = &choiceAggregate{}
		a.choices[int(i)] = agg
	}
	if finish != nil {
		lit, ok, err := stringValue(finish)
		if err != nil {
			return fmt.Errorf("finish_reason: %w", err)
		}
		if ok {
			a.sc.dec = unquote(a.sc.dec[:0], lit)
			if agg.finish == nil || *agg.finish != string(a.sc.dec) {
				s := string(a.sc.dec)
				agg.finish = &s
			}
		}
	}
	isText, err := a.text(&agg.content, "text", text)
	if err != nil {
		return err
	}
	if isText {
		a.object = cmpOr(a.object, "text_completion")
	}
	if delta != nil && !isNull(delta) {
		a.object = cmpOr(a.object, "chat.completion.chunk")
		return a.delta(agg, delta)
	}
	return nil
}

// delta folds a chat choice's delta.
func (a *sseAggregate) delta(agg *choiceAggregate, delta []byte) error {
	var m [5][]byte
	if err := members(delta, deltaFields, m[:]); err != nil {
		return fmt.Errorf("delta: %w", err)
	}
	role, toolCalls := m[0], m[4]
	var err error
	if agg.role, err = a.str(agg.role, "delta.role", role, false); err != nil {
		return err
	}
	if _, err := a.text(&agg.content, "delta.content", m[1]); err != nil {
		return err
	}
	if _, err := a.text(&agg.reasoning, "delta.reasoning", m[2]); err != nil {
		return err
	}
	if _, err := a.text(&agg.reasonAlt, "delta.reasoning_content", m[3]); err != nil {
		return err
	}
	if toolCalls != nil && !isNull(toolCalls) {
		err := eachElement(toolCalls, func(tc []byte) error { return a.toolCall(agg, tc) })
		if err != nil {
			return fmt.Errorf("delta.tool_calls: %w", err)
		}
	}
	return nil
}

// toolCall merges a streamed tool-call delta: a delta continues the call
// with the same index unless it names a different id.
func (a *sseAggregate) toolCall(agg *choiceAggregate, delta []byte) error {
	var m [4][]byte
	if err := members(delta, toolCallFields, m[:]); err != nil {
		return err
	}
	index, id, typ, fn := m[0], m[1], m[2], m[3]
	var f [2][]byte
	if fn != nil {
		if err := members(fn, functionFields, f[:]); err != nil {
			return fmt.Errorf("function: %w", err)
		}
	}
	idStr, err := a.str("", "id", id, false)
	if err != nil {
		return err
	}
	typStr, err := a.str("", "type", typ, false)
	if err != nil {
		return err
	}
	i := len(agg.toolCalls)
	if index != nil && !isNull(index) {
		n, err := intValue("index", index)
		if err != nil {
			return err
		}
		i = int(n)
	}
	tc := agg.byIndex[i]
	if idStr != "" && tc != nil && tc.id != idStr {
		tc = agg.byIndexID[toolKey{i, idStr}]
	}
	if tc == nil {
		tc = &toolCall{id: idStr, index: i}
		agg.toolCalls = append(agg.toolCalls, tc)
		if agg.byIndex == nil {
			agg.byIndex, agg.byIndexID = map[int]*toolCall{}, map[toolKey]*toolCall{}
		}
		agg.byIndex[i] = tc
		agg.byIndexID[toolKey{i, idStr}] = tc
	}
	tc.typ = cmpOr(tc.typ, typStr)
	if _, err := a.text(&tc.name, "function.name", f[0]); err != nil {
		return err
	}
	_, err = a.text(&tc.args, "function.arguments", f[1])
	return err
}

// result writes the non-streaming object, with its members in the order
// Ollama writes them.
func (a *sseAggregate) result() ([]byte, error) {
	indexes := make([]int, 0, len(a.choices))
	for i := range a.choices {
		indexes = append(indexes, i)
	}
	slices.Sort(indexes)
	textCompletion := a.object == "text_completion"
	o := object{{"id", str(a.id)}, {"object", str("chat.completion")}, {"created", integer(a.created)}, {"model", str(a.model)}}
	if textCompletion {
		o[1].val = str("text_completion")
	}
	if a.fingerprint != "" {
		o = append(o, member{"system_fingerprint", str(a.fingerprint)})
	}
	choices := array{}
	for _, i := range indexes {
		c := a.choices[i]
		var finish value = raw("null")
		if c.finish != nil {
			finish = str(*c.finish)
		}
		if textCompletion {
			choices = append(choices, object{{"text", &c.content}, {"index", integer(i)}, {"finish_reason", finish}})
			continue
		}
		msg := object{{"role", str(cmpOr(c.role, "assistant"))}, {"content", &c.content}}
		if c.reasoning.n > 0 {
			msg = append(msg, member{"reasoning", &c.reasoning})
		}
		if c.reasonAlt.n > 0 {
			msg = append(msg, member{"reasoning_content", &c.reasonAlt})
		}
		if len(c.toolCalls) > 0 {
			calls := make(array, len(c.toolCalls))
			for k, tc := range c.toolCalls {
				calls[k] = object{{"id", str(tc.id)}, {"index", integer(tc.index)}, {"type", str(tc.typ)},
					{"function", object{{"name", &tc.name}, {"arguments", &tc.args}}}}
			}
			msg = append(msg, member{"tool_calls", calls})
		}
		choices = append(choices, object{{"index", integer(i)}, {"message", msg}, {"finish_reason", finish}})
	}
	o = append(o, member{"choices", choices})
	if len(a.usage) > 0 {
		usage, err := json.Marshal(json.RawMessage(a.usage)) // compacted, as encoding/json writes a RawMessage
		if err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
		o = append(o, member{"usage", raw(usage)})
	}
	return marshal(o), nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// readSSE reads an OpenAI event stream from r, passing each data payload to
// onChunk. I/O errors come back wrapped in *readError for the caller.
func readSSE(r io.Reader, onChunk func([]byte) error, lim limits) ([]byte, error) {
	lines := newLineReader(r, lim.line)
	var (
		agg     = sseAggregate{folding: folding{max: lim.answer}}
		data    []byte // the event's data, reused
		hasData bool
	)
	dispatch := func() (done bool, err error) {
		payload := data
		data, hasData = data[:0], false
		if string(bytes.TrimSpace(payload)) == "[DONE]" {
			return true, nil
		}
		if onChunk != nil {
			if err := onChunk(payload[:len(payload):len(payload)]); err != nil {
				return false, &chunkError{err}
			}
		}
		return false, agg.add(payload)
	}
	for {
		line, err := lines.next()
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, streamError(err)
		}
		line = bytes.TrimRight(line, "\r")
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
					if len(data)+1+len(value) > lim.line {
						return nil, ErrLineTooLong
					}
					data = append(data, '\n')
				}
				data, hasData = append(data, value...), true
			}
		}
		if err != nil { // io.EOF
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
	}
}
