package dashboard

import (
	"html/template"
	"strings"
	"time"

	"github.com/hopper-dev/hopper/internal/human"
)

// jobTable is one list of jobs as the page's "listed" and "jobs" templates
// draw it.
type jobTable struct {
	Kind  string // queued, held, deferred, failures
	Title string // its section's heading
	List  JobList
	Now   time.Time
}

// funcs are the page template's helpers. The script formats the same
// way (app.js: span, label).
func (h *Handler) funcs() template.FuncMap {
	return template.FuncMap{
		"table": func(kind, title string, l JobList, now time.Time) jobTable {
			return jobTable{kind, title, l, now}
		},
		"ago": func(now time.Time, t any) string {
			at, ok := timeOf(t)
			if !ok {
				return ""
			}
			if d := now.Sub(at); d > -time.Second && d < time.Second {
				return "just now"
			} else if d > 0 {
				return human.Fine(d) + " ago"
			}
			return "in " + human.Fine(at.Sub(now))
		},
		"dur": func(now time.Time, t any) string {
			at, ok := timeOf(t)
			if !ok {
				return ""
			}
			return human.Fine(max(now.Sub(at), 0))
		},
		"secs": func(s *float64) string { return human.Fine(time.Duration(*s * float64(time.Second))) },
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
