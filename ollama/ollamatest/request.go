package ollamatest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
)

// decodeBody decodes a request body as gin's ShouldBindJSON does: the first
// JSON value only; an empty body is io.EOF, which Ollama's own handlers
// report as "missing request body". Type errors name apiType (Ollama's Go
// type, e.g. "ChatRequest") as encoding/json does in Ollama.
func decodeBody(body []byte, v any, apiType string) error {
	err := decodeOpenAIBody(body, v, apiType)
	if errors.Is(err, io.EOF) {
		return errors.New("missing request body")
	}
	return err
}

// decodeOpenAIBody decodes a body as Ollama's OpenAI layer does: like
// decodeBody, but an empty body is reported as encoding/json's plain "EOF".
func decodeOpenAIBody(body []byte, v any, apiType string) error {
	err := json.NewDecoder(bytes.NewReader(body)).Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		names := strings.NewReplacer("ollamatest.message", "api.Message", "ollamatest.duration", "api.Duration",
			"ollamatest.thinkValue", "api.ThinkValue", "ollamatest.openaiMessage", "openai.Message",
			"ollamatest.openaiStreamOptions", "openai.StreamOptions")
		// Ollama's request types hold their fields themselves; the fake's
		// share some through an embedded struct, which encoding/json names.
		field := strings.TrimPrefix(te.Field, "nativeFields.")
		return fmt.Errorf("json: cannot unmarshal %s into Go struct field %s.%s of type %s",
			te.Value, apiType, field, names.Replace(te.Type.String()))
	}
	return err
}

// duration is Ollama's api.Duration as it decodes keep_alive: a number of
// seconds or a Go duration string; negative means forever.
type duration struct{ time.Duration }

func (d *duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	d.Duration = defaultKeepAlive
	switch t := v.(type) {
	case float64:
		if t < 0 {
			d.Duration = forever
		} else {
			d.Duration = time.Duration(t * float64(time.Second))
		}
	case string:
		var err error
		d.Duration, err = time.ParseDuration(t)
		if err != nil {
			return err
		}
		if d.Duration < 0 {
			d.Duration = forever
		}
	default:
		//lint:ignore ST1005 this is Ollama's message, word for word
		return fmt.Errorf("Unsupported type: '%s'", reflect.TypeOf(v))
	}
	return nil
}

// keepOf is the keep_alive a request asks for, Ollama's default if none.
func keepOf(d *duration) time.Duration {
	if d == nil {
		return keepUnset
	}
	return d.Duration
}

// keepUnset stands for a request that gave no keep_alive: as Ollama's
// scheduler (LlmRequest.sessionDuration is nil), it leaves a loaded
// model's keep_alive as it is, and a model it loads gets the default.
const keepUnset = time.Duration(math.MinInt64)

// sessionFor is the keep_alive a load started by a request with keep gets.
func sessionFor(keep time.Duration) time.Duration {
	if keep == keepUnset {
		return defaultKeepAlive
	}
	return keep
}

// thinkValue is Ollama's api.ThinkValue: a bool or "high", "medium", "low".
type thinkValue struct{ value any }

func (t *thinkValue) UnmarshalJSON(data []byte) error {
	var b bool
	if err := json.Unmarshal(data, &b); err == nil {
		t.value = b
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		if s != "high" && s != "medium" && s != "low" {
			return fmt.Errorf("invalid think value: %q (must be \"high\", \"medium\", \"low\", true, or false)", s)
		}
		t.value = s
		return nil
	}
	return errors.New(`think must be a boolean or string ("high", "medium", "low", true, or false)`)
}

// on reports whether thinking is asked for.
func (t *thinkValue) on() bool {
	if t == nil {
		return false
	}
	b, isBool := t.value.(bool)
	return !isBool || b
}

// optionKinds are the JSON kinds of Ollama's api.Options fields (with
// api.Runner's), by option name: what api.Options.FromMap requires of a
// request's options.
var optionKinds = map[string]string{
	"num_ctx": "integer", "num_batch": "integer", "num_gpu": "integer", "main_gpu": "integer",
	"use_mmap": "boolean", "num_thread": "integer",
	"num_keep": "integer", "seed": "integer", "num_predict": "integer", "top_k": "integer",
	"top_p": "float32", "min_p": "float32", "typical_p": "float32", "repeat_last_n": "integer",
	"temperature": "float32", "repeat_penalty": "float32", "presence_penalty": "float32",
	"frequency_penalty": "float32", "stop": "array",
}

