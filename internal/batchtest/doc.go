// Package batchtest makes batch files and reads batch outputs for tests:
// a mixed batch of OpenAI chat and embeddings lines and hopper job lines,
// with a malformed line and a line naming a model the target lacks. For
// tests that go through the OpenAI Go SDK, [Create] uploads and creates a
// batch and [Content] downloads an output file.
package batchtest
