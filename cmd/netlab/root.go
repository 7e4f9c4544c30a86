package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/reconcile/run"
	"netlab/topology"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Streams are the command's standard streams, injected so tests can capture them.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// exitCode is an error that carries the process exit code; its message, if any,
// has been printed already.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// app holds what every command shares.
type app struct {
	Streams
	verbose    bool
	cpuProfile string
}

// Run executes netlab with args and returns the exit code.
func Run(ctx context.Context, args []string, streams Streams) int {
	a := &app{Streams: streams}
	root := &cobra.Command{
		Use:   "netlab",
		Short: "Declarative network labs on one Linux machine",
		Long: `netlab turns a YAML topology into live Linux kernel state and keeps it there:
network namespaces, bridges, veth links, addresses, routes and sysctls.

  netlab up labs/docker-bridge.yaml     observe, plan, apply, verify
  netlab plan labs/docker-bridge.yaml   show what up would do
  netlab down labs/docker-bridge.yaml   remove everything the lab owns`,
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	root.PersistentFlags().BoolVarP(&a.verbose, "verbose", "v", false, "log what netlab does to stderr")
	root.PersistentFlags().StringVar(&a.cpuProfile, "cpuprofile", "", "write a CPU profile to this file (for make bench)")
	root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if a.cpuProfile == "" {
			return nil
		}
		f, err := createOutput(a.cpuProfile, 0o600)
		if err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	defer pprof.StopCPUProfile()
	root.AddCommand(a.validateCmd(), a.planCmd(), a.upCmd(), a.downCmd(), a.statusCmd(),
		a.execCmd(), a.testCmd(), a.inspectCmd(), a.graphCmd(), a.serveCmd(), a.nsexecCmd(),
		a.recordCmd(), a.saveSysctlCmd(), a.restoreSysctlCmd(), a.recordExecCmd(), a.forgetExecCmd(), a.createTableCmd(), a.saveIptablesCmd(), a.markIptablesCmd(), a.startCmd(),
		a.expandCmd(), a.importCmd(), a.captureCmd(), a.traceCmd())

	err := root.ExecuteContext(ctx)
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	}
	a.printError(err)
	return 1
}

// printError prints an error for a person: file errors one per line as
// FILE:LINE:COL: message, everything else after "netlab: ".
func (a *app) printError(err error) {
	var fileErrs topology.Errors
	if errors.As(err, &fileErrs) {
		fmt.Fprintln(a.Err, fileErrs.Error())
		return
	}
	// Errors can quote the file's text (a command that failed to start): what a
	// terminal would act on is escaped, line breaks of a multi-line error kept.
	fmt.Fprintf(a.Err, "netlab: %s\n", topology.PrintableLines(err.Error()))
}

