package ollamatest

import (
	"net/http"
	"time"
)

// Messages Ollama gives for the faults the fake injects.
const (
	// BusyMessage is Ollama's 503 text when its request queue is full
	// (server/sched.go ErrMaxQueue), two spaces included.
	BusyMessage = "server busy, please try again.  maximum pending requests exceeded"
	// RunnerCrashedMessage is what Ollama reports when the model runner
	// process dies during a request.
	RunnerCrashedMessage = "llama runner process has terminated: exit status 2"
)

type faultKind int

const (
	faultNone faultKind = iota
	faultFail
	faultHang
	faultDrop
	faultMidError
)

type fault struct {
	kind    faultKind
	status  int
	message string
}

// faults counts the scripted failures still to happen; guarded by Server.mu.
type faults struct {
	fail, hang, drop, midError int
	failStatus                 int
	failMessage, midMessage    string
}

// takeFault consumes the fault the next inference request suffers, if any.
// Failures come first, then hangs, drops and errors mid-stream.
func (s *Server) takeFault() fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.faults
	switch {
	case f.fail > 0:
		f.fail--
		return fault{kind: faultFail, status: f.failStatus, message: f.failMessage}
	case f.hang > 0:
		f.hang--
		return fault{kind: faultHang}
	case f.drop > 0:
		f.drop--
		return fault{kind: faultDrop}
	case f.midError > 0:
		f.midError--
		return fault{kind: faultMidError, message: f.midMessage}
	}
	return fault{}
}

// FailNext makes the next n inference requests for known models answer
// status with Ollama's error body ({"error": message}; OpenAI's error object
// on /v1 paths) before any model is loaded. An empty message means Ollama's
// own text for the status: [BusyMessage] for 503, [RunnerCrashedMessage] for
// 500, the status text otherwise.
func (s *Server) FailNext(n int, status int, message string) {
	if message == "" {
		switch status {
		case http.StatusServiceUnavailable:
			message = BusyMessage
		case http.StatusInternalServerError:
			message = RunnerCrashedMessage
		default:
			message = http.StatusText(status)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.fail, s.faults.failStatus, s.faults.failMessage = n, status, message
}

// HangNext makes the next n inference requests for known models hang: they
// are accepted and never answered until the client gives up or the server
// stops.
func (s *Server) HangNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.hang = n
}

// DropMidStream makes the next n inference requests for known models send
// half their tokens (at least the response headers and, when there is one,
// a token; a partial body when not streaming) and then close the connection
// without finishing the response.
func (s *Server) DropMidStream(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.drop = n
}

// ErrorMidStream makes the next n inference requests for known models fail
// after half their tokens the way Ollama reports a runner failure: an
// {"error": message} line inside the 200 NDJSON stream, or a 500 error
// answer when nothing was streamed yet. On /v1 streams Ollama's OpenAI layer
// turns that line into an empty chunk and the stream ends without
// "data: [DONE]"; the fake does the same. An empty message means
// [RunnerCrashedMessage].
func (s *Server) ErrorMidStream(n int, message string) {
	if message == "" {
		message = RunnerCrashedMessage
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.midError, s.faults.midMessage = n, message
}

// SlowTokens changes the wait before each token to d, for generations
// already running too.
func (s *Server) SlowTokens(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenDelay = d
}
