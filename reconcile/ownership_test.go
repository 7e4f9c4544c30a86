package reconcile_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
)

// machine is a fake kernel with the machine's own network card, eth0, its
// address and its default route: what existed before any lab.
func machine() *fake.Driver {
	d := fake.New()
	eth0 := r.InterfaceKey{NS: r.Host, Name: "eth0"}
	d.AddForeignInterface(r.Interface{InterfaceKey: eth0, Kind: "device", Up: true}, "")
	d.Mutate(func(k *fake.Kernel) {
		k.AddAddr(r.AddrKey{InterfaceKey: eth0, Prefix: netip.MustParsePrefix("192.0.2.10/24")})
		k.AddRoute(r.Route{RouteKey: r.RouteKey{NS: r.Host, To: netip.MustParsePrefix("0.0.0.0/0")}, Via: netip.MustParseAddr("192.0.2.254"), Dev: "eth0"})
	})
	return d
}

// hostRouteLab has a bridge in the host and a host route through a router on it.
func hostRouteLab(name string, metric int, addr string) *r.State {
	s := r.NewState(name)
	br := r.InterfaceKey{NS: r.Host, Name: "br-" + name}
	s.Interfaces[br] = &r.Interface{InterfaceKey: br, Kind: r.KindBridge, Up: true}
	s.Addrs[r.AddrKey{InterfaceKey: br, Prefix: netip.MustParsePrefix(addr)}] = true
	k := r.RouteKey{NS: r.Host, To: netip.MustParsePrefix("0.0.0.0/0"), Metric: metric}
	s.Routes[k] = &r.Route{RouteKey: k, Via: netip.MustParseAddr("10.9.0.2"), Dev: br.Name}
	return s
}

func conflictOf(t *testing.T, err error) string {
	t.Helper()
	var c *r.ConflictError
	if !errors.As(err, &c) {
		t.Fatalf("want a conflict, got %v", err)
	}
	return c.Error()
}

// A route the lab wants whose key is the machine's own route is a conflict:
// never replaced (and so never deleted by down).
func TestMachineRouteIsAConflict(t *testing.T) {
	ctx := context.Background()
	d := machine()
	_, err := r.MakePlan(ctx, d, hostRouteLab("x", 0, "10.9.0.1/24"))
	msg := conflictOf(t, err)
	want := "route host: default (metric 0) already exists (via 192.0.2.254 dev eth0) and was not created by netlab for lab x; give the lab's route another metric, or remove the machine's route yourself"
	if !strings.Contains(msg, want) {
		t.Errorf("conflict:\n%s\nwant it to contain:\n%s", msg, want)
	}
	if d.Writes != 0 {
		t.Errorf("%d writes before the conflict", d.Writes)
	}

	// With another metric the lab's route lives beside the machine's, and down
	// removes the lab's alone.
	lab := hostRouteLab("x", 100, "10.9.0.1/24")
	converge(t, ctx, d, lab, "up, metric 100")
	converge(t, ctx, d, r.NewState("x"), "down")
	observed, err := d.Observe(ctx, r.Query{Lab: "x"})
	if err != nil {
		t.Fatal(err)
	}
	def := r.RouteKey{NS: r.Host, To: netip.MustParsePrefix("0.0.0.0/0")}
	if got := observed.ForeignRoutes[def]; got == nil || got.Dev != "eth0" || got.Via != netip.MustParseAddr("192.0.2.254") {
		t.Errorf("the machine's default route after up and down: %+v", got)
	}
}

// Another lab's route is a conflict too, naming the lab.
func TestOtherLabsRouteIsAConflict(t *testing.T) {
	ctx := context.Background()
	d := fake.New()
	converge(t, ctx, d, hostRouteLab("a", 0, "10.9.0.1/24"), "up a")
	b := hostRouteLab("b", 0, "10.8.0.1/24")
	b.Routes[r.RouteKey{NS: r.Host, To: netip.MustParsePrefix("0.0.0.0/0")}].Via = netip.MustParseAddr("10.8.0.2")
	_, err := r.MakePlan(ctx, d, b)
	if msg := conflictOf(t, err); !strings.Contains(msg, "route host: default (metric 0) already exists (via 10.9.0.2 dev br-a) on an interface of lab a; give the lab's route another metric, or take lab a down first") {
		t.Errorf("conflict: %s", msg)
	}
}

// An address the machine already has, wanted on a lab interface of the same
// namespace, is a conflict.
func TestMachineAddressIsAConflict(t *testing.T) {
	d := machine()
	lab := hostRouteLab("x", 100, "192.0.2.10/24")
	_, err := r.MakePlan(context.Background(), d, lab)
	want := "address host:br-x 192.0.2.10/24: 192.0.2.10 is already an address of host:eth0, which was not created by netlab for lab x; give the lab another address, or remove it from eth0 yourself"
	if msg := conflictOf(t, err); !strings.Contains(msg, want) {
		t.Errorf("conflict:\n%s\nwant it to contain:\n%s", msg, want)
	}
}

