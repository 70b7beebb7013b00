//go:build linux || openbsd

package spool

import (
	"syscall"
	"time"
)

func statCtime(sys any) (time.Time, bool) {
	st, ok := sys.(*syscall.Stat_t)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(int64(st.Ctim.Sec), int64(st.Ctim.Nsec)), true
}
