// Package openai holds the wire shapes of OpenAI's API that more than one
// hopper package reads or writes: the error object every /v1 error
// carries, and the lines of the Batch API's input and output files. It
// holds types only, no behaviour beyond telling a good output line from a
// failed one: the HTTP front (httpfront) serves them, and the batch code
// turns input lines into jobs and jobs' records into output lines.
//
// The shapes follow OpenAI's documentation field for field, nulls
// included, so that OpenAI's SDKs read what hopper writes unchanged. A
// shape only one package uses (the front's batch and file objects) stays
// beside its user.
package openai
