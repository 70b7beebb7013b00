package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal cancels ctx; a second one gets the default action and
	// ends hopper at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

// run runs hopper with args (without the program name) and returns the exit
// status: 0 ok, 1 failure, 2 usage. Errors go to stderr as "hopper: …".
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env []string) int {
	return execute(ctx, newApp(stdout, stderr, env), args)
}

func execute(ctx context.Context, a *app, args []string) int {
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	a.root.SetArgs(args)
	cmd, err := a.root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(a.stderr, "hopper: %v\n", err)
	if !isUsage(a, err) {
		return 1
	}
	path := a.root.CommandPath()
	if cmd != nil {
		path = cmd.CommandPath()
	}
	fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", path)
	return 2
}

// isUsage reports whether err is the user's misuse of the command line: an
// error marked as such, or any error cobra returned before the command
// started (unknown command or flag, wrong number of arguments).
func isUsage(a *app, err error) bool {
	var ue *usageError
	return errors.As(err, &ue) || !a.started
}
