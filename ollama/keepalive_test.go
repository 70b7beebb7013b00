package ollama_test

import (
	"fmt"
	"testing"

	"github.com/hopper-dev/hopper/ollama"
)

func TestKeepAlive(t *testing.T) {
	conversions{
		{"", ""},
		{"  ", ""},
		{"-1", `-1`},
		{"0", `0`},
		{"3600", `3600`},
		{"3600.5", `3600.5`},
		{" 60 ", `60`},
		{"1e3", `1e3`},
		{"+5", `5`},
		{"05", `5`},
		{"5m", `"5m"`},
		{"1h30m", `"1h30m"`},
		{"-1m", `"-1m"`},
		{"Inf", `"Inf"`},
		{"forever", `"forever"`},
	}.check(t, "KeepAlive", func(in string) string { return string(ollama.KeepAlive(in)) })
}

func TestCheckKeepAlive(t *testing.T) {
	for _, ok := range []string{"", "-1", "0", "3600", "2.5", "5m", "1h30m", "-1s"} {
		if err := ollama.CheckKeepAlive(ok); err != nil {
			t.Errorf("CheckKeepAlive(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"forever", "5 minutes", "Inf", "1d"} {
		if err := ollama.CheckKeepAlive(bad); err == nil {
			t.Errorf("CheckKeepAlive(%q) = nil, want an error", bad)
		}
	}
}

func ExampleKeepAlive() {
	fmt.Println(string(ollama.KeepAlive("3600")))
	fmt.Println(string(ollama.KeepAlive("-1")))
	fmt.Println(string(ollama.KeepAlive("5m")))
	fmt.Println(ollama.KeepAlive("") == nil)
	// Output:
	// 3600
	// -1
	// "5m"
	// true
}

func ExampleNormalizeModel() {
	fmt.Println(ollama.NormalizeModel("llama3.2"))
	fmt.Println(ollama.SameModel("registry.ollama.ai/library/llama3.2:latest", "Llama3.2"))
	// Output:
	// llama3.2:latest
	// true
}
