//go:build !unix

package realollama

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

// signalGroup kills the server process; without process groups its runners
// may outlive it.
func signalGroup(cmd *exec.Cmd, _ bool) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
