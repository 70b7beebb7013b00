package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"
)

// SubmitOptions adjust one submit.
type SubmitOptions struct {
	// ID names the job; empty generates one.
	ID string
	// Origin, when set, is written into the job as its "origin" field,
	// replacing any the job gives (the HTTP front sets OriginHTTP).
	Origin string
	// Volatile skips fsync even when the spool fsyncs: for callers that
	// wait on a connection anyway (the HTTP drop-in).
	Volatile bool
	// Waited marks a job whose submitter waits for the answer on a
	// connection (the drop-in): "waited": the ID of the front process
	// holding it (HoldFront). Once that process is gone nobody is left to
	// read the answer, so the runner fails the job as canceled instead of
	// running it (again) — unless it has an idempotency_key or a webhook,
	// which outlive the connection.
	Waited string
}

// Submit checks a job and queues it: written in tmp/, fsynced, renamed to
// new/ID.json, new/ fsynced. Bad input is refused with a *BadInputError and
// nothing is written. It returns the job's ID.
func (s *Spool) Submit(data []byte, o SubmitOptions) (string, error) {
	j, err := ParseJob(data, s.opts.MaxJobSize)
	if err != nil {
		return "", err
	}
	set := map[string]any{}
	if o.Origin != "" && j.Origin != o.Origin {
		set["origin"] = o.Origin
	}
	if o.Waited != j.Waited {
		set["waited"] = o.Waited
	}
	if o.Waited == "" && j.Waited != "" {
		set["waited"] = nil // only a front says so
	}
	if len(set) > 0 {
		if data, err = setFields(data, set); err != nil {
			return "", err
		}
		// The runner checks the size of what is written, not of what came.
		if int64(len(data)) > s.opts.MaxJobSize {
			return "", badInput("the job is %d bytes with hopper's fields, over the limit of %d bytes (max_job_size)", len(data), s.opts.MaxJobSize)
		}
	}
	id := o.ID
	if id == "" {
		id = s.NewID()
	} else if !ValidID(id) {
		return "", badInput("invalid job ID %q: use letters, digits, '.', '_' and '-' (at most 128, starting with a letter or digit)", id)
	} else if dir, err := s.Find(id); err == nil {
		// Claim would give it another ID, and the caller would find
		// the old job under this one.
		return "", fmt.Errorf("submit %s: a job with that ID already exists in %s/", id, dir)
	}
	if err := s.writeFile(DirNew, id+".json", data, s.opts.Fsync && !o.Volatile, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("submit %s: a job with that ID is already queued", id)
		}
		return "", fmt.Errorf("submit: %w", err)
	}
	return id, nil
}

// dirStates lists where a job can be, in the order Find looks.
var dirStates = []struct {
	dir   string
	state State
}{
	{DirCur, StateWorking}, {DirNew, StateQueued}, {DirDeferred, StateDeferred},
	{DirHold, StateHeld}, {DirDone, StateDone}, {DirFailed, StateFailed},
}

// Find returns the directory holding job id, or an error wrapping
// ErrNotFound.
func (s *Spool) Find(id string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("%q is not a job ID: %w", id, ErrNotFound)
	}
	// A job moving while we look (new→cur as a runner claims it,
	// failed→new on retry) can slip between two lookups: look again
	// before saying it does not exist.
	for range 3 {
		for _, d := range dirStates {
			if s.exists(d.dir, id+".json") {
				return d.dir, nil
			}
		}
	}
	return "", fmt.Errorf("job %s: %w", id, ErrNotFound)
}

// Get returns job id's record. A job still in new/ or hold/ has no record
// yet: Get describes it as one (queued or held), from the file.
func (s *Spool) Get(id string) (*Record, error) {
	dir, err := s.Find(id)
	if err != nil {
		return nil, err
	}
	return s.recordAt(dir, id+".json")
}

