package functions

import (
	"errors"
	"strings"
	"testing"
)

const contactSchema = `model: m
prompt: hi
format:
  type: object
  properties:
    name: {type: string}
    email: {type: string, format: email}
    label: {enum: [bug, feature, question]}
    n: {type: integer}
  required: [name, email]
  additionalProperties: false
`

func TestCheckAcceptsASchemaValidAnswer(t *testing.T) {
	f := loadOne(t, contactSchema)
	out, err := f.Check(" {\"name\": \"Ada\",\n \"email\": \"ada@example.com\", \"n\": 12345678901234567890} ")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"Ada","email":"ada@example.com","n":12345678901234567890}`; string(out) != want {
		t.Errorf("output = %s, want %s", out, want)
	}
}

func TestCheckListsEveryValidationError(t *testing.T) {
	f := loadOne(t, contactSchema)
	_, err := f.Check(`{"email": "nope", "label": "chore", "n": 1.5, "extra": true}`)
	var ae *AnswerError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an *AnswerError", err)
	}
	want := []string{
		"at the top level: missing property 'name'",
		"at /email: 'nope' is not valid email",
		"at /label: value must be one of 'bug', 'feature', 'question'",
		"at /n: got number, want integer",
		"at the top level: additional properties 'extra' not allowed",
	}
	joined := strings.Join(ae.Problems, "\n")
	for _, w := range want {
		if !strings.Contains(joined, w) {
			t.Errorf("problems do not say %q:\n%s", w, joined)
		}
	}
	if len(ae.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(ae.Problems), len(want), joined)
	}
	if !strings.HasPrefix(err.Error(), `the answer does not match the schema of function "fn": `) {
		t.Errorf("Error() = %q", err)
	}
}

func TestCheckRefusesAnswersThatAreNotJSON(t *testing.T) {
	f := loadOne(t, contactSchema)
	for _, content := range []string{"", "Sure! Here is the JSON you asked for: {\"name\": \"Ada\"}", `{"name": "Ada"`, `{"name": "Ada", "email": "a@b.c"} trailing`} {
		_, err := f.Check(content)
		var ae *AnswerError
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), "not JSON") {
			t.Errorf("Check(%q) = %v, want an *AnswerError saying it is not JSON", content, err)
		}
	}
}

func TestCheckToleratesACodeFence(t *testing.T) {
	f := loadOne(t, contactSchema)
	out, err := f.Check("```json\n{\"name\": \"Ada\", \"email\": \"ada@example.com\"}\n```\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"Ada","email":"ada@example.com"}`; string(out) != want {
		t.Errorf("output = %s, want %s", out, want)
	}
}

func TestCheckWithoutSchemaReturnsNothing(t *testing.T) {
	f := loadOne(t, minimal)
	out, err := f.Check("anything at all")
	if out != nil || err != nil {
		t.Errorf("Check = %s, %v; want nil, nil", out, err)
	}
}

func TestCheckFormatJSONNeedsOnlyJSON(t *testing.T) {
	f := loadOne(t, "model: m\nprompt: hi\nformat: json\n")
	out, err := f.Check(`[1, 2]`)
	if err != nil || string(out) != `[1,2]` {
		t.Errorf("Check = %s, %v; want [1,2], nil", out, err)
	}
	if _, err := f.Check("not json"); err == nil {
		t.Error("Check accepted text that is not JSON")
	}
}

func TestCheckSchemaWithLocalRef(t *testing.T) {
	f := loadOne(t, `model: m
prompt: hi
format:
  type: object
  properties: {who: {$ref: "#/$defs/person"}}
  $defs:
    person: {type: object, required: [name]}
`)
	if _, err := f.Check(`{"who": {"name": "Ada"}}`); err != nil {
		t.Errorf("valid answer: %v", err)
	}
	_, err := f.Check(`{"who": {}}`)
	if err == nil || !strings.Contains(err.Error(), "at /who: missing property 'name'") {
		t.Errorf("invalid answer: %v", err)
	}
}
