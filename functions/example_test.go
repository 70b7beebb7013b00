package functions_test

import (
	"encoding/json"
	"fmt"

	"github.com/hopper-dev/hopper/functions"
)

func ExampleFunction_Expand() {
	set, err := functions.Load(map[string]any{
		"greet": map[string]any{
			"model":  "llama3.2",
			"prompt": "Say hello to {{.name}} in {{.language}}.",
			"vars": map[string]any{
				"name":     map[string]any{"required": true, "description": "who to greet"},
				"language": map[string]any{"default": "French"},
			},
		},
	}, "")
	if err != nil {
		panic(err)
	}
	f, _ := set.Get("greet")

	body, endpoint, err := f.Expand(json.RawMessage(`{"name": "Ada"}`))
	fmt.Println(endpoint, string(body["prompt"]), err)

	_, _, err = f.Expand(nil)
	fmt.Println(err)
	// Output:
	// generate "Say hello to Ada in French." <nil>
	// function "greet" needs var "name" (who to greet)
}

func ExampleFunction_Check() {
	set, err := functions.Load(map[string]any{
		"classify": map[string]any{
			"model":  "llama3.2",
			"prompt": "Classify: {{.text}}",
			"vars":   map[string]any{"text": map[string]any{"required": true}},
			"format": `{"type": "object", "properties": {"label": {"enum": ["bug", "feature", "question"]}}, "required": ["label"]}`,
		},
	}, "")
	if err != nil {
		panic(err)
	}
	f, _ := set.Get("classify")

	out, err := f.Check(`{"label": "bug"}`)
	fmt.Println(string(out), err)

	_, err = f.Check(`{"label": "chore"}`)
	fmt.Println(err)
	// Output:
	// {"label":"bug"} <nil>
	// the answer does not match the schema of function "classify": at /label: value must be one of 'bug', 'feature', 'question'
}
