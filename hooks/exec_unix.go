//go:build unix

package hooks

import (
	"os/exec"
	"syscall"
)

// ownGroup runs the hook in a process group of its own and makes a timeout
// kill the whole group, so a hook's children die with it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// platformEnv names what hooks get of hopper's environment besides passEnv:
// nothing more on Unix.
var platformEnv []string
