package functionstest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hopper-dev/hopper/functions"
)

// Label returns the definition of a function that has model classify the
// message in its required var "text": the answer must be {"label": L} with
// L one of bug, feature and question, and is sent to the model as format.
// maxAttempts > 0 sets max_attempts; 0 leaves it to the default.
func Label(model string, maxAttempts int) string {
	def := `model: ` + model + `
system: 'Classify the message. Answer {"label": "..."}.'
prompt: "{{.text}}"
vars:
  text: {required: true, description: the message}
format:
  type: object
  properties:
    label: {type: string, enum: [bug, feature, question]}
  required: [label]
`
	if maxAttempts > 0 {
		def += fmt.Sprintf("max_attempts: %d\n", maxAttempts)
	}
	return def
}

// Registry writes the definitions, by function name, as NAME.yaml files
// of a directory and returns the registry loaded from it.
func Registry(t testing.TB, defs map[string]string) *functions.Registry {
	t.Helper()
	dir := t.TempDir()
	for name, def := range defs {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(def), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := functions.NewRegistry(nil, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}
