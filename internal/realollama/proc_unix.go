//go:build unix

package realollama

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the server in a process group of its own, which the
// runners it spawns inherit, so cleanup can stop all of them and nothing else.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends SIGTERM (or SIGKILL if kill) to the server's process
// group. The group id is the server's pid, fixed when it started.
func signalGroup(cmd *exec.Cmd, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	if cmd.Process != nil && cmd.Process.Pid > 0 {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}
