package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
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
	observed, err := d.Observe(ctx, Query{Lab: desired.Lab, Sysctls: desired.SysctlKeys(), Tables: desired.Tables, Qdiscs: desired.Qdiscs, Keep: keep, Reread: reread})
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
	return ApplyWithProgress(ctx, d, p, nil, nil)
}

// ApplyWithProgress is Apply, calling progress (from any goroutine) with the
// number of steps done after each one, and logging how long each phase took
// on log (nil: not logged).
func ApplyWithProgress(ctx context.Context, d Driver, p *Plan, progress func(done int), log *slog.Logger) error {
	var done atomic.Int64
	for _, phase := range p.phases() {
		start := time.Now()
		err := runPhase(ctx, d, p, phase, true, &done, progress)
		p.logPhase(log, phase, start)
		if err != nil {
			return err
		}
	}
	return nil
}

// ApplyAll runs every action even when some fail, and returns all failures joined.
// `down` uses it: one stubborn object must not keep the others alive.
func ApplyAll(ctx context.Context, d Driver, p *Plan, log *slog.Logger) error {
	var errs []error
	var done atomic.Int64
	for _, phase := range p.phases() {
		start := time.Now()
		errs = append(errs, runPhase(ctx, d, p, phase, false, &done, nil))
		p.logPhase(log, phase, start)
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

// Concurrency is how many actions of one phase run at once.
var Concurrency = 4 * runtime.NumCPU()

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

// runPhase applies the actions of one phase concurrently. With stopEarly, no
// action starts after one has failed and only the first failure (by step) is
// returned; otherwise every action runs and all failures are returned. Actions
// with the same Serial key (the exec commands of one namespace) run one after
// another, in plan order, and none runs after one of them failed.
func runPhase(ctx context.Context, d Driver, p *Plan, steps []int, stopEarly bool, done *atomic.Int64, progress func(int)) error {
	errs := make([]error, len(steps))
	var failed atomic.Bool
	var wg sync.WaitGroup
	groups := serialGroups(p, steps)
	work := make(chan []int)
	for range min(Concurrency, len(groups)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for group := range work {
				for _, j := range group {
					i := steps[j]
					err := ctx.Err()
					if err == nil && !(stopEarly && failed.Load()) {
						err = d.Apply(ctx, p.Actions[i])
						if n := done.Add(1); progress != nil {
							progress(int(n))
						}
					} else if err == nil {
						break // not started: an earlier action of the phase failed
					}
					if err != nil {
						errs[j] = &StepError{Step: i + 1, Steps: len(p.Actions), Action: p.Actions[i], Err: err}
						failed.Store(true)
						break // the rest of a serial group depends on this one
					}
				}
			}
		}()
	}
	for _, g := range groups {
		work <- g
	}
	close(work)
	wg.Wait()
	if stopEarly {
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	return errors.Join(errs...)
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

// touched lists the namespaces a plan changes: those its actions name, and for
// a deleted veth or namespace, where the other ends were. nil (read everything)
// for a plan with an action it does not know.
func touched(p *Plan) map[string]bool {
	ns := map[string]bool{}
	for _, a := range p.Actions {
		switch a := a.(type) {
		case CreateNetns:
			ns[a.Name] = true
		case DeleteNetns:
			ns[a.Name] = true
			for _, k := range a.Takes {
				ns[k.NS] = true
			}
		case SetIPv6:
			ns[a.Name] = true
		case CreateBridge:
			ns[a.NS] = true
		case CreateVeth:
			ns[a.Main.NS], ns[a.Peer.NS] = true, true
		case DeleteInterface:
			ns[a.NS] = true
			if a.Peer != (InterfaceKey{}) {
				ns[a.Peer.NS] = true
			}
		case MarkInterface:
			ns[a.NS] = true
		case SetMaster:
			ns[a.NS] = true
		case SetHairpin:
			ns[a.NS] = true
		case SetMTU:
			ns[a.NS] = true
		case SetMAC:
			ns[a.NS] = true
		case SetUp:
			ns[a.NS] = true
		case SetDown:
			ns[a.NS] = true
		case ReplaceQdisc:
			for _, k := range a.Ends() {
				ns[k.NS] = true
			}
		case DeleteQdisc:
			for _, k := range a.Ends() {
				ns[k.NS] = true
			}
		case AddAddr:
			ns[a.NS] = true
		case DeleteAddr:
			ns[a.NS] = true
		case ReplaceRoute:
			ns[a.NS] = true
		case DeleteRoute:
			ns[a.NS] = true
		case SetSysctl:
			ns[a.NS] = true
		case ReplaceTable:
			ns[a.Table.NS] = true
		case DeleteTable:
			ns[a.NS] = true
		case StartProcess:
			ns[a.NS] = true
		case StopProcess:
			ns[a.NS] = true
		case WriteFile:
			ns[a.NS] = true
		case DeleteFile:
			ns[a.NS] = true
		case RunExec:
			ns[a.NS] = true
		case ForgetExec:
			ns[a.NS] = true
		default:
			return nil
		}
	}
	return ns
}
