package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// jobTable is one list of jobs as the page's "jobs" template draws it.
type jobTable struct {
	Kind string // queued, held, deferred, failures
	List JobList
	Now  time.Time
}

// funcs are the page template's helpers. The script formats the same
// way (app.js: span, label).
func (h *Handler) funcs() template.FuncMap {
	return template.FuncMap{
		"table": func(kind string, l JobList, now time.Time) jobTable { return jobTable{kind, l, now} },
		"ago": func(now time.Time, t any) string {
			at, ok := timeOf(t)
			if !ok {
				return ""
			}
			if d := now.Sub(at); d > -time.Second && d < time.Second {
				return "just now"
			} else if d > 0 {
				return span(d) + " ago"
			}
			return "in " + span(at.Sub(now))
		},
		"dur": func(now time.Time, t any) string {
			at, ok := timeOf(t)
			if !ok {
				return ""
			}
			return span(max(now.Sub(at), 0))
		},
		"secs": func(s *float64) string { return span(time.Duration(*s * float64(time.Second))) },
		"inc":  func(p *int) int { return *p + 1 },
		"join": func(s []string) string { return strings.Join(s, ", ") },
		"label": func(action string) string {
			if action == "" {
				return ""
			}
			return strings.ToUpper(action[:1]) + action[1:]
		},
	}
}

func timeOf(t any) (time.Time, bool) {
	switch t := t.(type) {
	case time.Time:
		return t, !t.IsZero()
	case *time.Time:
		if t == nil {
			return time.Time{}, false
		}
		return *t, !t.IsZero()
	}
	return time.Time{}, false
}

// span writes a duration the way a person glances at it: 850ms, 12s, 4m,
// 3h, 2d.
func span(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
