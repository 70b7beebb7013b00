package human

import (
	"fmt"
	"time"
)

// Duration writes d in whole seconds under a minute, minutes under an hour,
// hours under two days and days beyond: 12s, 4m, 3h, 2d.
func Duration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// Fine is Duration, but a span under a second is in milliseconds: 850ms.
func Fine(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return Duration(d)
}
