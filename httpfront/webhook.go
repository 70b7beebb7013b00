package httpfront

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/hopper-dev/hopper/batch"
)

// checkWebhook refuses, with 400, the webhook of a job arriving over HTTP
// that could never be delivered: not an http or https URL, or an address
// that deliveries of such jobs may not reach (loopback, private,
// link-local…) unless hooks.allow lets them (the hooks package decides,
// as it does when it connects). function names the job's function,
// whose own webhook the job gets when it names none.
func (s *Server) checkWebhook(webhook, function string) *httpError {
	whose := "webhook"
	if webhook == "" && function != "" && s.cfg.Functions != nil {
		if fn, err := s.cfg.Functions.Lookup(function); err == nil && fn.Webhook != "" {
			webhook, whose = fn.Webhook, fmt.Sprintf("the webhook of function %s", function)
		}
	}
	if webhook == "" {
		return nil
	}
	if err := s.webhook.CheckUntrusted(webhook); err != nil {
		e := errorf(http.StatusBadRequest, "%s %q is refused for jobs submitted over HTTP: %v", whose, webhook, err)
		e.code = "invalid_webhook"
		return e
	}
	return nil
}

// checkBatchWebhooks checks the webhooks of the lines of uploaded file id
// (see batchWebhooks), in OpenAI's shape.
func (s *Server) checkBatchWebhooks(id string) *httpError {
	f, err := s.sp.Open(batch.FilePath(id))
	if err != nil {
		return s.storageError("read the batch file", err)
	}
	defer f.Close()
	e := s.batchWebhooks(f)
	if e != nil && e.status < 500 {
		e.oaType = "invalid_request_error"
	}
	return e
}

// batchWebhooks checks the webhook of each hopper job line of an
// uploaded batch file (OpenAI lines carry none), as checkWebhook does,
// and refuses the batch at the first one refused, naming its line. Lines
// that do not parse are left to fail on their own when the batch runs.
func (s *Server) batchWebhooks(r io.Reader) *httpError {
	br := bufio.NewReaderSize(r, 64<<10)
	max := s.sp.Options().MaxJobSize
	var line []byte
	for n := 1; ; n++ {
		line = line[:0]
		tooLong := false
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			if !tooLong {
				if int64(len(line)+len(chunk)) > max+2 {
					tooLong, line = true, line[:0]
				} else {
					line = append(line, chunk...)
				}
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return s.storageError("read the batch file", err)
		}
		if !tooLong && mayNameWebhook(line) {
			f := probeJob(bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")))
			if !f.openai {
				if e := s.checkWebhook(f.webhook, f.function); e != nil {
					e.msg = fmt.Sprintf("line %d: %s", n, e.msg)
					return e
				}
			}
		}
		if err != nil {
			return nil
		}
	}
}

// mayNameWebhook reports whether a batch line could give a webhook, its
// own or its function's: most lines name neither and need no parsing.
// A key may be written with escapes ("\u0077ebhook"), so a line with
// any is parsed too.
func mayNameWebhook(line []byte) bool {
	return bytes.Contains(line, []byte("webhook")) || bytes.Contains(line, []byte("function")) ||
		bytes.Contains(line, []byte(`\u`))
}

// jobFields are the members of a job the front looks at before it is
// written, read by their exact keys, as the spool reads them (the last of
// a key given twice counts).
type jobFields struct {
	webhook, function string
	priority          bool // there is a "priority"
	openai            bool // a batch line in OpenAI's shape: it has "url" or "body"
}

// probeJob reads the jobFields of data; nothing of data that is not valid
// JSON holding an object (it fails on its own elsewhere). A webhook or
// function that is not a string is left to the spool to refuse.
func probeJob(data []byte) jobFields {
	var f jobFields
	if !json.Valid(data) {
		return f
	}
	str := func(m member) string {
		var v string
		_ = json.Unmarshal(data[m.value:m.end], &v)
		return v
	}
	for m := range members(data) {
		switch {
		case m.is("webhook"):
			f.webhook = str(m)
		case m.is("function"):
			f.function = str(m)
		case m.is("priority"):
			f.priority = true
		case m.is("url"), m.is("body"):
			f.openai = true
		}
	}
	return f
}
