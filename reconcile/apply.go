package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// MakePlan observes what the kernel holds for the lab and diffs it against desired.
// Every run plans from the kernel as it is now, so re-running after a failure is
// how netlab recovers.
func MakePlan(ctx context.Context, d Driver, desired *State) (*Plan, error) {
	observed, err := d.Observe(ctx, Query{Lab: desired.Lab, Sysctls: desired.SysctlKeys(), Tables: desired.Tables})
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

// Apply runs the plan's actions in order and stops at the first failure, which
// names the step. Whatever was done stays done: the next plan starts from there.
func Apply(ctx context.Context, d Driver, p *Plan) error {
	for i, a := range p.Actions {
		if err := ctx.Err(); err != nil {
			return &StepError{Step: i + 1, Steps: len(p.Actions), Action: a, Err: err}
		}
		if err := d.Apply(ctx, a); err != nil {
			return &StepError{Step: i + 1, Steps: len(p.Actions), Action: a, Err: err}
		}
	}
	return nil
}

// ApplyAll runs every action even when some fail, and returns all failures joined.
// `down` uses it: one stubborn object must not keep the others alive.
func ApplyAll(ctx context.Context, d Driver, p *Plan) error {
	var errs []error
	for i, a := range p.Actions {
		if err := d.Apply(ctx, a); err != nil {
			errs = append(errs, &StepError{Step: i + 1, Steps: len(p.Actions), Action: a, Err: err})
		}
	}
	return errors.Join(errs...)
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
func Verify(ctx context.Context, d Driver, desired *State) error {
	p, err := MakePlan(ctx, d, desired)
	if err != nil {
		return err
	}
	if !p.Empty() {
		return &DriftError{Remaining: p}
	}
	return nil
}
