// Package spooltest holds the helpers the spool's tests and the batches'
// tests share: files written, read, listed and aged straight under a
// spool's directories (as a writer that ignores the spool's rules, or a
// crash, would leave them), and JSON compared spacing aside. It imports
// nothing of hopper's, so that the spool's own tests can use it.
package spooltest
