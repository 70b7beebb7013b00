// Package functions holds hopper's functions (DESIGN §7): named, configured
// LLM calls — a model, system, prompt or messages templates over declared
// vars, options, a JSON schema for the answer, and job settings — defined
// under `functions:` in the config or as one YAML file each in a directory.
//
// Contract:
//
//   - Load reads and checks every definition at once: unknown keys, a missing
//     model, templates that do not parse or use undeclared vars, invalid JSON
//     schemas, bad durations. Its error joins every problem, each naming the
//     file and line and the field; in hopper.yaml, the whole key
//     ("config hopper.yaml:12: functions.NAME.prompt"), when the config
//     comes from Section. A Set is immutable once loaded and safe to share.
//   - A Registry holds the current Set for the runner and the HTTP front and
//     swaps it whole on Reload; a broken edit keeps the last good set. Watch
//     is only a wake-up for Reload: the files are the truth.
//   - Expand turns a function and a job's vars into an Ollama request body.
//     Every error it returns is bad input (an *InputError, a sentence a person
//     can act on), so a job that fails it never reaches the target.
//   - Check validates the model's answer against the function's schema.
//     Every error it returns is an *AnswerError: the answer, not the input,
//     was wrong, so another attempt may succeed.
//
// Templates are text/template with missingkey=error; their data is the vars
// as a map, so {{.text}} is the var "text". Schemas are compiled with
// github.com/santhosh-tekuri/jsonschema/v6 (draft 2020-12 unless "$schema"
// says otherwise, format assertions on) and never load other documents: a
// $ref must point inside the schema.
//
// The package knows nothing of the spool or of Ollama's client; the runner
// and the front wire it to them.
package functions