// checkOptions refuses options of the wrong JSON type as Ollama does when it
// schedules the request (after the model and its capabilities are checked,
// before loading): a 500 naming the option. Unknown options and nulls are
// ignored, as Ollama ignores them (it logs a warning).
func checkOptions(opts map[string]any) error {
	for _, key := range slices.Sorted(maps.Keys(opts)) { // Ollama's order is a map's: any
		val := opts[key]
		kind, known := optionKinds[key]
		if !known || val == nil {
			continue
		}
		ok := true
		switch kind {
		case "integer", "float32":
			_, ok = val.(float64)
		case "boolean":
			_, ok = val.(bool)
		case "array":
			items, isArray := val.([]any)
			if !isArray {
				ok = false
				break
			}
			for _, it := range items {
				if _, isString := it.(string); !isString {
					return fmt.Errorf("option %q must be of an array of strings", key)
				}
			}
		}
		if !ok {
			return fmt.Errorf("option %q must be of type %s", key, kind)
		}
	}
	return nil
}

// numPredict reads options.num_predict; anything unusable means no limit.
func numPredict(opts map[string]any) int {
	if f, ok := opts["num_predict"].(float64); ok && f > 0 && f < math.MaxInt32 {
		return int(f)
	}
	return 0
}

// runnerOptions are the options of Ollama's api.Runner, which a model is
// loaded with: a request that asks for other values makes Ollama reload the
// model (server/sched.go, needsReload).
type runnerOptions struct {
	numCtx, numBatch, numGPU, mainGPU, numThread int
	useMMap                                      tristate
}

// tristate is an optional bool, as api.Runner's UseMMap *bool; zero is
// unset.
type tristate int8

const (
	yes tristate = iota + 1
	no
)

// defaultNumCtx is the num_ctx Ollama 0.17.4 gives a request that sets none
// on a machine with less than 23 GiB of VRAM and no OLLAMA_CONTEXT_LENGTH
// (server/routes.go, Serve and modelOptions).
const defaultNumCtx = 4096

// runnerOptionsOf is what Ollama makes of a request's options for loading:
// api.DefaultOptions with the default num_ctx, then the request's options
// (integers truncated, nulls ignored, as api.Options.FromMap does), with
// num_ctx raised to at least 4 (Scheduler.GetRunner). The options must
// have passed checkOptions.
func runnerOptionsOf(opts map[string]any) runnerOptions {
	r := runnerOptions{numCtx: defaultNumCtx, numBatch: 512, numGPU: -1}
	for key, p := range map[string]*int{
		"num_ctx": &r.numCtx, "num_batch": &r.numBatch, "num_gpu": &r.numGPU,
		"main_gpu": &r.mainGPU, "num_thread": &r.numThread,
	} {
		if f, ok := opts[key].(float64); ok {
			*p = int(int64(f))
		}
	}
	if b, ok := opts["use_mmap"].(bool); ok {
		r.useMMap = no
		if b {
			r.useMMap = yes
		}
	}
	r.numCtx = max(r.numCtx, 4)
	return r
}

// message is one chat message of Ollama's API.
type message struct {
	Role      string          `json:"role"`
	Content   string          `json:"content"`
	Thinking  string          `json:"thinking,omitempty"`
	Images    [][]byte        `json:"images,omitempty"`
	ToolCalls json.RawMessage `json:"tool_calls,omitempty"`
}

// nativeFields are the fields /api/chat and /api/generate requests share.
type nativeFields struct {
	Model       string          `json:"model"`
	Stream      *bool           `json:"stream"`
	Format      json.RawMessage `json:"format"`
	KeepAlive   *duration       `json:"keep_alive"`
	Options     map[string]any  `json:"options"`
	Think       *thinkValue     `json:"think"`
	TopLogprobs int             `json:"top_logprobs"`
}

func (f *nativeFields) shared() *nativeFields { return f }

type chatRequest struct {
	nativeFields
	Messages []message       `json:"messages"`
	Tools    json.RawMessage `json:"tools"`
}

type generateRequest struct {
	nativeFields
	Prompt   string   `json:"prompt"`
	Suffix   string   `json:"suffix"`
	System   string   `json:"system"`
	Template string   `json:"template"`
	Context  []int    `json:"context"`
	Raw      bool     `json:"raw"`
	Images   [][]byte `json:"images"`
}

// lastUserText is the text a chat reply answers: the last user message, or
// the last message of any role if none is from the user.
func lastUserText(msgs []message) string {
	for i := len(msgs) - 1; i >= 0; i-- {
		if strings.EqualFold(msgs[i].Role, "user") {
			return msgs[i].Content
		}
	}
	if len(msgs) > 0 {
		return msgs[len(msgs)-1].Content
	}
	return ""
}
