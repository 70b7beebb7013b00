package functions

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileSchema compiles a function's JSON schema. The compiler loads no
// other documents, so a $ref must point inside the schema; format
// assertions ("format": "email") are on, since a person writing them
// expects them checked.
func compileSchema(schema []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, err
	}
	const url = "hopper:///schema.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{})
	c.AssertFormat()
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, schemaError(err)
	}
	return sch, nil
}

// schemaError explains why a schema did not compile.
func schemaError(err error) error {
	var sve *jsonschema.SchemaValidationError
	var lue *jsonschema.LoadURLError
	var pnf *jsonschema.JSONPointerNotFoundError
	switch {
	case errors.As(err, &sve):
		return fmt.Errorf("not a valid JSON schema: %s", strings.Join(validationProblems(sve.Err), "; "))
	case errors.As(err, &lue):
		return fmt.Errorf("$ref %q points outside the schema: hopper loads no other documents, so put the definitions under $defs", strings.TrimPrefix(lue.URL, "hopper:///"))
	case errors.As(err, &pnf):
		_, ptr, _ := strings.Cut(pnf.URL, "#")
		return fmt.Errorf("$ref to #%s: the schema has nothing there", ptr)
	}
	return err
}

// validationProblems lists a validation error's causes as "at /path: what",
// the innermost reasons only.
func validationProblems(err error) []string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []string{err.Error()}
	}
	var out []string
	var walk func(u jsonschema.OutputUnit)
	walk = func(u jsonschema.OutputUnit) {
		if len(u.Errors) == 0 && u.Error != nil {
			where := u.InstanceLocation
			if where == "" {
				where = "the top level"
			}
			out = append(out, "at "+where+": "+u.Error.String())
		}
		for _, c := range u.Errors {
			walk(c)
		}
	}
	walk(*ve.DetailedOutput())
	if len(out) == 0 {
		out = append(out, ve.Error())
	}
	return out
}
