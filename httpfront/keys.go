package httpfront

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hopper-dev/hopper/internal/jsonscan"
	"github.com/hopper-dev/hopper/spool"
)

// Idempotency keys (Stripe's semantics): a key and the hash of the request
// body it came with are kept for KeyTTL as one file per key in the spool's
// state directory .hopper/idempotency/, so they survive restarts and are
// shared by every front on the spool. A key is claimed by creating its
// complete file, which fails if another request claimed it first; the file
// names the front that claimed it, so a key whose front died before making
// what the key names is free again at once, not held for keyInFlight.
const (
	// KeyTTL is how long an idempotency key names its job.
	KeyTTL = 24 * time.Hour
	// MaxKeyLen is the longest Idempotency-Key accepted, as Stripe's.
	MaxKeyLen = 255
	// keyInFlight is how long a claimed key whose job does not exist yet
	// is taken to mean a request still being handled (while the front
	// that claimed it runs).
	keyInFlight = 30 * time.Second
	// keyDir is the keys' spool.StateDir.
	keyDir = "idempotency"
	// keyTempAge is how old a temporary file left by a crash must be to be
	// removed.
	keyTempAge = time.Hour
)

// keyEntry is the file kept for one idempotency key.
type keyEntry struct {
	Key       string    `json:"key"`
	ID        string    `json:"id"`
	BodyHash  string    `json:"body_sha256"`
	CreatedAt time.Time `json:"created_at"`
	// Front is the front that claimed the key (spool.HoldFront); empty in
	// keys claimed before fronts were named.
	Front string `json:"front,omitempty"`
}

// keyStore keeps idempotency keys in the spool's state directory.
type keyStore struct {
	sp    *spool.Spool
	dir   *spool.StateDir
	front string // this front, named in the keys it claims
	now   func() time.Time
	fsync bool
}

// newKeyStore opens the keys of sp for the front named front.
func newKeyStore(sp *spool.Spool, front string, now func() time.Time) (*keyStore, error) {
	dir := sp.StateDir(keyDir)
	if err := dir.Make(); err != nil {
		return nil, fmt.Errorf("idempotency keys: %w", err)
	}
	return &keyStore{sp: sp, dir: dir, front: front, now: now, fsync: sp.Options().Fsync}, nil
}

// keyFile names a key's file: a hash, since keys are arbitrary text.
func keyFile(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:]) + ".json"
}

// bodyHash hashes a JSON body in a canonical form (keys sorted, no
// insignificant space), so re-encoding the same job is the same body. The
// form is what encoding/json gives a body decoded into an any (with
// UseNumber) and marshaled again; a valid body is written into the hash
// as it is walked, without holding that decoded copy.
func bodyHash(body []byte) string {
	h := sha256.New()
	if json.Valid(body) {
		w := bufio.NewWriterSize(h, 32<<10)
		canonical(w, body, jsonscan.SkipSpace(body, 0))
		w.Flush()
	} else {
		h.Write(decodedCanonical(body))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// decodedCanonical is the canonical form by decoding and encoding again,
// for a body that is not valid JSON as a whole (its first value is used,
// as a json.Decoder reads it; a body that does not decode is its own
// form).
func decodedCanonical(body []byte) []byte {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&v) == nil {
		if b, err := json.Marshal(v); err == nil {
			return b
		}
	}
	return body
}

// canonical writes the canonical form of the valid value at data[i] and
// returns the offset after it.
func canonical(w *bufio.Writer, data []byte, i int) int {
	switch data[i] {
	case '"':
		end := jsonscan.SkipString(data, i)
		writeString(w, data[i+1:end-1])
		return end
	case '[':
		w.WriteByte('[')
		i = jsonscan.SkipSpace(data, i+1)
		for n := 0; data[i] != ']'; n++ {
			if n > 0 {
				w.WriteByte(',')
			}
			i = jsonscan.SkipSpace(data, canonical(w, data, i))
			if data[i] == ',' {
				i = jsonscan.SkipSpace(data, i+1)
			}
		}
		w.WriteByte(']')
		return i + 1
	case '{':
		type entry struct {
			key   string
			value int
		}
		var entries []entry
		end := i
		for m := range members(data[i:]) {
			entries = append(entries, entry{unquote(m.key), i + m.value})
			end = i + m.end
		}
		end = jsonscan.SkipSpace(data, end) + 1 // past '}'
		if len(entries) == 0 {
			end = jsonscan.SkipSpace(data, i+1) + 1
		}
		// A key given twice keeps its last value, as a map does.
		slices.SortStableFunc(entries, func(a, b entry) int { return strings.Compare(a.key, b.key) })
		w.WriteByte('{')
		n := 0
		for j, e := range entries {
			if j+1 < len(entries) && entries[j+1].key == e.key {
				continue
			}
			if n > 0 {
				w.WriteByte(',')
			}
			n++
			writeString(w, []byte(e.key))
			w.WriteByte(':')
			canonical(w, data, e.value)
		}
		w.WriteByte('}')
		return end
	}
	// A number (json.Number keeps its text), true, false or null.
	end := jsonscan.SkipValue(data, i)
	w.Write(data[i:end])
	return end
}

// unquote decodes the text of a JSON string (between its quotes).
func unquote(raw []byte) string {
	var b strings.Builder
	b.Grow(len(raw))
	unescape(raw, func(r rune) { b.WriteRune(r) }, func(p []byte) { b.Write(p) })
	return b.String()
}

// writeString writes the JSON string whose text (between the quotes, as
// written) is raw as encoding/json would encode its value: escapes
// resolved, invalid UTF-8 as U+FFFD, then '"', '\\', control characters,
// <, >, &, U+2028 and U+2029 escaped.
func writeString(w *bufio.Writer, raw []byte) {
	w.WriteByte('"')
	unescape(raw, func(r rune) { writeRune(w, r) }, func(p []byte) {
		// Runs of plain ASCII need no escaping but for HTML's three.
		start := 0
		for i, c := range p {
			if c == '<' || c == '>' || c == '&' {
				w.Write(p[start:i])
				writeRune(w, rune(c))
				start = i + 1
			}
		}
		w.Write(p[start:])
	})
	w.WriteByte('"')
}

const hexDigits = "0123456789abcdef"

// writeRune writes one rune of a string's value as encoding/json does.
func writeRune(w *bufio.Writer, r rune) {
	switch {
	case r == '"' || r == '\\':
		w.WriteByte('\\')
		w.WriteByte(byte(r))
	case r == '\b':
		w.WriteString(`\b`)
	case r == '\f':
		w.WriteString(`\f`)
	case r == '\n':
		w.WriteString(`\n`)
	case r == '\r':
		w.WriteString(`\r`)
	case r == '\t':
		w.WriteString(`\t`)
	case r < 0x20 || r == '<' || r == '>' || r == '&':
		w.WriteString(`\u00`)
		w.WriteByte(hexDigits[r>>4])
		w.WriteByte(hexDigits[r&0xF])
	case r == '\u2028' || r == '\u2029':
		w.WriteString(`\u202`)
		w.WriteByte(hexDigits[r&0xF])
	default:
		w.WriteRune(r)
	}
}

// unescape decodes the text of a JSON string as encoding/json does,
// passing each rune that needs a look to one, and runs of printable ASCII
// other than '"' and '\\' to plain.
func unescape(raw []byte, one func(rune), plain func([]byte)) {
	i := 0
	for i < len(raw) {
		start := i
		for i < len(raw) && raw[i] >= 0x20 && raw[i] < utf8.RuneSelf && raw[i] != '\\' && raw[i] != '"' {
			i++
		}
		if i > start {
			plain(raw[start:i])
		}
		if i >= len(raw) {
			return
		}
		c := raw[i]
		switch {
		case c == '\\':
			i++
			switch e := raw[i]; e {
			case 'u':
				r := jsonscan.Hex4(raw[i+1:])
				i += 5
				if utf16.IsSurrogate(r) {
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if dec := utf16.DecodeRune(r, jsonscan.Hex4(raw[i+2:])); dec != unicode.ReplacementChar {
							one(dec)
							i += 6
							continue
						}
					}
					r = unicode.ReplacementChar
				}
				one(r)
			case 'b':
				one('\b')
				i++
			case 'f':
				one('\f')
				i++
			case 'n':
				one('\n')
				i++
			case 'r':
				one('\r')
				i++
			case 't':
				one('\t')
				i++
			default: // '"', '\\', '/'
				one(rune(e))
				i++
			}
		case c < utf8.RuneSelf:
			one(rune(c))
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			one(r) // utf8.RuneError for a byte that is not UTF-8
			i += size
		}
	}
}