func (a *app) logger() *slog.Logger {
	if !a.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(a.Err, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// loadLab reads, validates and compiles a lab file. Nothing touches the kernel.
// It reads only a regular file (see topology.Load); the "-" a lab brought up
// from standard input records is no file to read again.
func loadLab(file string) (*topology.Lab, *reconcile.State, error) {
	if file == "-" {
		return nil, nil, errors.New("the lab was read from standard input: there is no file to read again")
	}
	lab, err := topology.Load(file)
	if err != nil {
		return nil, nil, err
	}
	return compile(lab)
}

func compile(lab *topology.Lab) (*topology.Lab, *reconcile.State, error) {
	desired, err := reconcile.DesiredOn(lab, reconcile.HostResolvConf(os.ReadFile))
	if err != nil {
		return nil, nil, err
	}
	return lab, desired, nil
}

// loadArg is loadLab of the FILE argument of a command, where "-" means
// standard input.
func (a *app) loadArg(ctx context.Context, file string) (*topology.Lab, *reconcile.State, error) {
	if file != "-" {
		return loadLab(file)
	}
	lab, err := a.readArg(ctx, file)
	if err != nil {
		return nil, nil, err
	}
	return compile(lab)
}

// openLab loads the lab file FILE ("-": standard input), then opens the
// kernel driver: what plan, up and test start with. Close the driver when done.
func (a *app) openLab(ctx context.Context, file string) (run.Lab, *kernel.Driver, error) {
	go kernel.ReserveFiles() // while the file is read (about 30 ms at 1000 namespaces)
	lab, desired, err := a.loadArg(ctx, file)
	if err != nil {
		return run.Lab{}, nil, err
	}
	d, err := a.openKernel()
	if err != nil {
		return run.Lab{}, nil, err
	}
	return run.Lab{File: file, Topology: lab, Desired: desired}, d, nil
}

// runOptions are how up and down, run on d, talk to the person running them.
func (a *app) runOptions(d *kernel.Driver) run.Options {
	return run.Options{
		Out: a.Out,
		Lock: func(ctx context.Context, lab string) (run.Release, error) {
			l, err := a.lock(ctx, d, lab)
			if err != nil {
				return nil, err
			}
			return l.Release, nil
		},
		Progress: func(total int) (func(int), func()) { return a.progressLine("applying", total) },
		Log:      a.logger(),
	}
}

// readArg reads and validates the lab file FILE, or standard input for "-": a
// read that waits for input stops when ctx is done (SIGINT, SIGTERM).
func (a *app) readArg(ctx context.Context, file string) (*topology.Lab, error) {
	if file != "-" {
		return topology.Load(file)
	}
	type result struct {
		lab *topology.Lab
		err error
	}
	done := make(chan result, 1)
	go func() {
		lab, err := topology.Read(a.In, "-")
		done <- result{lab, err}
	}()
	select {
	case r := <-done:
		return r.lab, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("stopped while reading the lab from standard input: %w", ctx.Err())
	}
}

// checkLabArg checks a lab name given on the command line (down --lab, status
// NAME, inspect NAME, exec --lab) by the rule of a lab file's name:, before it
// is used for anything: it names a directory of netlab's state.
func checkLabArg(name string) error {
	return topology.CheckLabName(name)
}

// openKernel checks privileges and opens the kernel driver.
func (a *app) openKernel() (*kernel.Driver, error) {
	if err := kernel.CheckPrivileges(); err != nil {
		return nil, err
	}
	return kernel.New(kernel.Options{Logger: a.logger()})
}

// forLabs checks the output format (text or json) and the lab named on the
// command line, if any, then opens the kernel driver and calls f for that lab,
// or for every lab on the machine, in order, and collects what it returns: what
// status and inspect do. A lab f fails for is left out of the rows and its
// error is in labErr, so that one lab that cannot be read (another lab's down
// removing its state meanwhile) does not hide the others; err is a failure
// before any lab was read.
func forLabs[T any](a *app, ctx context.Context, output string, args []string, f func(context.Context, *kernel.Driver, string) (T, error)) (rows []T, labErr, err error) {
	if output != "text" && output != "json" {
		return nil, nil, fmt.Errorf("unknown output format %q: want text or json", output)
	}
	if len(args) == 1 {
		if err := checkLabArg(args[0]); err != nil {
			return nil, nil, err
		}
	}
	d, err := a.openKernel()
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	names, err := labsNamed(d, args)
	if err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, name := range names {
		r, err := f(ctx, d, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("lab %s: %w", name, err))
			continue
		}
		rows = append(rows, r)
	}
	return rows, errors.Join(errs...), nil
}

// writeJSON writes v as indented JSON, as -o json does.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// labsNamed is the lab named on the command line, or every lab on the machine.
// A named lab that is not on the machine is an error that lists the running
// ones: a script must not read a made-up row as a lab that is up.
func labsNamed(d *kernel.Driver, args []string) ([]string, error) {
	labs, err := d.Labs()
	if err != nil || len(args) == 0 {
		return labs, err
	}
	if !slices.Contains(labs, args[0]) {
		return nil, &unknownLabError{name: args[0], running: labs}
	}
	return args, nil
}

// unknownLabError names a lab that is not on this machine, and those that are.
type unknownLabError struct {
	name    string
	running []string
}

func (e *unknownLabError) Error() string {
	if len(e.running) == 0 {
		return fmt.Sprintf("no lab named %s (no labs are running)", e.name)
	}
	return fmt.Sprintf("no lab named %s (running labs: %s)", e.name, strings.Join(e.running, ", "))
}

// lock takes the lab's lock, saying so when it has to wait for another run. The
// wait ends when ctx is done (SIGINT, SIGTERM); the lock, should it come after
// that, is released when netlab exits.
//
// A run that the holder started itself waits at most ancestorWait. It is a
// process of the lab running netlab on it: one the holder has left running
// (a run: process already ready), which gets the lock once the holder is done,
// or one the holder waits for (an exec: command, a process not ready yet),
// for which the lock would never come.
func (a *app) lock(ctx context.Context, d *kernel.Driver, lab string) (*kernel.Lock, error) {
	l, err := d.Lock(lab, false)
	if !errors.Is(err, kernel.ErrLocked) {
		return l, err
	}
	pid := d.HeldByAncestor(lab)
	if pid == 0 {
		fmt.Fprintf(a.Err, "netlab: lab %s is busy with another netlab run; waiting for it to finish...\n", lab)
		return waitLock(ctx, d, lab, nil)
	}
	fmt.Fprintf(a.Err, "netlab: lab %s is held by the netlab run (PID %d) that started this command; waiting up to %s...\n", lab, pid, ancestorWait)
	timeout := time.After(ancestorWait)
	l, err = waitLock(ctx, d, lab, timeout)
	if errors.Is(err, errLockTimeout) {
		return nil, fmt.Errorf("lab %s is still held after %s by the netlab run (PID %d) that started this command: that run waits for this command "+
			"(an exec: command, or a process it waits to be ready), which cannot wait for it; run this after it, not from the lab", lab, ancestorWait, pid)
	}
	return l, err
}

// ancestorWait is how long a run started by the holder of the lab's lock waits
// for it (see lock).
const ancestorWait = 10 * time.Second

var errLockTimeout = errors.New("timed out")

// waitLock waits for the lab's lock until ctx is done or timeout (nil: none)
// fires. The flock a goroutine waits in cannot be cancelled: should it get the
// lock after that, netlab, which is ending with an error, lets it go on exit.
func waitLock(ctx context.Context, d *kernel.Driver, lab string, timeout <-chan time.Time) (*kernel.Lock, error) {
	type result struct {
		l   *kernel.Lock
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := d.Lock(lab, true)
		done <- result{l, err}
	}()
	select {
	case r := <-done:
		return r.l, r.err
	case <-timeout:
		return nil, errLockTimeout
	case <-ctx.Done():
		return nil, fmt.Errorf("stopped while waiting for lab %s: %w", lab, ctx.Err())
	}
}

// progressLine shows "netlab: applying step N/TOTAL" on stderr while a long run
// goes on, from its third second, and only when stderr is a terminal: a script's
// log gets no carriage returns. It returns the callback to report progress with
// and the function that ends the line.
func (a *app) progressLine(what string, total int) (func(int), func()) {
	f, ok := a.Err.(*os.File)
	if !ok {
		return nil, func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil, func() {}
	}
	var done atomic.Int64
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		start := time.Now()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		shown := false
		for {
			select {
			case <-quit:
				if shown {
					fmt.Fprint(f, "\r\033[K")
				}
				return
			case <-tick.C:
				if time.Since(start) >= 2*time.Second {
					fmt.Fprintf(f, "\r\033[Knetlab: %s step %d/%d (%s)", what, done.Load(), total, time.Since(start).Round(time.Second))
					shown = true
				}
			}
		}
	}()
	return func(n int) { done.Store(int64(n)) }, func() { close(quit); <-finished }
}
