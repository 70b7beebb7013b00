package yamlconf

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

// Size is a number of bytes; settings write it 33554432 or "32MiB".
type Size int64

// String formats s as a setting would: "32MiB", or plain bytes.
func (s Size) String() string {
	for _, u := range []struct {
		n    Size
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return fmt.Sprintf("%d%s", s/u.n, u.name)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Text converts a setting's text to type t: a time.Duration (ParseDuration),
// an fs.FileMode (ParseMode), a Size (ParseSize), a bool, an int, or a list
// of text written with commas ("a, b"; blanks dropped). Text of any other
// type is returned as it is. Its errors say what was wanted, to follow the
// key: `must be a duration like "10m", got "abc"`.
func Text(s string, t reflect.Type) (any, error) {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return ParseDuration(s)
	case reflect.TypeFor[fs.FileMode]():
		return ParseMode(s)
	case reflect.TypeFor[Size]():
		return ParseSize(s)
	}
	switch t.Kind() {
	case reflect.Bool:
		if b, err := strconv.ParseBool(strings.TrimSpace(s)); err == nil {
			return b, nil
		}
	case reflect.Int:
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return n, nil
		}
	case reflect.Slice:
		if t.Elem().Kind() != reflect.String {
			return s, nil
		}
		list := []string{}
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		return list, nil
	default:
		return s, nil
	}
	return nil, fmt.Errorf("must be %s, got %q", Describe(t), s)
}

// Describe says what a value of type t is written as, for error messages:
// `a duration like "10m"`, "an integer", "a list".
func Describe(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return `a duration like "10m"`
	case reflect.TypeFor[fs.FileMode]():
		return `an octal mode like "0750"`
	case reflect.TypeFor[Size]():
		return `a size like "32MiB"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Uint32:
		return "an integer"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	}
	return "a string"
}

// ParseDuration parses a Go duration ("90s", "1h30m") or one with a
// leading day count ("7d", "1d12h", "1.5d"; a day is 24 hours).
func ParseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("must be a duration like \"10m\", got %q", s)
	t := strings.TrimSpace(s)
	days, rest, ok := strings.Cut(t, "d")
	if !ok {
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, bad
		}
		return d, nil
	}
	neg := strings.HasPrefix(days, "-")
	days = strings.TrimPrefix(strings.TrimPrefix(days, "-"), "+")
	if days == "" || strings.Trim(days, "0123456789.") != "" {
		return 0, bad
	}
	n, err := strconv.ParseFloat(days, 64)
	if err != nil || n*24*float64(time.Hour) >= math.MaxInt64 {
		return 0, bad
	}
	d := time.Duration(n * 24 * float64(time.Hour))
	if rest != "" {
		if r := rest[0]; r < '0' || r > '9' {
			return 0, bad // "1d-3h", "1dd"
		}
		r, err := time.ParseDuration(rest)
		if err != nil || r > math.MaxInt64-d {
			return 0, bad
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}

// ParseSize parses a byte count: "33554432", "32MiB", "512KB", "1.5GiB"
// (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024; case is ignored).
func ParseSize(s string) (Size, error) {
	bad := fmt.Errorf("must be a size like \"32MiB\", got %q", s)
	t := strings.TrimSpace(s)
	num, unit := t, ""
	if i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := map[string]float64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}[strings.ToLower(unit)]
	if !ok {
		return 0, bad
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || n*mult >= 1<<62 || (mult == 1 && n != math.Trunc(n)) {
		return 0, bad
	}
	return Size(n * mult), nil
}

// ParseMode parses permission bits written in octal, as chmod takes them:
// "0750", "750" or "0o750".
func ParseMode(s string) (fs.FileMode, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "0o"), "0O")
	n, err := strconv.ParseUint(t, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("must be an octal mode like \"0750\", got %q", s)
	}
	return fs.FileMode(n), nil
}

// Fill decodes settings (nested maps whose leaves are text, as Settings
// gives them and the environment and flags add to them) into the struct
// out points to, whose fields are named by the struct tag tag. It converts
// text with Text. Its error is an *Error naming the key (without a file:
// the caller knows where each setting came from).
func Fill(out any, tag string, settings map[string]any) error {
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: func(_, to reflect.Type, data any) (any, error) {
			if s, ok := data.(string); ok {
				return Text(s, to)
			}
			return data, nil
		},
		Result:  out,
		TagName: tag,
	})
	if err != nil {
		return err
	}
	err = dec.Decode(settings)
	var de *mapstructure.DecodeError
	if !errors.As(err, &de) {
		return err
	}
	for inner := de; errors.As(de.Unwrap(), &inner); {
		de = inner
	}
	return &Error{Key: de.Name(), Err: de.Unwrap()}
}
