// Package runtest runs a service for the length of a test: anything with a
// Run(ctx) error loop, such as the spool's watcher, the hooks' dispatcher,
// the runner, the function registry's watch or the HTTP front's Serve.
//
// Any package may import it from its tests: it imports nothing of hopper's.
package runtest

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Start calls run in a goroutine with a context that the returned stop
// cancels. stop then waits up to wait for run to return, and fails the test
// if run returns an error or does not return in time; what names the
// service in those messages. stop runs when the test ends; it is safe to
// call before, and more than once.
func Start(tb testing.TB, what string, wait time.Duration, run func(ctx context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("%s: %v", what, err)
			}
		case <-time.After(wait):
			tb.Errorf("%s did not return within %s of its context ending", what, wait)
		}
	})
	tb.Cleanup(stop)
	return stop
}
