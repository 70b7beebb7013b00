// Package benchtest holds what hopper's benchmarks share: a spool with
// 100,000 jobs queued, latency percentiles, and the chat requests that
// time hopper against its target ("direct") in the same run.
//
// The requests name the model llama3.2: the target must have it.
package benchtest
