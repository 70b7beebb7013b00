package openai

import "encoding/json"

// Error is the object under "error" in every OpenAI error body:
// {"error": {"message", "type", "param", "code"}}.
type Error struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   any     `json:"param"`
	Code    *string `json:"code"`
}

// ErrorBody is an OpenAI error body.
type ErrorBody struct {
	Error Error `json:"error"`
}

// BatchLine is one line of a Batch API input file:
// {"custom_id", "method": "POST", "url", "body": {…}}. CustomID and Method
// are pointers so that a line without them can be told from one with an
// empty value.
type BatchLine struct {
	CustomID *string                    `json:"custom_id"`
	Method   *string                    `json:"method"`
	URL      string                     `json:"url"`
	Body     map[string]json.RawMessage `json:"body"`
}

// BatchOutputLine is one line of a batch's output file: the answer
// (response) or, for a line that never got one, an error.
type BatchOutputLine struct {
	ID       string               `json:"id"`
	CustomID *string              `json:"custom_id"`
	Response *BatchOutputResponse `json:"response"`
	Error    *BatchOutputError    `json:"error"`
}

// BatchOutputResponse is the answer to one line: the HTTP status it would
// have had and the body (the answer, or an ErrorBody).
type BatchOutputResponse struct {
	StatusCode int             `json:"status_code"`
	RequestID  string          `json:"request_id"`
	Body       json.RawMessage `json:"body"`
}

// BatchOutputError is why a line has no answer.
type BatchOutputError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Failed reports whether the line did not succeed: it belongs in the
// batch's error file, not its output file.
func (l *BatchOutputLine) Failed() bool {
	return l.Error != nil || l.Response == nil || l.Response.StatusCode >= 300
}
