package httpfront

// The Ollama routes that are not queued (model management and the reads)
// are answered by the targets themselves. With one target the front passes
// them through unchanged (proxy.go). With several (Config.Targets, in the
// order configured):
//
//   - POST /api/pull and /api/create run on each target whose models list
//     admits the model (every target when no list restricts; 400 when none
//     admits it), one after another. Progress lines are relayed as each
//     target sends them, with " (NAME)" added to the status and a "target"
//     field; "success" is sent once, at the end, when every target
//     succeeded. A target that fails is reported after the rest were tried:
//     an {"error": "target NAME: ..."} line, or the status code when nothing
//     was streamed yet; when every target failed in the same words, those
//     words alone, as Ollama would say them. "stream": false answers one
//     object.
//   - DELETE /api/delete and POST /api/copy go to every target; those that
//     answer 404 do not have the model. When none has it, the 404 is
//     Ollama's own; a target that fails (or is down) is named in the error.
//   - POST /api/push goes to the first target whose /api/tags lists the
//     model (the first that answers when none does).
//   - HEAD and POST /api/blobs/DIGEST go to every target that is up (the
//     body is streamed to all at once): create may run on any of them.
//     HEAD answers 200 only when all have the blob.
//   - GET /api/tags and /v1/models are the union over the targets that are
//     up, deduplicated by model name (the first target's entry wins) and
//     sorted newest first, as Ollama sorts them; /api/ps is the union of
//     the models loaded anywhere. POST /api/show and GET /v1/models/{model}
//     answer from the first target that has the model; /api/version from
//     the first that answers. A target that is down is skipped for reads
//     (and logged); when all are down the answer is 502 {"error": "cannot
//     reach the Ollama targets ..."}, which the ollama CLI prints.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hopper-dev/hopper/ollama"
)

const (
	// readTimeout bounds each target's answer to a read (tags, ps, show,
	// version), so that a target that hangs does not hang the front's answer.
	readTimeout = 30 * time.Second
	// maxAnswer bounds a target's answer read into memory to merge it.
	maxAnswer = 64 << 20
	// maxProgressLine bounds one progress line, as Ollama's client does.
	maxProgressLine = 8 << 20
)

// target is one Ollama server as the front sees it.
type target struct {
	name   string // empty for the Target shorthand
	url    *url.URL
	models []string
}

// targets returns the configured targets, the first first; Target alone
// is one unnamed target.
func (s *Server) targets() []target {
	list := s.cfg.Targets
	if len(list) == 0 {
		list = []Target{{URL: s.cfg.Target}}
	}
	out := make([]target, len(list))
	for i, t := range list {
		u, _ := targetURL(t.URL) // Validate parsed it
		out[i] = target{name: t.Name, url: u, models: t.Models}
	}
	return out
}

// label names t in progress lines and errors.
func (t target) label() string { return cmp.Or(t.name, t.url.Host) }

// where is "gpu1 at http://10.0.0.5:11434", or "at URL" for an unnamed
// target.
func (t target) where() string {
	if t.name == "" {
		return "at " + t.url.String()
	}
	return t.name + " at " + t.url.String()
}

// admits reports whether t may run model, matching its models globs as the
// runner does: against the canonical name, with the glob itself in canonical
// form or as written.
func (t target) admits(model string) bool {
	return ollama.MatchModel(t.models, ollama.NormalizeModel(model))
}

// unreachable is the error of targets that could not be reached.
type unreachable []failure

func (u unreachable) Error() string {
	var b strings.Builder
	b.WriteString("cannot reach the Ollama target")
	if len(u) > 1 {
		b.WriteString("s")
	}
	for i, f := range u {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s: %v", f.t.where(), f.err)
	}
	return b.String()
}

// failure is what went wrong on one target: err when it could not be
// reached, else status and Ollama's message.
type failure struct {
	t      target
	err    error
	status int
	msg    string
}

func (f failure) message() string {
	if f.err != nil {
		return fmt.Sprintf("cannot reach %s: %v", f.t.url, f.err)
	}
	return f.msg
}

func (f failure) code() int {
	if f.err != nil {
		return http.StatusBadGateway
	}
	return f.status
}