// claim records key for job id unless the key is already held. It returns
// the entry that holds it, or nil when the key is now id's. An entry older
// than KeyTTL no longer holds its key and is replaced.
func (k *keyStore) claim(key, hash, id string) (*keyEntry, error) {
	name := keyFile(key)
	e := &keyEntry{Key: key, ID: id, BodyHash: hash, CreatedAt: k.now().UTC(), Front: k.front}
	for try := 0; try < 4; try++ {
		err := k.create(name, e)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("idempotency key: %w", err)
		}
		old, err := k.read(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // released meanwhile
		case err != nil:
			// An unreadable entry holds nothing: replace it.
			k.dir.Remove(name)
			continue
		case k.now().Sub(old.CreatedAt) >= KeyTTL:
			k.dir.Remove(name)
			continue
		}
		return old, nil
	}
	return nil, fmt.Errorf("idempotency key: could not claim %q", key)
}

// inFlight reports whether the request that claimed e may still be making
// what e names, which does not exist yet: e is younger than keyInFlight and
// the front that claimed it still runs. A front killed between claiming a
// key and making its job leaves a key that is free again at once (the
// next front on the spool, or any other, finds it dead).
func (k *keyStore) inFlight(e *keyEntry) bool {
	if k.now().Sub(e.CreatedAt) >= keyInFlight {
		return false
	}
	return e.Front == "" || e.Front == k.front || k.sp.FrontAlive(e.Front)
}

// release forgets key, for a request that failed after claiming it.
func (k *keyStore) release(key string) {
	_ = k.dir.Remove(keyFile(key))
}

// create writes e to name atomically, failing with fs.ErrExist if name
// exists.
func (k *keyStore) create(name string, e *keyEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := k.dir.Create(name, append(data, '\n'), k.fsync); err != nil {
		return err
	}
	if k.fsync {
		return k.dir.Sync()
	}
	return nil
}

func (k *keyStore) read(name string) (*keyEntry, error) {
	data, err := k.dir.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var e keyEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, err
	}
	if e.ID == "" {
		return nil, errors.New("no job ID")
	}
	return &e, nil
}

// sweep removes keys older than KeyTTL and temporary files left by a
// crash, and returns how many keys it removed.
func (k *keyStore) sweep() int {
	now := k.now()
	_, _ = k.dir.RemoveStale(now.Add(-keyTempAge))
	names, err := k.dir.Names()
	if err != nil {
		return 0
	}
	n := 0
	for _, name := range names {
		e, err := k.read(name)
		if err == nil && now.Sub(e.CreatedAt) < KeyTTL {
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Unreadable: judge it by its age.
			if fi, serr := k.dir.Stat(name); serr != nil || now.Sub(fi.ModTime()) < KeyTTL {
				continue
			}
		}
		if k.dir.Remove(name) == nil {
			n++
		}
	}
	return n
}
