package ollama

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// KeepAlive converts a configured or per-job keep_alive into the JSON value
// Ollama accepts. A number, or a string holding one ("-1", "3600",
// "3600.5"), becomes a JSON number of seconds, because Ollama rejects the
// string "3600" (time: missing unit in duration); anything else ("5m",
// "1h30m") becomes a JSON string for Ollama to parse as a Go duration. An
// empty value gives nil: leave keep_alive out and let Ollama use its default.
func KeepAlive(v string) json.RawMessage {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		if json.Valid([]byte(v)) {
			return json.RawMessage(v)
		}
		return json.RawMessage(strconv.FormatFloat(f, 'f', -1, 64))
	}
	b, _ := json.Marshal(v) // a string always marshals
	return b
}

// CheckKeepAlive reports whether Ollama would accept v as keep_alive once
// converted by [KeepAlive], so that bad input can be refused at submit time.
func CheckKeepAlive(v string) error {
	raw := KeepAlive(v)
	if raw == nil || raw[0] != '"' {
		return nil
	}
	if _, err := time.ParseDuration(strings.TrimSpace(v)); err != nil {
		return fmt.Errorf("keep_alive: %w", err)
	}
	return nil
}