// failed sums up the failures of a write tried on n targets, of which the
// ones in ok succeeded: each failure named by its target, or, when every
// target failed in the same words, those words alone (the request's fault,
// not a target's, as Ollama would put it).
func failed(fs []failure, ok []target, n int) (status int, msg string) {
	same := len(ok) == 0 && len(fs) == n
	for _, f := range fs[1:] {
		same = same && f.code() == fs[0].code() && f.message() == fs[0].message()
	}
	if same {
		return fs[0].code(), fs[0].message()
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = "target " + f.t.label() + ": " + f.message()
	}
	msg = strings.Join(parts, "; ")
	if len(ok) > 0 {
		names := make([]string, len(ok))
		for i, t := range ok {
			names[i] = t.label()
		}
		msg += " (done on " + strings.Join(names, ", ") + ")"
	}
	return fs[0].code(), msg
}

// send makes r's request (method, path, query and headers, less hopper's
// own) to t with body, and returns the answer unread.
func (s *Server) send(ctx context.Context, t target, r *http.Request, body []byte) (*http.Response, error) {
	u := *t.url
	u.Path = t.url.Path + r.URL.Path
	u.RawPath = ""
	u.RawQuery = r.URL.RawQuery
	var rd io.Reader = http.NoBody
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Content-Length", "Accept-Encoding"} {
		req.Header.Del(k)
	}
	s.stripForTarget(req.Header)
	resp, err := s.cfg.HTTPClient.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // the operation and URL are said by the caller
	}
	return resp, err
}

// answer is a target's answer read into memory.
type answer struct {
	t      target
	status int
	ctype  string
	body   []byte
}

// ask sends r's request to t and reads the answer, within readTimeout when
// bounded.
func (s *Server) ask(ctx context.Context, t target, r *http.Request, body []byte, bounded bool) (answer, error) {
	if bounded {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readTimeout)
		defer cancel()
	}
	resp, err := s.send(ctx, t, r, body)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err == nil && len(data) > maxAnswer {
		err = fmt.Errorf("its answer is larger than %d bytes", maxAnswer)
	}
	if err != nil {
		return answer{}, err
	}
	return answer{t: t, status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: data}, nil
}

