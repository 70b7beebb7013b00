package main

import (
	"net"
)

// sdNotify sends a state ("READY=1", "STOPPING=1", "RELOADING=1") to
// systemd when it started hopper with Type=notify; otherwise it does
// nothing. Errors are ignored: readiness notification is best effort.
func sdNotify(env []string, state string) {
	sock := getenv(env, "NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if sock[0] == '@' {
		sock = "\x00" + sock[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(state))
}
