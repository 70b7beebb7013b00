package httpfront

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"syscall"
	"testing"
)

// A full disk is named as such, with a status to match; the path and the
// system's words go to the log only.
func TestStorageErrorNamesTheConditionNotThePath(t *testing.T) {
	var logged bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logged, nil))}
	path := "/var/spool/hopper/tmp/.20261127T231005.123456Z-7f3a9c.json.20261127T231005.123470Z-0b1c2d"
	pathErr := func(errno syscall.Errno) error {
		return fmt.Errorf("submit: %w", &fs.PathError{Op: "open", Path: path, Err: errno})
	}
	tests := []struct {
		err    error
		status int
		says   string
	}{
		{pathErr(syscall.ENOSPC), 507, "cannot submit the job: the spool's disk is full"},
		{pathErr(syscall.EDQUOT), 507, "the spool's disk is full"},
		{pathErr(syscall.EROFS), 500, "read-only"},
		{pathErr(syscall.EACCES), 500, "may not read or write"},
		{pathErr(syscall.EMFILE), 503, "too many files open"},
		{pathErr(syscall.EIO), 500, "hopper's log says why"},
	}
	for _, tt := range tests {
		logged.Reset()
		e := s.storageError("submit the job", tt.err)
		if e.status != tt.status || !strings.Contains(e.msg, tt.says) {
			t.Errorf("%v: got %d %q, want %d saying %q", tt.err, e.status, e.msg, tt.status, tt.says)
		}
		if strings.Contains(e.msg, "/var/spool") || strings.Contains(e.msg, tt.err.(interface{ Unwrap() error }).Unwrap().Error()) {
			t.Errorf("%v: the answer %q shows the path or the system's words", tt.err, e.msg)
		}
		if !strings.Contains(logged.String(), path) {
			t.Errorf("%v: the log %q lacks the full error", tt.err, logged.String())
		}
	}
}
