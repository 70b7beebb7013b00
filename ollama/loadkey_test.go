package ollama

import (
	"encoding/json"
	"testing"
)

func TestLoadKey(t *testing.T) {
	for _, tc := range []struct {
		name, model, options, want string
	}{
		{"NameAlone", "llama3.2", "", "llama3.2:latest"},
		{"NameIsNormalized", "Registry.Ollama.AI/library/Llama3.2:latest", "", "llama3.2:latest"},
		{"OptionsThatDoNotReloadAreLeftOut", "llama3.2", `{"temperature":0.2,"num_predict":9}`, "llama3.2:latest"},
		{"LoadOptionsAreKeptSorted", "m", `{"num_gpu":1,"num_ctx":8192}`, "m:latest num_ctx=8192 num_gpu=1"},
		{"NumbersCompareByValue", "m", `{"num_ctx":8192.0}`, "m:latest num_ctx=8192"},
		{"BooleansAsJSON", "m", `{"use_mmap":false}`, "m:latest use_mmap=false"},
		{"NullIsNotSet", "m", `{"num_ctx":null}`, "m:latest"},
		{"OptionsThatAreNotAnObjectAreIgnored", "m", `"x"`, "m:latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts json.RawMessage
			if tc.options != "" {
				opts = json.RawMessage(tc.options)
			}
			if got := LoadKey(tc.model, opts); got != tc.want {
				t.Errorf("LoadKey(%q, %s) = %q, want %q", tc.model, tc.options, got, tc.want)
			}
			if got, want := KeyModel(LoadKey(tc.model, opts)), NormalizeModel(tc.model); got != want {
				t.Errorf("KeyModel = %q, want %q", got, want)
			}
		})
	}
}
