package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/spool"
)

// execJob is an exec hook waiting to run: the event and its JSON.
type execJob struct {
	ev   Event
	data []byte
}

// waitDelay is how long a hook's output may stay open after it exited or
// was killed (a background child holding it) before hopper stops reading.
const waitDelay = time.Second

// queueExec queues the hook for ev without waiting; a full queue drops it.
func (h *Hooks) queueExec(ev Event, data []byte) {
	if h.dir == "" {
		return
	}
	select {
	case h.exec <- execJob{ev: ev, data: data}:
	default:
		h.log.Warn("too many exec hooks waiting; this one is skipped", "hook", ev.State, "job", ev.ID, "event", ev.Type)
	}
}

// runExec runs queued hooks one at a time until ctx ends; then the hooks
// queued by then may still run within ShutdownGrace, after which the one
// running is killed and the rest are skipped.
func (h *Hooks) runExec(ctx context.Context) {
	hookCtx, kill := context.WithCancel(context.WithoutCancel(ctx))
	defer kill()
	stop := context.AfterFunc(ctx, func() {
		if h.cfg.ShutdownGrace <= 0 {
			kill()
			return
		}
		time.AfterFunc(h.cfg.ShutdownGrace, kill)
	})
	defer stop()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case j := <-h.exec:
					if hookCtx.Err() != nil {
						h.log.Warn("stopping: queued exec hooks will not run", "count", len(h.exec)+1)
						return
					}
					h.runHook(hookCtx, j)
				default:
					return
				}
			}
		case j := <-h.exec:
			h.runHook(hookCtx, j)
		}
	}
}

// runHook runs Dir/STATE for one event, if it is an executable file; a
// batch's event runs Dir/batch.done.
func (h *Hooks) runHook(ctx context.Context, j execJob) {
	name := string(j.ev.State)
	if j.ev.Type == TypeBatchDone {
		name = TypeBatchDone
	}
	log := h.log.With("hook", name, "job", j.ev.ID, "event", j.ev.Type)
	if name == "" || name != filepath.Base(name) || strings.HasPrefix(name, ".") {
		log.Debug("no hook for this state")
		return
	}
	path := filepath.Join(h.dir, name)
	fi, err := os.Stat(path)
	if err != nil {
		log.Debug("no hook", "path", path, "err", err)
		return
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		log.Debug("hook is not an executable file; skipped", "path", path)
		return
	}

	hctx, cancel := context.WithTimeout(ctx, h.cfg.ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, path)
	cmd.Stdin = bytes.NewReader(j.data)
	cmd.Env = h.hookEnv(j.ev)
	var stdout, stderr headTail
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = waitDelay
	ownGroup(cmd)

	start := h.now()
	err = cmd.Run()
	logOutput(log, "stdout", &stdout)
	logOutput(log, "stderr", &stderr)
	took := h.now().Sub(start)
	switch {
	case ctx.Err() != nil:
		log.Warn("hook killed: hopper is stopping", "took", took)
	case hctx.Err() != nil:
		log.Warn("hook killed with its process group: it ran longer than the exec timeout", "timeout", h.cfg.ExecTimeout)
	case errors.Is(err, exec.ErrWaitDelay):
		log.Warn("hook exited but left a process holding its output", "took", took)
	case err != nil:
		log.Warn("hook failed", "err", err, "took", took)
	default:
		log.Info("hook ran", "took", took)
	}
}

// hookEnv is an exec hook's environment: the variables of hopper's own
// environment that hooks may see (passEnv, LC_*, Config.Env), then the
// event's. Nothing else is passed on: hopper's environment holds its
// settings, its tokens and its webhook secret.
func (h *Hooks) hookEnv(ev Event) []string {
	var env []string
	for _, name := range slices.Concat(passEnv, platformEnv, h.cfg.Env) {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LC_") {
			env = append(env, kv)
		}
	}
	spoolDir := h.cfg.Spool.Path()
	return append(env,
		"HOPPER_JOB_ID="+ev.ID,
		"HOPPER_STATE="+string(ev.State),
		"HOPPER_EVENT="+ev.Type,
		"HOPPER_SPOOL="+spoolDir,
		"HOPPER_RECORD="+recordPath(spoolDir, ev),
	)
}

// passEnv names the variables of hopper's environment that every hook gets
// when they are set, with every LC_* variable.
var passEnv = []string{"PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "TMPDIR"}

// recordPath is where the event's record was when it fired.
func recordPath(spoolDir string, ev Event) string {
	var dir string
	switch {
	case ev.Type == TypeBatchDone:
		dir = spool.DirBatches
	case ev.State == spool.StateQueued:
		dir = spool.DirNew
	case ev.State == spool.StateLoading, ev.State == spool.StateWorking:
		dir = spool.DirCur
	case ev.State == spool.StateDeferred:
		dir = spool.DirDeferred
	case ev.State == spool.StateHeld:
		dir = spool.DirHold
	case ev.State == spool.StateDone:
		dir = spool.DirDone
	case ev.State == spool.StateFailed:
		dir = spool.DirFailed
	default:
		return ""
	}
	return filepath.Join(spoolDir, dir, ev.ID+".json")
}

// outputKeep is how much of the start and of the end of a hook's stdout
// and of its stderr is logged.
const outputKeep = 4 << 10

// headTail keeps the first and the last outputKeep bytes written to it and
// counts the others, so that a hook may write without end and cost hopper
// only the reading.
type headTail struct {
	head  []byte
	tail  []byte // a ring once it holds outputKeep bytes
	start int    // the ring's oldest byte
	total int
}

func (w *headTail) Write(p []byte) (int, error) {
	n := len(p)
	w.total += n
	if k := min(len(p), outputKeep-len(w.head)); k > 0 {
		w.head = append(w.head, p[:k]...)
		p = p[k:]
	}
	if len(p) >= outputKeep {
		w.tail, w.start = append(w.tail[:0], p[len(p)-outputKeep:]...), 0
		return n, nil
	}
	for len(p) > 0 {
		if len(w.tail) < outputKeep {
			k := min(len(p), outputKeep-len(w.tail))
			w.tail, p = append(w.tail, p[:k]...), p[k:]
			continue
		}
		k := copy(w.tail[w.start:], p)
		w.start, p = (w.start+k)%outputKeep, p[k:]
	}
	return n, nil
}

// parts returns the head, how many bytes were dropped after it, and the
// tail, in the order they were written.
func (w *headTail) parts() (head []byte, omitted int, tail []byte) {
	tail = append(slices.Clone(w.tail[w.start:]), w.tail[:w.start]...)
	return w.head, w.total - len(w.head) - len(tail), tail
}

// omittedLine stands in the log for the output dropped between the head and
// the tail.
func omittedLine(n int) string {
	if n == 1 {
		return "… 1 byte omitted …"
	}
	return fmt.Sprintf("… %d bytes omitted …", n)
}

// logOutput logs what w kept of a hook's output, line by line.
func logOutput(log *slog.Logger, stream string, w *headTail) {
	head, omitted, tail := w.parts()
	if omitted == 0 {
		logLines(log, stream, append(head, tail...))
		return
	}
	logLines(log, stream, head)
	log.Info("hook output", "stream", stream, "line", omittedLine(omitted))
	logLines(log, stream, tail)
}

// maxLogLine splits longer lines.
const maxLogLine = 4096

func logLines(log *slog.Logger, stream string, b []byte) {
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		if len(line) > maxLogLine {
			line, rest = line[:maxLogLine], b[maxLogLine:]
		}
		log.Info("hook output", "stream", stream, "line", string(bytes.TrimRight(line, "\r")))
		b = rest
	}
}