// recordAt reads dir/name as a record, describing a job file as one.
func (s *Spool) recordAt(dir, name string) (*Record, error) {
	state := StateQueued
	if dir == DirHold {
		state = StateHeld
	}
	if dir != DirNew && dir != DirHold {
		r, err := s.readRecord(dir, name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("job %s: %w", strings.TrimSuffix(name, ".json"), ErrGone)
		}
		if err == nil && dir == DirCur {
			s.AttemptMarked(r)
		}
		if err == nil || dir != DirCur {
			return r, err
		}
		// Claimed a moment ago: cur/ID.json is still the job file
		// until the runner's first Update. Describe it as Claim does.
	}
	fi, err := s.root.Lstat(dir + "/" + name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("job %s: %w", strings.TrimSuffix(name, ".json"), ErrGone)
		}
		return nil, err
	}
	r := &Record{ID: strings.TrimSuffix(name, ".json"), State: state, SubmittedAt: ctime(fi)}
	data, tooBig, regular, err := s.readJobFile(dir, name)
	if err == nil && !regular {
		r.Error = &JobError{Kind: KindBadInput, Message: fmt.Sprintf("%s/%s is not a regular file (a symlink, FIFO or directory): hopper ignores it and never runs it", dir, name)}
		return r, nil
	}
	if err != nil || tooBig {
		return r, nil
	}
	if isRecord(trimBOM(data)) {
		if old, err := ParseRecord(trimBOM(data)); err == nil {
			old.ID, old.State = r.ID, state
			if dir == DirCur && !s.AttemptMarked(old) {
				old.State = StateLoading
			}
			return old, nil
		}
	}
	if json.Valid(trimBOM(data)) {
		r.Job = json.RawMessage(trimBOM(data))
	}
	j, err := ParseJob(data, s.opts.MaxJobSize)
	if err == nil {
		fillFromJob(r, j)
	}
	if dir == DirCur && !s.AttemptMarked(r) {
		r.State = StateLoading // claimed: the runner is starting it
	}
	return r, nil
}

// List returns the records in the given states (all states when none),
// oldest first within each state.
func (s *Spool) List(states ...State) ([]*Record, error) {
	want := map[string]bool{}
	for _, st := range states {
		want[dirOf(st)] = true
	}
	var out []*Record
	for _, d := range dirStates {
		if len(want) > 0 && !want[d.dir] {
			continue
		}
		entries, err := fs.ReadDir(s.root.FS(), d.dir)
		if err != nil {
			return nil, fmt.Errorf("list %s/: %w", d.dir, err)
		}
		var recs []*Record
		for _, e := range entries {
			if !Candidate(e.Name()) || (d.dir != DirNew && !ValidID(strings.TrimSuffix(e.Name(), ".json"))) || !e.Type().IsRegular() {
				continue // not a job; symlinks, FIFOs and directories are ignored
			}
			r, err := s.recordAt(d.dir, e.Name())
			if err != nil {
				continue // moved on while we looked, or unreadable
			}
			recs = append(recs, r)
		}
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].SubmittedAt.Before(recs[j].SubmittedAt) })
		out = append(out, recs...)
	}
	return out, nil
}

// Cancel cancels job id. A queued, deferred or held job is moved to failed/
// as canceled at once. A running job gets a cancel request (cur/ID.cancel)
// that the runner acts on; Cancel returns with running set. A finished job
// cannot be canceled.
func (s *Spool) Cancel(id, reason string) (running bool, err error) {
	if reason == "" {
		reason = "canceled"
	}
	// The job may move while we look (a runner claims it, a person
	// releases it): look again a few times before giving up.
	for try := 0; ; try++ {
		running, err = s.cancel(id, reason)
		if !errors.Is(err, ErrGone) || try == 3 {
			return running, err
		}
	}
}

func (s *Spool) cancel(id, reason string) (running bool, err error) {
	dir, err := s.Find(id)
	if err != nil {
		return false, err
	}
	switch dir {
	case DirCur:
		f, err := s.root.OpenFile(DirCur+"/"+id+".cancel", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, s.opts.FileMode)
		if err != nil {
			return false, fmt.Errorf("cancel %s: %w", id, err)
		}
		_, werr := f.WriteString(reason + "\n")
		if err := errors.Join(werr, f.Close()); err != nil {
			return false, fmt.Errorf("cancel %s: %w", id, err)
		}
		if !s.exists(DirCur, id+".json") {
			// It finished while we wrote: take the request back and
			// look again.
			s.removeRunFiles(id)
			return false, fmt.Errorf("cancel %s: %w", id, ErrGone)
		}
		return true, nil
	case DirDone, DirFailed:
		return false, fmt.Errorf("cancel %s: the job already finished (%s)", id, strings.TrimSuffix(dir, "/"))
	}
	// Take it out of the queue with the same rename a runner claims with.
	var c *Claimed
	if dir == DirHold {
		c, err = s.claimHeld(id)
	} else {
		c, err = s.Claim(Entry{Dir: dir, Name: id + ".json"})
	}
	if err != nil {
		return false, fmt.Errorf("cancel %s: %w", id, err)
	}
	now := s.now()
	previous := stateOf(dir)
	c.Record.State = StateFailed
	c.Record.Error = &JobError{Kind: KindCanceled, Message: reason}
	c.Record.FinishedAt = &now
	var recorded func()
	if s.ended != nil {
		recorded = func() { s.ended(c.Record, previous) }
	}
	return false, s.FinishAnd(c.Record, recorded)
}

