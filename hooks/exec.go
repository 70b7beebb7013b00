package hooks

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
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

// runExec runs queued hooks one at a time until ctx ends.
func (h *Hooks) runExec(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			if n := len(h.exec); n > 0 {
				h.log.Warn("stopping: queued exec hooks will not run", "count", n)
			}
			return
		case j := <-h.exec:
			if ctx.Err() == nil {
				h.runHook(ctx, j)
			}
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
	spoolDir := h.cfg.Spool.Path()
	cmd.Env = append(os.Environ(),
		"HOPPER_JOB_ID="+j.ev.ID,
		"HOPPER_STATE="+string(j.ev.State),
		"HOPPER_EVENT="+j.ev.Type,
		"HOPPER_SPOOL="+spoolDir,
		"HOPPER_RECORD="+recordPath(spoolDir, j.ev),
	)
	stdout := &logWriter{log: log, stream: "stdout"}
	stderr := &logWriter{log: log, stream: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = waitDelay
	ownGroup(cmd)

	start := h.now()
	err = cmd.Run()
	stdout.flush()
	stderr.flush()
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

// logWriter logs a hook's output line by line.
type logWriter struct {
	log    *slog.Logger
	stream string
	buf    []byte
}

// maxLogLine splits longer lines.
const maxLogLine = 4096

func (w *logWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 && len(w.buf) < maxLogLine {
			return len(p), nil
		}
		if i < 0 || i > maxLogLine {
			i = maxLogLine
			w.emit(w.buf[:i])
			w.buf = w.buf[i:]
			continue
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *logWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *logWriter) emit(line []byte) {
	w.log.Info("hook output", "stream", w.stream, "line", string(bytes.TrimRight(line, "\r")))
}
