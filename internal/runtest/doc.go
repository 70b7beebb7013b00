// Package runtest runs a service for the length of a test: anything with a
// Run(ctx) error loop, such as the spool's watcher, the hooks' dispatcher,
// the runner, the function registry's watch or the HTTP front's Serve.
// [Receive], [Await] and [Poll] wait for what such a service does: for a
// value it sends, on its change channel, or by polling where there is
// nothing to wait on.
// [FreeAddr] finds an address for a service the test starts itself.
// [Call] sends a service one HTTP request and reads the whole answer;
// [Decode] reads a JSON answer.
//
// Any package may import it from its tests: it imports nothing of hopper's.
package runtest
