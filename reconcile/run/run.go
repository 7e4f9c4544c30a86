// Package run is what `netlab up`, `down` and `plan` do with a lab, as plain
// functions of a driver: lock the lab, plan it, print the plan, record the
// lab's file, apply, verify, and at `down` forget the lab. The commands in
// cmd/netlab only read their arguments, open the kernel driver and print
// errors; unit tests drive the same sequence with the fake driver.
//
// It is a package of its own, not part of reconcile, because the sequence
// needs more of a driver than reconcile.Driver's Observe and Apply: the lab's
// lock and the record of its file, which only the command line uses.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"netlab/reconcile"
	"netlab/topology"
)

// Kernel is the driver a run works with: reconcile.Driver, and the lab-level
// records of reconcile/kernel.Driver (the fake has them too).
type Kernel interface {
	reconcile.Driver
	// CheckNetns refuses to act on a lab from another network namespace than
	// the one it was brought up from.
	CheckNetns(lab string) error
	// RecordLab remembers the file a lab was brought up from, and its prefix.
	RecordLab(lab, file, prefix string) error
	// Forget removes what the driver recorded of a lab: `down` calls it once
	// nothing of the lab is left.
	Forget(lab string) error
}

// Release gives a lab's lock up; with remove, the lock file goes too.
type Release func(remove bool)

// Options are how a run talks to the person running it.
type Options struct {
	// Out gets the plan and the closing line.
	Out io.Writer
	// Lock takes the lab's lock, waiting for another run to finish; nil: no lock.
	Lock func(ctx context.Context, lab string) (Release, error)
	// Progress, when not nil, starts showing the progress of an apply of total
	// steps: it returns the function to report the steps done with and the one
	// that stops showing it.
	Progress func(total int) (report func(done int), stop func())
	// Concurrency is how many actions of one phase run at once; 0 is four per
	// CPU. Starts of processes are not bounded by it: see StartProcess.Unbounded.
	Concurrency int
	// Log, when not nil, gets how long each phase took.
	Log *slog.Logger
}

// Lab is a lab file, read, validated and compiled.
type Lab struct {
	File     string // as given ("-": standard input)
	Topology *topology.Lab
	Desired  *reconcile.State
}

// Plan plans the lab against what the kernel holds now: the plan that `plan`
// prints, `up` applies, and `test` and `status` compare with. Its File is the
// lab file's absolute path (the script of `plan -o commands` records it).
func Plan(ctx context.Context, d reconcile.Driver, l Lab) (*reconcile.Plan, error) {
	plan, err := reconcile.MakePlan(ctx, d, l.Desired)
	if err != nil {
		return nil, err
	}
	plan.File = l.File
	if abs, err := filepath.Abs(l.File); err == nil {
		plan.File = abs
	}
	return plan, nil
}

// lock takes the lab's lock, if o says how, and checks the network namespace.
func (o Options) lock(ctx context.Context, k Kernel, lab string) (Release, error) {
	release := Release(func(bool) {})
	if o.Lock != nil {
		var err error
		if release, err = o.Lock(ctx, lab); err != nil {
			return nil, err
		}
	}
	if err := k.CheckNetns(lab); err != nil {
		release(false)
		return nil, err
	}
	return release, nil
}

func (o Options) apply(ctx context.Context, k Kernel, plan *reconcile.Plan, keepGoing bool) error {
	opts := reconcile.ApplyOptions{Concurrency: o.Concurrency, KeepGoing: keepGoing, Log: o.Log}
	if o.Progress != nil {
		report, stop := o.Progress(len(plan.Actions))
		defer stop()
		opts.Progress = report
	}
	return reconcile.ApplyWith(ctx, k, plan, opts)
}

// Up brings the kernel to the lab: under the lab's lock, it plans, prints the
// plan, records the lab's file, applies the plan and verifies that nothing is
// left to do. A failed step comes back as a *reconcile.StepError; what was done
// stays done, and the next Up plans from there.
func Up(ctx context.Context, k Kernel, l Lab, o Options) error {
	lab := l.Desired.Lab
	release, err := o.lock(ctx, k, lab)
	if err != nil {
		return err
	}
	defer release(false)
	plan, err := Plan(ctx, k, l)
	if err != nil {
		return err
	}
	if err := plan.WriteText(o.Out); err != nil {
		return err
	}
	if err := k.RecordLab(lab, l.File, l.Topology.NetnsPrefix); err != nil {
		return err
	}
	if plan.Empty() {
		return nil
	}
	start := time.Now()
	if err := o.apply(ctx, k, plan, false); err != nil {
		return err
	}
	if err := reconcile.Verify(ctx, k, l.Desired, plan); err != nil {
		return withEndedProcesses(k, plan, err)
	}
	_, err = fmt.Fprintf(o.Out, "Apply complete: %s in %s; the kernel matches %s.\n",
		reconcile.Plural(len(plan.Actions), "action"), time.Since(start).Round(time.Millisecond), l.File)
	return err
}

// processLogs is what a kernel that keeps its processes' output tells of one:
// the end of what it wrote since it was last started (reconcile/kernel.Driver).
type processLogs interface {
	ProcessLog(lab, ns, command string) string
}

// withEndedProcesses adds to a verify's drift why a process this plan started
// is to be started again: it was ready, and has ended since (a server that
// exits right after it binds its port), with the end of its log. Nothing
// watches a process after it was ready; this is the last look an up takes.
func withEndedProcesses(k Kernel, plan *reconcile.Plan, err error) error {
	var drift *reconcile.DriftError
	logs, ok := k.(processLogs)
	if !errors.As(err, &drift) || !ok {
		return err
	}
	started := map[reconcile.ProcKey]bool{}
	for _, a := range plan.Actions {
		if s, ok := a.(reconcile.StartProcess); ok {
			started[s.ProcKey] = true
		}
	}
	var notes []string
	for _, a := range drift.Remaining.Actions {
		if s, ok := a.(reconcile.StartProcess); ok && started[s.ProcKey] {
			notes = append(notes, fmt.Sprintf("netns %s: %q was ready, and has ended since; %s", s.NS, s.Command, logs.ProcessLog(s.Lab, s.NS, s.Command)))
		}
	}
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%w\n%s", err, strings.Join(notes, "\n"))
}

// Down removes everything the lab owns: under its lock, it plans the empty lab,
// prints the plan, applies all of it (past failures: one stubborn object must
// not keep the rest alive), verifies, and forgets the lab, whose lock file then
// goes too.
func Down(ctx context.Context, k Kernel, lab string, o Options) error {
	release, err := o.lock(ctx, k, lab)
	if err != nil {
		return err
	}
	empty := reconcile.NewState(lab)
	plan, err := reconcile.MakePlan(ctx, k, empty)
	if err == nil {
		err = plan.WriteText(o.Out)
	}
	if err == nil {
		// Nothing is done, and running down again here would not help.
		err = plan.Refused()
	}
	if err != nil {
		release(false)
		return err
	}
	err = errors.Join(o.apply(ctx, k, plan, true), reconcile.Verify(ctx, k, empty, plan))
	if err != nil {
		release(false)
		return fmt.Errorf("%w\nrun \"netlab down --lab %s\" again to finish", err, lab)
	}
	err = k.Forget(lab)
	release(err == nil)
	if err != nil {
		return err
	}
	if !plan.Empty() {
		fmt.Fprintf(o.Out, "Lab %s is down.\n", lab)
	}
	return nil
}
