package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
)

// startsUntilCalledOff is the fake, with starts of processes that each wait
// until their context ends (as the kernel driver's wait for a start slot
// does), but one that fails at once.
type startsUntilCalledOff struct{ *fake.Driver }

func (d startsUntilCalledOff) Apply(ctx context.Context, a r.Action) error {
	if s, ok := a.(r.StartProcess); ok {
		if s.NS == "bad" {
			return errors.New("the port is taken")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return nil
		}
	}
	return d.Driver.Apply(ctx, a)
}

// The starts of a plan's processes all run at once (StartProcess.Unbounded);
// when one fails, those still waiting are called off at once, and the failure
// up reports is the one that happened, not a start called off for it.
func TestAFailedStartCallsOffTheWaitingOnes(t *testing.T) {
	p := &r.Plan{}
	for i := range 8 {
		p.Actions = append(p.Actions, r.StartProcess{Lab: "l", Process: r.Process{ProcKey: r.ProcKey{NS: fmt.Sprintf("a%d", i), Command: "sleep 1"}}})
	}
	p.Actions = append(p.Actions, r.StartProcess{Lab: "l", Process: r.Process{ProcKey: r.ProcKey{NS: "bad", Command: "serve"}}})
	start := time.Now()
	err := r.ApplyWith(context.Background(), startsUntilCalledOff{fake.New()}, p, r.ApplyOptions{})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the waiting starts were not called off: the apply took %s", took)
	}
	if err == nil || !strings.Contains(err.Error(), "the port is taken") {
		t.Errorf("got %v, want the failed start's error", err)
	}
}

// An entry never seen ready starts again, which first stops what runs: when
// this run cannot stop it (a cgroup it cannot write, or netlab itself runs
// in it), the plan is refused rather than starting a second copy.
func TestANotReadyEntryThisRunCannotStopIsRefused(t *testing.T) {
	k := r.ProcKey{NS: r.Host, Command: "./server"}
	desired, observed := r.NewState("l"), r.NewState("l")
	desired.Processes[k] = &r.Process{ProcKey: k}
	observed.Processes[k] = &r.Process{ProcKey: k, PIDs: []int{42}, NotReady: true}
	if p, err := r.Diff(desired, observed); err != nil || len(p.Actions) != 1 || p.Refused() != nil {
		t.Fatalf("a not-ready entry this run can stop: want it started again, got %v, %v", p, err)
	}
	observed.Processes[k].Unstoppable = "it runs in a cgroup this run cannot write"
	p, err := r.Diff(desired, observed)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Actions) != 0 || p.Refused() == nil || !strings.Contains(p.Refused().Error(), "never seen ready") {
		t.Errorf("a not-ready entry this run cannot stop: got actions %v, refusal %v", p.Actions, p.Refused())
	}
}
