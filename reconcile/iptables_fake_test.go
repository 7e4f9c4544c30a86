package reconcile_test

import (
	"context"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// iptablesBridgeLab is a lab with one low-level bridge in Docker's iptables
// layout of that release.
func iptablesBridgeLab(t *testing.T, name, version string) *r.State {
	return harness.DesiredFromText(t, "name: "+name+`
bridges:
  br-`+name+`:
    addresses: [10.9.0.1/24]
    masquerade: true
    isolated: true
    userland-proxy: true
    firewall: iptables
    docker-version: "`+version+`"
`)
}

// TestIptablesLayoutOnTheFake: the fake kernel keeps each lab's part of the
// iptables layout as the kernel driver does: a second plan is empty; a lab
// of the same dockerd's layout comes up beside it and down of either plans
// the removal of its own part only; a lab of another release's layout is a
// conflict at plan time, naming the lab there.
func TestIptablesLayoutOnTheFake(t *testing.T) {
	ctx := context.Background()
	desired, d := upOnFake(t, "../labs/docker-bridge-iptables.yaml")
	if plan, err := r.MakePlan(ctx, d, desired); err != nil || !plan.Empty() {
		t.Fatalf("second plan: %v %v", plan, err)
	}
	if _, err := r.MakePlan(ctx, d, iptablesBridgeLab(t, "other", "29")); err == nil ||
		!strings.Contains(err.Error(), "lab docker-bridge-iptables has Docker 26.1's iptables layout there, lab other wants 29's") {
		t.Errorf("a lab of Docker 29's layout beside 26.1's: %v", err)
	}
	same := iptablesBridgeLab(t, "same", "26.1")
	plan, err := r.MakePlan(ctx, d, same)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, d, plan); err != nil {
		t.Fatal(err)
	}
	for lab, want := range map[string]*r.State{"docker-bridge-iptables": desired, "same": same} {
		if plan, err := r.MakePlan(ctx, d, want); err != nil || !plan.Empty() {
			t.Errorf("lab %s beside the other: plan %v %v", lab, plan, err)
		}
		down, err := r.MakePlan(ctx, d, r.NewState(lab))
		if err != nil {
			t.Fatal(err)
		}
		var removals []string
		for _, a := range down.Actions {
			if del, ok := a.(r.DeleteTable); ok && del.Layout == r.LayoutIptables {
				removals = append(removals, del.Object())
			}
		}
		if want := "host: iptables rules of lab " + lab + " (ip raw, ip filter, ip nat)"; strings.Join(removals, "\n") != want {
			t.Errorf("down of %s removes %q, want %q", lab, removals, want)
		}
	}
}
