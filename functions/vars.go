package functions

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// ParseVars turns command-line vars into a JSON object of strings: each arg
// is "name=value"; "name=@path" reads the value from a file and "name=@-"
// from stdin (nil: none); "name=@@text" is the literal "@text". A name given
// twice is an error.
func ParseVars(args []string, stdin io.Reader) (json.RawMessage, error) {
	vars := map[string]string{}
	stdinUsed := false
	for _, arg := range args {
		name, value, ok := strings.Cut(arg, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--var %q: want name=value, name=@file or name=@- (standard input)", arg)
		}
		if _, dup := vars[name]; dup {
			return nil, fmt.Errorf("--var %s is given twice", name)
		}
		switch {
		case strings.HasPrefix(value, "@@"):
			value = value[1:]
		case value == "@-":
			if stdin == nil || stdinUsed {
				return nil, fmt.Errorf("--var %s=@-: standard input can be read only once", name)
			}
			stdinUsed = true
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("--var %s: read standard input: %w", name, err)
			}
			if !utf8.Valid(b) {
				return nil, fmt.Errorf("--var %s: standard input is not UTF-8 text", name)
			}
			value = string(b)
		case strings.HasPrefix(value, "@"):
			path := value[1:]
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("--var %s: %w", name, err)
			}
			if !utf8.Valid(b) {
				return nil, fmt.Errorf("--var %s: %s is not UTF-8 text", name, path)
			}
			value = string(b)
		}
		vars[name] = value
	}
	return encode(vars), nil
}
