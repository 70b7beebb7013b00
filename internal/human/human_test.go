package human

import (
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		d          time.Duration
		want, fine string
	}{
		{850 * time.Millisecond, "0s", "850ms"},
		{12 * time.Second, "12s", "12s"},
		{4 * time.Minute, "4m", "4m"},
		{3 * time.Hour, "3h", "3h"},
		{47 * time.Hour, "47h", "47h"},
		{50 * time.Hour, "2d", "2d"},
	} {
		if got := Duration(tt.d); got != tt.want {
			t.Errorf("Duration(%s): got %s, want %s", tt.d, got, tt.want)
		}
		if got := Fine(tt.d); got != tt.fine {
			t.Errorf("Fine(%s): got %s, want %s", tt.d, got, tt.fine)
		}
	}
}
