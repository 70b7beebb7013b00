//go:build !unix

package hooks

import "os/exec"

// ownGroup leaves the hook as it is: without process groups a timeout kills
// the hook process only.
func ownGroup(*exec.Cmd) {}

// platformEnv names what hooks get of hopper's environment besides passEnv:
// on Windows, what programs need to start and to find their temporary
// directory.
var platformEnv = []string{"SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT", "USERPROFILE", "TEMP", "TMP"}
