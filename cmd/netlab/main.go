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
	"runtime"
	"runtime/debug"
	"syscall"
)

// init pins the main goroutine to the process's main thread, so that __nsexec
// enters a namespace and executes the lab's command from the thread-group
// leader: an exec from any other thread makes the leader look like a zombie in
// /proc for a moment, and an observation at that moment would miss the process
// and start it twice.
func init() { runtime.LockOSThread() }

func main() {
	// netlab runs for a second or so and allocates mostly short-lived netlink
	// messages: collecting garbage less often saves a tenth of a large lab's
	// observation, for some more megabytes of peak memory (about 40 MB at a
	// thousand namespaces). GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	// ...but not past 64 MiB of heap, where it collects as often as it takes:
	// a lab of 10,000 namespaces holds about 40 MB at its peak, and its
	// garbage (the netlink library's receive buffers, 64 KiB per request)
	// would otherwise grow the process to 230 MB. GOMEMLIMIT still wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(64 << 20)
	}
	// SIGINT or SIGTERM asks the command to stop (a read of standard input, an
	// apply between steps); a second one ends netlab at once, whatever it waits for.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := Run(ctx, os.Args[1:], Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
