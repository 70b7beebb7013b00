package spool

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseJob checks that ParseJob never panics, that a job it accepts
// makes a request that is a JSON object without hopper's fields, and that
// anything it refuses is a *BadInputError that says why. The seed corpus is
// in testdata/fuzz/FuzzParseJob.
func FuzzParseJob(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := ParseJob(data, 1<<16)
		if err != nil {
			var bad *BadInputError
			if !errors.As(err, &bad) || bad.Reason == "" {
				t.Fatalf("got %T %q, want a *BadInputError with a message", err, err)
			}
			if j != nil {
				t.Fatalf("got a job with error %v", err)
			}
			return
		}
		if j.Function == "" && (j.Model == "" || !j.Endpoint.Valid()) {
			t.Fatalf("accepted a job with model %q and endpoint %q", j.Model, j.Endpoint)
		}
		if j.Endpoint != "" && !j.Endpoint.Valid() {
			t.Fatalf("accepted unknown endpoint %q", j.Endpoint)
		}
		req, err := j.Request(nil)
		if err != nil {
			t.Fatalf("Request: %v", err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(req, &fields); err != nil || fields == nil {
			t.Fatalf("request %q is not a JSON object: %v", req, err)
		}
		for _, k := range hopperFields {
			if _, ok := fields[k]; ok {
				t.Fatalf("request %q holds hopper's field %q", req, k)
			}
		}
		if len(fields) != len(j.Body) {
			t.Fatalf("request has %d fields, body %d", len(fields), len(j.Body))
		}
		// Pass-through values keep the bytes they were submitted with.
		var in map[string]json.RawMessage
		if err := json.Unmarshal(trimBOM(data), &in); err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", data, err)
		}
		for k, v := range j.Body {
			if !bytes.Equal(v, in[k]) {
				t.Fatalf("body[%q] is %q, submitted as %q", k, v, in[k])
			}
		}
		// The request carries hopper's settings too.
		req, err = j.Request(map[string]json.RawMessage{"stream": json.RawMessage("true")})
		if err != nil {
			t.Fatalf("Request with stream: %v", err)
		}
		if err := json.Unmarshal(req, &fields); err != nil || string(fields["stream"]) != "true" {
			t.Fatalf("request %q lost stream: %v", req, err)
		}
	})
}
