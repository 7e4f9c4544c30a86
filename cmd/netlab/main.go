// Command netlab turns a YAML lab file into live Linux network state and keeps it
// there: namespaces, bridges, veth links, addresses, routes and sysctls.
//
// The flow from here to the kernel: Run (root.go) picks a command (one file each);
// the command loads the lab (topology.Load), compiles it (reconcile.Desired),
// plans it against what the kernel holds (reconcile.MakePlan with the kernel
// driver), prints the plan and applies it (reconcile.Apply, then reconcile.Verify).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