// stateOf is the state of a job waiting in dir.
func stateOf(dir string) State {
	for _, d := range dirStates {
		if d.dir == dir {
			return d.state
		}
	}
	return ""
}

func (s *Spool) claimHeld(id string) (*Claimed, error) {
	if err := s.move(DirHold, id+".json", DirCur, id+".json"); err != nil {
		return nil, err
	}
	return s.load(id, "", s.changeTime(DirCur, id+".json"), true)
}

// Retry queues failed job id again: its record moves back to new/ and runs
// as a new round, with the earlier rounds kept in its history.
func (s *Spool) Retry(id string) error {
	dir, err := s.Find(id)
	if err != nil {
		return err
	}
	if dir != DirFailed {
		return wrongState("retry %s: only failed jobs can be retried; this one is in %s/", id, dir)
	}
	r, err := s.readRecord(DirFailed, id+".json")
	if err != nil {
		return fmt.Errorf("retry %s: %w", id, err)
	}
	if len(r.Job) == 0 {
		why := "no JSON job"
		if r.Error != nil {
			why = r.Error.Message
		}
		return wrongState("retry %s: the job was not valid JSON (%s); fix it and submit it again", id, why)
	}
	if err := s.moveSync(DirFailed, id+".json", DirNew, id+".json"); err != nil {
		return fmt.Errorf("retry %s: %w", id, err)
	}
	return nil
}

// Hold parks a queued or deferred job in hold/, where it never runs and
// never expires. A job handed on to the cluster and still waiting there
// (in cur/, queued) gets a hold request (cur/ID.hold) that the runner acts
// on: it takes the job back from the cluster into hold/, unless a host has
// taken it up meanwhile.
func (s *Spool) Hold(id string) error {
	dir, err := s.Find(id)
	if err != nil {
		return err
	}
	if dir == DirCur {
		if r, err := s.recordAt(dir, id+".json"); err == nil && r.State == StateQueued && r.StartedAt != nil {
			return s.WriteFile(DirCur, id+".hold", []byte("hold\n"), false)
		}
	}
	if dir != DirNew && dir != DirDeferred {
		return wrongState("hold %s: only queued or deferred jobs can be held; this one is in %s/", id, dir)
	}
	if err := s.moveSync(dir, id+".json", DirHold, id+".json"); err != nil {
		return fmt.Errorf("hold %s: %w", id, err)
	}
	return nil
}

// Release queues a held job again.
func (s *Spool) Release(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("%q is not a job ID: %w", id, ErrNotFound)
	}
	if !s.exists(DirHold, id+".json") {
		if _, err := s.Find(id); err != nil {
			return err
		}
		return wrongState("release %s: the job is not held", id)
	}
	if err := s.moveSync(DirHold, id+".json", DirNew, id+".json"); err != nil {
		return fmt.Errorf("release %s: %w", id, err)
	}
	return nil
}

// Prune removes records in done/ and failed/ (as asked) last written before
// cutoff, with their .raw siblings, except those whose ID keep (if not nil)
// says to keep (batch.Store.Prune keeps its open batches' lines). It
// returns how many records it removed.
func (s *Spool) Prune(cutoff time.Time, keep func(id string) bool, states ...State) (int, error) {
	if len(states) == 0 {
		states = []State{StateDone, StateFailed}
	}
	n := 0
	for _, st := range states {
		if !st.Terminal() {
			return n, fmt.Errorf("prune: only done and failed records are pruned, not %s", st)
		}
	}
	for _, st := range states {
		dir := dirOf(st)
		entries, err := fs.ReadDir(s.root.FS(), dir)
		if err != nil {
			return n, fmt.Errorf("prune %s/: %w", dir, err)
		}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(cutoff) {
				continue
			}
			id, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok {
				// A .raw without a record: unless the record is still in
				// cur/ (bad input set aside, not yet failed), it is left
				// over from a crash.
				rec := strings.TrimSuffix(e.Name(), ".raw") + ".json"
				if strings.HasSuffix(e.Name(), ".raw") && !s.exists(dir, rec) && !s.exists(DirCur, rec) {
					_ = s.root.Remove(dir + "/" + e.Name())
				}
				continue
			}
			if keep != nil && keep(id) {
				continue
			}
			if err := s.root.Remove(dir + "/" + e.Name()); err == nil {
				n++
				_ = s.root.Remove(dir + "/" + id + ".raw")
			}
		}
	}
	return n, nil
}

// setFields sets hopper fields of a job ("origin", "waited"), keeping every
// other value's bytes.
func setFields(data []byte, set map[string]any) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimBOM(data), &obj); err != nil {
		return nil, jsonError(data, err)
	}
	for k, val := range set {
		v, _ := json.Marshal(val)
		obj[k] = v
	}
	return marshalObject(obj)
}
