package reconcile_test

import (
	"testing"

	r "netlab/reconcile"
)

// TestSnoopingIsComparedOnlyWhereTheKernelHasIt: a bridge that wants multicast
// snooping off gets SetSnooping where the kernel has it on; a kernel built
// without snooping (NoSnooping) floods multicast whatever is asked, and is
// never asked, or every plan would ask again.
func TestSnoopingIsComparedOnlyWhereTheKernelHasIt(t *testing.T) {
	br := r.InterfaceKey{NS: r.Host, Name: "br0"}
	desired := r.NewState("lab")
	desired.Interfaces[br] = &r.Interface{InterfaceKey: br, Kind: r.KindBridge, Up: true, SnoopingOff: true}
	for _, c := range []struct {
		observed r.Interface
		want     int
	}{
		{r.Interface{SnoopingOff: false}, 1},
		{r.Interface{SnoopingOff: true}, 0},
		{r.Interface{NoSnooping: true}, 0},
	} {
		observed := r.NewState("lab")
		l := c.observed
		l.InterfaceKey, l.Kind, l.Up = br, r.KindBridge, true
		observed.Interfaces[br] = &l
		plan, err := r.Diff(desired, observed)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Actions) != c.want {
			t.Errorf("observed %+v: plan %v, want %d action(s)", c.observed, plan.Actions, c.want)
		}
	}
}
