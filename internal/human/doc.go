// Package human writes durations the way a person glances at them: 12s,
// 4m, 3h, 2d.
package human
