package spool

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"sync"
	"time"
)

var (
	idPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	linePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}~[0-9]{6,20}$`)
)

// LineSep separates a batch's name from a line's number in the ID of the
// job the line becomes (tickets~000042). It is reserved: no name a person
// gives a job or a batch may hold it, so no job is ever taken for a batch
// line because of its name, and a file dropped under a line's name that
// hopper did not write as that line is quarantined (Claim).
const LineSep = '~'

// ValidID reports whether id may name a job: a letter or digit, then up to
// 127 letters, digits, dots, underscores or hyphens; or a batch line's ID,
// NAME~NNNNNN, which only hopper gives (PlainID).
func ValidID(id string) bool { return idPattern.MatchString(id) || linePattern.MatchString(id) }

// PlainID reports whether id may name a job a person submits or drops: a
// valid ID without the reserved LineSep.
func PlainID(id string) bool { return idPattern.MatchString(id) }

// idGen makes IDs like 20261127T231005.123456Z-7f3a9c: UTC time to the
// microsecond, then 24 random bits. Within one process they strictly
// increase; across processes the random part keeps them apart.
type idGen struct {
	mu   sync.Mutex
	now  func() time.Time
	last time.Time
}

func newIDGen(now func() time.Time) *idGen { return &idGen{now: now} }

func (g *idGen) next() string {
	g.mu.Lock()
	t := g.now().UTC().Truncate(time.Microsecond)
	if !t.After(g.last) {
		t = g.last.Add(time.Microsecond)
	}
	g.last = t
	g.mu.Unlock()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return t.Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b[:])
}

// NewID returns a fresh job ID.
func (s *Spool) NewID() string { return s.ids.next() }

// uniqueName derives a fresh ID from a name already in use, keeping it
// readable: daily → daily.20261127T231005.123456Z-7f3a9c.
func (s *Spool) uniqueName(stem string) string {
	id := s.ids.next()
	max := 128 - len(id) - 1
	if len(stem) > max {
		stem = strings.TrimRight(stem[:max], ".")
	}
	// A line's name set aside stops being a line's name.
	return strings.ReplaceAll(stem, string(LineSep), ".") + "." + id
}

// genSuffix matches the ".ID" uniqueName appends.
var genSuffix = regexp.MustCompile(`^(.+)\.\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$`)

// sourceOf is the file name a job renamed by uniqueName at claim arrived
// under ("daily.json" for daily.20261127T231005.123456Z-7f3a9c), or "".
// Recovery uses it when a crash came between the claim and the first
// record that says so.
func sourceOf(id string) string {
	if m := genSuffix.FindStringSubmatch(id); m != nil {
		return m[1] + ".json"
	}
	return ""
}