func sysctlLab(name, value string) *r.State {
	s := r.NewState(name)
	s.Sysctls[r.SysctlKey{NS: r.Host, Path: "net/ipv4/ip_forward"}] = value
	return s
}

var ipForward = r.SysctlKey{NS: r.Host, Path: "net/ipv4/ip_forward"}

func hostValue(d *fake.Driver, k r.SysctlKey) (v string) {
	d.Mutate(func(kern *fake.Kernel) { v = kern.Sysctl(k) })
	return v
}

// Two labs that set one host sysctl share it: the first down leaves it for the
// second (whose plan stays empty), the last down puts the original back,
// whichever goes first.
func TestSharedHostSysctl(t *testing.T) {
	ctx := context.Background()
	for _, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
		d := fake.New()
		converge(t, ctx, d, sysctlLab("a", "1"), "up a")
		plan, err := r.MakePlan(ctx, d, sysctlLab("b", "1"))
		if err != nil {
			t.Fatal(err)
		}
		if got := text(plan); got != "+ sysctl  host: net.ipv4.ip_forward = 1 (shared with lab a)\n" {
			t.Errorf("plan of b: %q", got)
		}
		converge(t, ctx, d, sysctlLab("b", "1"), "up b")

		first, second := order[0], order[1]
		plan, err = r.MakePlan(ctx, d, r.NewState(first))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := text(plan), "- sysctl  host: net.ipv4.ip_forward = 1 (kept for lab "+second+")\n"; got != want {
			t.Errorf("down of %s: %q, want %q", first, got, want)
		}
		converge(t, ctx, d, r.NewState(first), "down "+first)
		if v := hostValue(d, ipForward); v != "1" {
			t.Errorf("after down of %s, ip_forward = %s, want 1 (lab %s still wants it)", first, v, second)
		}
		if plan, err := r.MakePlan(ctx, d, sysctlLab(second, "1")); err != nil || !plan.Empty() {
			t.Errorf("lab %s drifted after down of %s: %v\n%s", second, first, err, text(plan))
		}
		converge(t, ctx, d, r.NewState(second), "down "+second)
		if v := hostValue(d, ipForward); v != "0" {
			t.Errorf("after both downs (%s first), ip_forward = %s, want 0", first, v)
		}
	}
}

// Two labs that want different values for one host sysctl conflict, before
// any change, naming the other lab.
func TestHostSysctlValuesConflict(t *testing.T) {
	ctx := context.Background()
	d := fake.New()
	converge(t, ctx, d, sysctlLab("a", "1"), "up a")
	writes := d.Writes
	_, err := r.MakePlan(ctx, d, sysctlLab("b", "0"))
	want := "sysctl host: net.ipv4.ip_forward: lab b wants 0, but lab a set it to 1 and is still up; give the labs the same value, or take lab a down first"
	if msg := conflictOf(t, err); !strings.Contains(msg, want) {
		t.Errorf("conflict:\n%s\nwant it to contain:\n%s", msg, want)
	}
	if d.Writes != writes {
		t.Errorf("the conflict wrote")
	}
}

// An unreadable record of saved values: up refuses to set the sysctls whose
// originals go there; down carries on and says what it could not restore.
func TestUnreadableRecord(t *testing.T) {
	for _, tc := range []struct {
		bad  r.BadRecord
		key  r.SysctlKey
		want string
	}{
		{r.BadRecord{Path: "/run/netlab/x/sysctls.json", Err: "invalid character 'g'"}, r.SysctlKey{NS: "web", Path: "net/ipv4/ip_forward"},
			"cannot read /run/netlab/x/sysctls.json (invalid character 'g')"},
		{r.BadRecord{Path: "/run/netlab/host_sysctls.json", Host: true, Err: "invalid character 'g'"}, ipForward,
			"cannot read /run/netlab/host_sysctls.json (invalid character 'g')"},
	} {
		observed := r.NewState("x")
		observed.BadRecords = []r.BadRecord{tc.bad}
		desired := r.NewState("x")
		desired.Sysctls[tc.key] = "1"
		if tc.key.NS != r.Host {
			desired.Namespaces[tc.key.NS] = &r.Netns{Name: tc.key.NS, LoUp: true}
		}
		_, err := r.Diff(desired, observed)
		if msg := conflictOf(t, err); !strings.Contains(msg, tc.want) {
			t.Errorf("up with %s unreadable: %s", tc.bad.Path, msg)
		}
		plan, err := r.Diff(r.NewState("x"), observed)
		if err != nil {
			t.Fatalf("down with %s unreadable: %v", tc.bad.Path, err)
		}
		if len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], tc.want) {
			t.Errorf("down with %s unreadable: warnings %q", tc.bad.Path, plan.Warnings)
		}
	}
}
