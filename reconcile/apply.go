package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// MakePlan observes what the kernel holds for the lab and diffs it against desired.
// Every run plans from the kernel as it is now, so re-running after a failure is
// how netlab recovers.
func MakePlan(ctx context.Context, d Driver, desired *State) (*Plan, error) {
	return makePlan(ctx, d, desired, nil)
}

// makePlan is MakePlan; reread, when not nil, lets the driver answer for the
// namespaces it does not name with what it read earlier (see Query.Reread).
func makePlan(ctx context.Context, d Driver, desired *State, reread map[string]bool) (*Plan, error) {
	keep := make(map[string]bool, len(desired.Namespaces))
	for name := range desired.Namespaces {
		keep[name] = true
	}
	observed, err := d.Observe(ctx, Query{Lab: desired.Lab, Sysctls: desired.SysctlKeys(), Tables: desired.Tables, Iptables: desired.Iptables, DockerTables: desired.DockerTables, Qdiscs: desired.Qdiscs, Keep: keep, Reread: reread})
	if err != nil {
		return nil, fmt.Errorf("observe lab %s: %w", desired.Lab, err)
	}
	return Diff(desired, observed)
}

// StepError is a failed action of a plan.
type StepError struct {
	Step, Steps int
	Action      Action
	Err         error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("apply step %d/%d (%s): %v", e.Step, e.Steps, Line(e.Action), e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Apply runs the plan phase by phase and stops at the first failure, which names
// the step. The actions of one phase touch different objects and depend only on
// earlier phases, so they run concurrently (a thousand namespaces are mostly
// waiting on the kernel). Whatever was done stays done: the next plan starts
// from there.
func Apply(ctx context.Context, d Driver, p *Plan) error {
	return ApplyWith(ctx, d, p, ApplyOptions{})
}

// ApplyOptions say how ApplyWith runs a plan. The zero value is Apply's.
type ApplyOptions struct {
	// Concurrency is how many actions of one phase run at once; 0 is four per
	// CPU. Starts of processes are not bounded by it: see StartProcess.Unbounded.
	Concurrency int
	// KeepGoing runs every action even when some fail, and returns all
	// failures joined: `down` must not let one stubborn object keep the others
	// alive. Without it, no action starts after one has failed.
	KeepGoing bool
	// Progress, when not nil, is called (from any goroutine) with the number
	// of steps done after each one.
	Progress func(done int)
	// Log, when not nil, gets how long each phase took.
	Log *slog.Logger
}

// ApplyWith is Apply with options.
func ApplyWith(ctx context.Context, d Driver, p *Plan, o ApplyOptions) error {
	if err := p.Refused(); err != nil {
		return err
	}
	var errs []error
	var done atomic.Int64
	for _, phase := range p.phases() {
		start := time.Now()
		err := p.runPhase(ctx, d, phase, o, &done)
		p.logPhase(o.Log, phase, start)
		if err != nil && !o.KeepGoing {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// logPhase logs the time a phase took, named by the kinds of its actions as the
// plan prints them ("+ netns", "- bridge, - netns"): `-v` shows where an up's
// time goes.
func (p *Plan) logPhase(log *slog.Logger, steps []int, start time.Time) {
	if log == nil {
		return
	}
	var kinds []string
	for _, i := range steps {
		if k := string(p.Actions[i].Op()) + " " + p.Actions[i].Kind(); !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	log.Debug("apply", "phase", strings.Join(kinds, ", "), "actions", len(steps), "took", time.Since(start))
}

// phases splits the plan's action indexes into runs that are applied at once:
// the actions of one phase, or of phases that share an apply group.
func (p *Plan) phases() [][]int {
	var out [][]int
	for i, a := range p.Actions {
		if len(out) == 0 || p.Actions[out[len(out)-1][0]].Phase().applyGroup() != a.Phase().applyGroup() {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], i)
	}
	return out
}

// runPhase applies the actions of one phase concurrently, o.Concurrency at a
// time. Without o.KeepGoing, no action starts after one has failed and only
// the first failure (by step) is returned; with it, every action runs and all
// failures are returned. Actions with the same Serial key (the exec commands
// of one namespace) run one after another, in plan order, and none runs after
// one of them failed.
func (p *Plan) runPhase(ctx context.Context, d Driver, steps []int, o ApplyOptions, done *atomic.Int64) error {
	errs := make([]error, len(steps))
	var failed atomic.Bool
	groups := serialGroups(p, steps)
	limit := cmp.Or(o.Concurrency, DefaultWorkers())
	stop := func() {}
	phaseCtx := ctx
	if u, ok := p.Actions[steps[0]].(interface{ Unbounded() bool }); ok && u.Unbounded() {
		// A phase of one kind: its actions bound themselves, and all have
		// started at once. Those still waiting for the driver when one fails
		// are called off through the context: they did not start.
		limit = len(groups)
		if !o.KeepGoing {
			phaseCtx, stop = context.WithCancel(ctx)
			defer stop()
		}
	}
	Parallel(len(groups), limit, func(g int) {
		for _, j := range groups[g] {
			i := steps[j]
			err := ctx.Err()
			if err == nil && !o.KeepGoing && failed.Load() {
				return // not started: an earlier action of the phase failed
			}
			if err == nil {
				err = d.Apply(phaseCtx, p.Actions[i])
				if err != nil && failed.Load() && phaseCtx.Err() != nil {
					return // called off: another action of the phase failed (and is reported)
				}
				if n := done.Add(1); o.Progress != nil {
					o.Progress(int(n))
				}
			}
			if err != nil {
				errs[j] = &StepError{Step: i + 1, Steps: len(p.Actions), Action: p.Actions[i], Err: err}
				failed.Store(true)
				stop()
				return // the rest of a serial group depends on this one
			}
		}
	})
	if o.KeepGoing {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// serialGroups splits a phase's steps (indexes into steps) into what runs
// concurrently: each action alone, except those with the same Serial key, which
// form one group in plan order.
func serialGroups(p *Plan, steps []int) [][]int {
	var groups [][]int
	at := map[string]int{}
	for j, i := range steps {
		if s, ok := p.Actions[i].(interface{ Serial() string }); ok {
			if g, ok := at[s.Serial()]; ok {
				groups[g] = append(groups[g], j)
				continue
			}
			at[s.Serial()] = len(groups)
		}
		groups = append(groups, []int{j})
	}
	return groups
}

// DriftError says that the kernel still differs from the lab after applying.
type DriftError struct{ Remaining *Plan }

func (e *DriftError) Error() string {
	lines := make([]string, len(e.Remaining.Actions))
	for i, a := range e.Remaining.Actions {
		lines[i] = "  " + Line(a)
	}
	return "the kernel does not match the lab after applying; still to do:\n" + strings.Join(lines, "\n")
}

// Verify observes again and fails with whatever still differs from desired.
// After applying a plan (applied, nil for none), it reads again the host and
// the namespaces the plan touched: the others were read when the plan was made,
// matched the lab then (the plan has nothing for them), and nothing netlab did
// since has changed them. A thousand-namespace lab that gained one namespace is
// checked with one namespace read again, not all of them. A namespace wrongly
// left out could only make Verify fail: its earlier reading differs from the lab
// exactly where the plan acts.
func Verify(ctx context.Context, d Driver, desired *State, applied *Plan) error {
	var reread map[string]bool
	if applied != nil {
		reread = touched(applied)
	}
	p, err := makePlan(ctx, d, desired, reread)
	if err != nil {
		return err
	}
	if !p.Empty() {
		return &DriftError{Remaining: p}
	}
	return nil
}

// touched lists the namespaces a plan changes (see Action.Namespaces).
func touched(p *Plan) map[string]bool {
	ns := map[string]bool{}
	for _, a := range p.Actions {
		for _, n := range a.Namespaces() {
			ns[n] = true
		}
	}
	return ns
}

// Applier is the kernel-facing side of applying: one method per kind of
// action, which the action's ApplyTo calls. The kernel driver and the fake
// implement it (each asserts so), so an action added here without a method in
// each of them does not compile.
type Applier interface {
	ApplyCreateNetns(context.Context, CreateNetns) error
	ApplySetIPv6(context.Context, SetIPv6) error
	ApplyDeleteNetns(context.Context, DeleteNetns) error
	ApplyCreateBridge(context.Context, CreateBridge) error
	ApplyCreateVeth(context.Context, CreateVeth) error
	ApplyDeleteInterface(context.Context, DeleteInterface) error
	ApplyMarkInterface(context.Context, MarkInterface) error
	ApplySetMaster(context.Context, SetMaster) error
	ApplySetHairpin(context.Context, SetHairpin) error
	ApplySetMTU(context.Context, SetMTU) error
	ApplySetMAC(context.Context, SetMAC) error
	ApplySetUp(context.Context, SetUp) error
	ApplySetSnooping(context.Context, SetSnooping) error
	ApplyAddAddr(context.Context, AddAddr) error
	ApplyDeleteAddr(context.Context, DeleteAddr) error
	ApplyReplaceRoute(context.Context, ReplaceRoute) error
	ApplyDeleteRoute(context.Context, DeleteRoute) error
	ApplySetSysctl(context.Context, SetSysctl) error
	ApplyReplaceTable(context.Context, ReplaceTable) error
	ApplyDeleteTable(context.Context, DeleteTable) error
	ApplyWriteFile(context.Context, WriteFile) error
	ApplyDeleteFile(context.Context, DeleteFile) error
	ApplyRunExec(context.Context, RunExec) error
	ApplyForgetExec(context.Context, ForgetExec) error
	ApplyStartProcess(context.Context, StartProcess) error
	ApplyStopProcess(context.Context, StopProcess) error
	ApplyCreateUTS(context.Context, CreateUTS) error
	ApplySetHostname(context.Context, SetHostname) error
	ApplyDeleteUTS(context.Context, DeleteUTS) error
	ApplyReplaceQdisc(context.Context, ReplaceQdisc) error
	ApplyDeleteQdisc(context.Context, DeleteQdisc) error
	ApplySetDown(context.Context, SetDown) error
}