// write relays a as the target gave it.
func (a answer) write(w http.ResponseWriter) {
	if a.ctype != "" {
		w.Header().Set("Content-Type", a.ctype)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// errorText is the message of an Ollama error body, or the body itself.
func errorText(body []byte) string {
	var e struct {
		Error any `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil {
		switch v := e.Error.(type) {
		case string:
			return v
		case map[string]any: // OpenAI's shape
			if m, ok := v["message"].(string); ok {
				return m
			}
		}
	}
	return strings.TrimSpace(string(body))
}

// skipped logs a target left out of a read.
func (s *Server) skipped(t target, r *http.Request, why any) {
	s.log.Warn("target skipped: it did not answer", "target", t.label(), "url", t.url.String(), "path", r.URL.Path, "err", why)
}

// body reads r's body (within MaxBody and the body budget) for sending to
// several targets; it answers the error itself and returns false. The
// caller releases the body.
func (s *Server) body(w http.ResponseWriter, r *http.Request) (*reqBody, bool) {
	b, e := s.readBody(w, r, 0)
	if e != nil {
		writeError(w, r, e)
		return nil, false
	}
	return b, true
}

// replay puts a read body back on r for the proxy.
func replay(r *http.Request, data []byte) {
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.ContentLength = int64(len(data))
	r.TransferEncoding = nil
}

// modelRequest is what the front reads of a model-management request.
type modelRequest struct {
	Model  string `json:"model"`
	Name   string `json:"name"` // deprecated in Ollama, still accepted
	Stream *bool  `json:"stream"`
}

func (m modelRequest) model() string { return cmp.Or(m.Model, m.Name) }

// progressOnEach serves POST /api/pull and /api/create: on each target that
// may run the model, one after another.
func (s *Server) progressOnEach(w http.ResponseWriter, r *http.Request, ts []target) {
	if len(ts) == 1 && len(ts[0].models) == 0 {
		s.proxy.ServeHTTP(w, r)
		return
	}
	b, ok := s.body(w, r)
	if !ok {
		return
	}
	defer b.release()
	var req modelRequest
	if err := json.Unmarshal(b.data, &req); err != nil || req.model() == "" {
		// Ollama's own words for what is wrong with it.
		replay(r, b.data)
		s.proxy.ServeHTTP(w, r)
		return
	}
	var admitted []target
	for _, t := range ts {
		if t.admits(req.model()) {
			admitted = append(admitted, t)
		}
	}
	switch len(admitted) {
	case 0:
		lists := make([]string, len(ts))
		for i, t := range ts {
			lists[i] = fmt.Sprintf("%s: %s", t.label(), strings.Join(t.models, ", "))
		}
		writeError(w, r, errorf(http.StatusBadRequest, "no target may run model '%s': it is in no target's models list (%s)",
			req.model(), strings.Join(lists, "; ")))
	case 1:
		replay(r, b.data)
		s.proxy.ServeHTTP(w, withTarget(r, admitted[0]))
	default:
		s.fanProgress(w, r, admitted, b.data, req.Stream == nil || *req.Stream)
	}
}

// progress writes the NDJSON of a pull or create run on several targets;
// the status line is held back until the first line.
type progress struct {
	w       http.ResponseWriter
	started bool
}

func (p *progress) line(data []byte) error {
	if !p.started {
		p.w.Header().Set("Content-Type", "application/x-ndjson")
		p.w.WriteHeader(http.StatusOK)
		p.started = true
	}
	if _, err := p.w.Write(append(data, '\n')); err != nil {
		return err
	}
	return http.NewResponseController(p.w).Flush()
}

// fanProgress runs a pull or create on each of ts in turn.
func (s *Server) fanProgress(w http.ResponseWriter, r *http.Request, ts []target, body []byte, stream bool) {
	ctx := r.Context()
	out := &progress{w: w}
	var fs []failure
	var ok []target
	for _, t := range ts {
		f, err := s.progressOn(ctx, t, r, body, stream, out)
		switch {
		case ctx.Err() != nil || err != nil:
			return // the client is gone
		case f != nil:
			s.log.Warn("model management failed on a target", "path", r.URL.Path, "target", t.label(), "status", f.code(), "err", f.message())
			fs = append(fs, *f)
		default:
			ok = append(ok, t)
		}
	}
	if len(fs) == 0 {
		done := []byte(`{"status":"success"}`)
		if !stream {
			writeJSON(w, http.StatusOK, done)
			return
		}
		_ = out.line(done)
		return
	}
	status, msg := failed(fs, ok, len(ts))
	if out.started {
		line, _ := json.Marshal(map[string]string{"error": msg})
		_ = out.line(line)
		return
	}
	writeError(w, r, errorf(status, "%s", msg))
}

// progressOn runs a pull or create on t, relaying its progress lines (less
// its "success") to out when streaming. It returns what failed on t, or an
// error when the client can no longer be written to.
func (s *Server) progressOn(ctx context.Context, t target, r *http.Request, body []byte, stream bool, out *progress) (*failure, error) {
	resp, err := s.send(ctx, t, r, body)
	if err != nil {
		return &failure{t: t, err: err}, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode >= http.StatusBadRequest {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		return &failure{t: t, status: resp.StatusCode, msg: errorText(data)}, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxProgressLine)
	success := false
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(line, &fields); err != nil {
			return &failure{t: t, status: http.StatusInternalServerError, msg: string(line)}, nil
		}
		var status, msg string
		_ = json.Unmarshal(fields["error"], &msg)
		if msg != "" {
			return &failure{t: t, status: http.StatusInternalServerError, msg: msg}, nil
		}
		_ = json.Unmarshal(fields["status"], &status)
		if status == "success" {
			success = true
			continue
		}
		if stream {
			if err := out.line(labelled(fields, status, t.label())); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return &failure{t: t, status: http.StatusBadGateway, msg: "its answer broke off: " + err.Error()}, nil
	}
	if !success {
		return &failure{t: t, status: http.StatusBadGateway, msg: "the answer ended before \"success\""}, nil
	}
	return nil, nil
}

// labelled is a progress line with the target's name added to its status
// ("pulling manifest (gpu1)", which clients show) and as a "target" field,
// Ollama's members first in Ollama's order.
func labelled(fields map[string]json.RawMessage, status, name string) []byte {
	if _, ok := fields["status"]; ok {
		fields["status"], _ = json.Marshal(status + " (" + name + ")")
	}
	fields["target"], _ = json.Marshal(name)
	keys := []string{"status", "digest", "total", "completed"}
	var rest []string
	for k := range fields {
		if !slices.Contains(keys, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	var b bytes.Buffer
	b.WriteByte('{')
	for _, k := range append(keys, rest...) {
		v, ok := fields[k]
		if !ok {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(k)
		b.Write(key)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// onEachHaving serves DELETE /api/delete and POST /api/copy: sent to every
// target; a 404 means the target does not have the model.
func (s *Server) onEachHaving(w http.ResponseWriter, r *http.Request, ts []target) {
	b, ok := s.body(w, r)
	if !ok {
		return
	}
	defer b.release()
	var (
		done, absent []answer
		fs           []failure
	)
	for _, t := range ts {
		a, err := s.ask(r.Context(), t, r, b.data, false)
		switch {
		case r.Context().Err() != nil:
			return
		case err != nil:
			fs = append(fs, failure{t: t, err: err})
		case a.status < http.StatusBadRequest:
			done = append(done, a)
		case a.status == http.StatusNotFound:
			absent = append(absent, a)
		default:
			fs = append(fs, failure{t: t, status: a.status, msg: errorText(a.body)})
		}
	}
	switch {
	case len(fs) > 0:
		var ok []target
		for _, a := range done {
			ok = append(ok, a.t)
		}
		for _, f := range fs {
			s.log.Warn("model management failed on a target", "path", r.URL.Path, "target", f.t.label(), "status", f.code(), "err", f.message())
		}
		status, msg := failed(fs, ok, len(ts)-len(absent))
		writeError(w, r, errorf(status, "%s", msg))
	case len(done) > 0:
		done[0].write(w)
	default:
		absent[0].write(w) // Ollama's own "model 'x' not found"
	}
}

// pushFromFirstHaving serves POST /api/push from the first target that has
// the model.
func (s *Server) pushFromFirstHaving(w http.ResponseWriter, r *http.Request, ts []target) {
	b, ok := s.body(w, r)
	if !ok {
		return
	}
	defer b.release()
	replay(r, b.data)
	var req modelRequest
	_ = json.Unmarshal(b.data, &req)
	var up *target
	for _, t := range ts {
		has, err := s.has(r.Context(), t, r, req.model())
		if err != nil {
			s.skipped(t, r, err)
			continue
		}
		if has {
			s.proxy.ServeHTTP(w, withTarget(r, t))
			return
		}
		if up == nil {
			up = &t
		}
	}
	if up == nil {
		up = &ts[0]
	}
	s.proxy.ServeHTTP(w, withTarget(r, *up)) // Ollama says what it says of a model it lacks
}

// has reports whether t's /api/tags lists model.
func (s *Server) has(ctx context.Context, t target, r *http.Request, model string) (bool, error) {
	get, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/api/tags", nil)
	get.Header = r.Header.Clone()
	get.Header.Del("Content-Type")
	a, err := s.ask(ctx, t, get, nil, true)
	if err != nil {
		return false, err
	}
	if a.status != http.StatusOK {
		return false, fmt.Errorf("/api/tags answered %d: %s", a.status, errorText(a.body))
	}
	var tags struct {
		Models []listedModel `json:"models"`
	}
	if err := json.Unmarshal(a.body, &tags); err != nil {
		return false, fmt.Errorf("/api/tags: %w", err)
	}
	return model != "" && slices.ContainsFunc(tags.Models, func(m listedModel) bool {
		return ollama.SameModel(cmp.Or(m.Name, m.Model), model)
	}), nil
}

// firstHaving serves POST /api/show and GET /v1/models/{model}: the first
// target's answer that is not a 404 or a failure of the target; else the
// first failure, else the first 404.
func (s *Server) firstHaving(w http.ResponseWriter, r *http.Request, ts []target) {
	var data []byte
	if r.Method == http.MethodPost {
		b, ok := s.body(w, r)
		if !ok {
			return
		}
		defer b.release()
		data = b.data
	}
	var down unreachable
	var notFound, broken *answer
	for _, t := range ts {
		a, err := s.ask(r.Context(), t, r, data, true)
		switch {
		case r.Context().Err() != nil:
			return
		case err != nil:
			s.skipped(t, r, err)
			down = append(down, failure{t: t, err: err})
		case a.status == http.StatusNotFound:
			notFound = cmp.Or(notFound, &a)
		case a.status >= http.StatusInternalServerError:
			s.skipped(t, r, fmt.Sprintf("%d %s", a.status, errorText(a.body)))
			broken = cmp.Or(broken, &a)
		default:
			a.write(w)
			return
		}
	}
	switch {
	case broken != nil:
		broken.write(w)
	case notFound != nil:
		notFound.write(w)
	default:
		writeError(w, r, errorf(http.StatusBadGateway, "%s", down.Error()))
	}
}

// firstUp serves GET /api/version (and HEAD of the reads): the first
// target that answers.
func (s *Server) firstUp(w http.ResponseWriter, r *http.Request, ts []target) {
	var down unreachable
	for _, t := range ts {
		a, err := s.ask(r.Context(), t, r, nil, true)
		if r.Context().Err() != nil {
			return
		}
		if err != nil {
			s.skipped(t, r, err)
			down = append(down, failure{t: t, err: err})
			continue
		}
		a.write(w)
		return
	}
	writeError(w, r, errorf(http.StatusBadGateway, "%s", down.Error()))
}

// union serves GET /api/tags, /api/ps and /v1/models: every target that is
// up is asked at once and their lists are merged.
func (s *Server) union(w http.ResponseWriter, r *http.Request, ts []target) {
	type reply struct {
		a   answer
		err error
	}
	replies := make([]reply, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() {
			a, err := s.ask(r.Context(), t, r, nil, true)
			replies[i] = reply{a, err}
		})
	}
	wg.Wait()
	if r.Context().Err() != nil {
		return
	}
	var (
		ok, other []answer
		down      unreachable
	)
	for i, rp := range replies {
		switch {
		case rp.err != nil:
			s.skipped(ts[i], r, rp.err)
			down = append(down, failure{t: ts[i], err: rp.err})
		case rp.a.status != http.StatusOK:
			s.skipped(ts[i], r, fmt.Sprintf("%d %s", rp.a.status, errorText(rp.a.body)))
			other = append(other, rp.a)
		default:
			ok = append(ok, rp.a)
		}
	}
	switch {
	case len(ok) == 0 && len(other) > 0:
		other[0].write(w)
		return
	case len(ok) == 0:
		writeError(w, r, errorf(http.StatusBadGateway, "%s", down.Error()))
		return
	case len(ok) == 1:
		ok[0].write(w)
		return
	}
	bodies := make([][]byte, len(ok))
	for i, a := range ok {
		bodies[i] = a.body
	}
	var merged []byte
	var err error
	switch r.URL.Path {
	case "/api/tags":
		merged, err = mergeModels(bodies, true)
	case "/api/ps":
		merged, err = mergeModels(bodies, false)
	default:
		merged, err = mergeOpenAIModels(bodies)
	}
	if err != nil {
		s.log.Warn("cannot merge the targets' lists; answering the first's", "path", r.URL.Path, "err", err)
		ok[0].write(w)
		return
	}
	writeJSON(w, http.StatusOK, merged)
}

// listedModel is what merging reads of an entry of /api/tags or /api/ps;
// the entry itself is passed on as the target wrote it.
type listedModel struct {
	Name       string    `json:"name"`
	Model      string    `json:"model"`
	ModifiedAt time.Time `json:"modified_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// mergeModels merges {"models": [...]} lists: /api/tags (tags: one entry
// per model name, most recently modified first) or /api/ps (every loaded
// model, the longest remaining first), as Ollama sorts them.
func mergeModels(bodies [][]byte, tags bool) ([]byte, error) {
	type modelList struct {
		Models []json.RawMessage `json:"models"`
	}
	var name func(listedModel) string // nil for /api/ps: every entry is kept
	newest := func(m listedModel) int64 { return m.ExpiresAt.Unix() }
	if tags {
		name = func(m listedModel) string { return cmp.Or(m.Name, m.Model) }
		newest = func(m listedModel) int64 { return m.ModifiedAt.Unix() }
	}
	all, err := mergeEntries(bodies, func(l modelList) []json.RawMessage { return l.Models }, name, newest)
	if err != nil {
		return nil, err
	}
	return json.Marshal(modelList{Models: append([]json.RawMessage{}, all...)})
}

// mergeOpenAIModels merges /v1/models lists: one entry per model ID, the
// newest first; "data" is null when there is none, as Ollama writes it.
func mergeOpenAIModels(bodies [][]byte) ([]byte, error) {
	type modelList struct {
		Data []json.RawMessage `json:"data"`
	}
	type model struct {
		ID      string `json:"id"`
		Created int64  `json:"created"`
	}
	all, err := mergeEntries(bodies, func(l modelList) []json.RawMessage { return l.Data },
		func(m model) string { return m.ID }, func(m model) int64 { return m.Created })
	if err != nil {
		return nil, err
	}
	return json.Marshal(struct {
		Object string            `json:"object"`
		Data   []json.RawMessage `json:"data"`
	}{"list", all})
}

// mergeEntries gathers the entries of the lists in bodies, each body read
// as an L whose entries are what entries returns, and each entry read as
// an M (a field of another shape leaves its zero value). With name, only
// the first entry of each model name is kept. The entries come out newest
// first by newest, in their order among equals; nil when there are none.
func mergeEntries[L, M any](bodies [][]byte, entries func(L) []json.RawMessage, name func(M) string, newest func(M) int64) ([]json.RawMessage, error) {
	type entry struct {
		raw json.RawMessage
		at  int64
	}
	seen := map[string]bool{}
	var all []entry
	for _, body := range bodies {
		var list L
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, err
		}
		for _, raw := range entries(list) {
			var m M
			_ = json.Unmarshal(raw, &m) // a field of another shape: kept, unsorted
			if name != nil {
				key := ollama.NormalizeModel(name(m))
				if seen[key] {
					continue
				}
				seen[key] = true
			}
			all = append(all, entry{raw, newest(m)})
		}
	}
	slices.SortStableFunc(all, func(a, b entry) int { return cmp.Compare(b.at, a.at) })
	var out []json.RawMessage
	for _, e := range all {
		out = append(out, e.raw)
	}
	return out, nil
}

// blobFan is the proxy's transport. It sends HEAD and POST /api/blobs/
// to every target when there are several (see blobs); everything else goes
// to the one target the proxy chose.
type blobFan struct {
	s     *Server
	base  http.RoundTripper
	first target // where the proxy sends blobs
}

func (f *blobFan) RoundTrip(req *http.Request) (*http.Response, error) {
	ts := f.s.targets()
	rel, isBlob := strings.CutPrefix(req.URL.Path, f.first.url.Path)
	if len(ts) < 2 || !isBlob || !strings.HasPrefix(rel, "/api/blobs/") {
		return f.base.RoundTrip(req)
	}
	return f.blobs(req, ts, rel)
}

// blobs sends a blob request to every target at once, a POST's body
// streamed to all as it arrives (a target that answers before reading it
// all, as Ollama does when it has the blob, or fails, stops getting it).
// Targets that cannot be reached are left out; of the others the first
// error is the answer, else a 201 if any target stored the blob, else 200.
func (f *blobFan) blobs(req *http.Request, ts []target, rel string) (*http.Response, error) {
	type reply struct {
		resp *http.Response
		err  error
	}
	replies := make([]reply, len(ts))
	pipes := make([]*io.PipeWriter, 0, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		out := req.Clone(req.Context())
		u := *t.url
		u.Path = t.url.Path + rel
		u.RawPath = ""
		out.URL, out.Host = &u, ""
		out.GetBody = nil
		var pr *io.PipeReader
		if req.Body != nil && req.Body != http.NoBody {
			var pw *io.PipeWriter
			pr, pw = io.Pipe()
			pipes = append(pipes, pw)
			out.Body = pr
		}
		wg.Go(func() {
			resp, err := f.base.RoundTrip(out)
			replies[i] = reply{resp, err}
			if pr != nil {
				pr.CloseWithError(errAnswered) // what it has not read, it will not
			}
		})
	}
	if len(pipes) > 0 {
		_, err := io.Copy(fanWriter(slices.Clone(pipes)), req.Body)
		for _, pw := range pipes {
			pw.CloseWithError(err) // nil: EOF
		}
	}
	wg.Wait()
	var down unreachable
	chosen, refused, created := -1, -1, -1
	for i, rp := range replies {
		switch {
		case rp.err != nil:
			if req.Context().Err() == nil {
				f.s.skipped(ts[i], req, rp.err)
			}
			down = append(down, failure{t: ts[i], err: rp.err})
		case rp.resp.StatusCode >= http.StatusBadRequest && refused < 0:
			refused = i
			f.s.log.Warn("blob refused by a target", "target", ts[i].label(), "status", rp.resp.StatusCode, "path", rel)
		case rp.resp.StatusCode == http.StatusCreated && created < 0:
			created = i
		case chosen < 0:
			chosen = i
		}
	}
	switch {
	case refused >= 0:
		chosen = refused
	case created >= 0:
		chosen = created
	}
	for i, rp := range replies {
		if rp.resp != nil && i != chosen {
			rp.resp.Body.Close()
		}
	}
	if chosen < 0 {
		return nil, down
	}
	return replies[chosen].resp, nil
}

// errAnswered stops the copy of a blob to a target that has answered.
var errAnswered = errors.New("the target has answered")

// fanWriter writes to every pipe still read; it fails only when none is.
type fanWriter []*io.PipeWriter

func (fw fanWriter) Write(p []byte) (int, error) {
	live := 0
	for i, pw := range fw {
		if pw == nil {
			continue
		}
		if _, err := pw.Write(p); err != nil {
			fw[i] = nil
			continue
		}
		live++
	}
	if live == 0 {
		return 0, errAnswered
	}
	return len(p), nil
}
