//go:build !linux && !openbsd && !darwin && !freebsd && !netbsd && !dragonfly

package spool

import "time"

// statCtime has no change time to offer here; ctime falls back to the
// modification time.
func statCtime(any) (time.Time, bool) { return time.Time{}, false }
