package kernel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// lab builds desired states the way reconcile.Desired would, for a docker0-like
// star: a bridge in the host and one namespace per container with eth0 on it.
type lab struct{ s *r.State }

func newLab(name string) *lab { return &lab{s: r.NewState(name)} }

func (l *lab) bridge(name, addr string) *lab {
	k := r.InterfaceKey{NS: r.Host, Name: name}
	l.s.Interfaces[k] = &r.Interface{InterfaceKey: k, Kind: r.KindBridge, Up: true}
	l.s.Addrs[r.AddrKey{InterfaceKey: k, Prefix: netip.MustParsePrefix(addr)}] = true
	return l
}

// container adds a namespace with eth0 (addresses addrs) whose peer port is on bridge.
func (l *lab) container(ns, port, bridge string, addrs ...string) *lab {
	l.s.Namespaces[ns] = &r.Netns{Name: ns, LoUp: true}
	return l.veth(r.InterfaceKey{NS: ns, Name: "eth0"}, r.InterfaceKey{NS: r.Host, Name: port}, bridge, addrs...)
}

// veth adds a pair; the b end is a port of bridge (if not ""), the a end has addrs.
func (l *lab) veth(a, b r.InterfaceKey, bridge string, addrs ...string) *lab {
	l.s.Interfaces[a] = &r.Interface{InterfaceKey: a, Kind: r.KindVeth, Peer: b, Up: true}
	l.s.Interfaces[b] = &r.Interface{InterfaceKey: b, Kind: r.KindVeth, Peer: a, Master: bridge, Up: true}
	for _, p := range addrs {
		prefix := netip.MustParsePrefix(p)
		l.s.Addrs[r.AddrKey{InterfaceKey: a, Prefix: prefix}] = true
		if n := l.s.Namespaces[a.NS]; n != nil && prefix.Addr().Is6() {
			n.IPv6 = true // as Desired does for a namespace with IPv6 addresses
		}
	}
	return l
}

func (l *lab) route(ns, to, via, dev string) *lab {
	p := netip.MustParsePrefix(to)
	k := r.RouteKey{NS: ns, To: p}
	if p.Addr().Is6() {
		k.Metric = 1024
	}
	l.s.Routes[k] = &r.Route{RouteKey: k, Via: netip.MustParseAddr(via), Dev: dev}
	return l
}

func (l *lab) sysctl(ns, name, value string) *lab {
	l.s.Sysctls[r.SysctlKey{NS: ns, Path: r.SysctlPath(name)}] = value
	return l
}

// twoContainers is the spine's reference lab: two namespaces on a bridge in the
// host, IPv4 addresses and default routes, forwarding on in the host.
func twoContainers() *lab {
	return newLab("spine").
		bridge("br0", "10.10.0.1/24").
		container("c1", "vc1", "br0", "10.10.0.2/24").
		container("c2", "vc2", "br0", "10.10.0.3/24").
		route("c1", "0.0.0.0/0", "10.10.0.1", "eth0").
		route("c2", "0.0.0.0/0", "10.10.0.1", "eth0").
		sysctl(r.Host, "net.ipv4.ip_forward", "1")
}

// counting wraps the driver to count the actions applied.
type counting struct {
	*Driver
	mu      sync.Mutex // actions of a phase are applied concurrently
	applied []string
}

func (c *counting) Apply(ctx context.Context, a r.Action) error {
	c.mu.Lock()
	c.applied = append(c.applied, r.Line(a))
	c.mu.Unlock()
	return c.Driver.Apply(ctx, a)
}

// up plans, applies and verifies; it returns the plan lines.
func up(t *testing.T, d r.Driver, desired *r.State) []string {
	t.Helper()
	ctx := context.Background()
	plan, err := r.MakePlan(ctx, d, desired)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if err := r.Apply(ctx, d, plan); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if err := r.Verify(ctx, d, desired, plan); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := r.Verify(ctx, d, desired, nil); err != nil {
		t.Fatalf("verify, reading everything again: %v", err)
	}
	return lines(plan)
}

func planLines(t *testing.T, d r.Driver, desired *r.State) []string {
	t.Helper()
	plan, err := r.MakePlan(context.Background(), d, desired)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return lines(plan)
}

func lines(p *r.Plan) []string {
	out := []string{}
	for _, a := range p.Actions {
		out = append(out, r.Line(a))
	}
	return out
}

func ifindex(t *testing.T, h *netlink.Handle, name string) int {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	return l.Attrs().Index
}

func TestUpBuildsTwoNamespacesOnABridge(t *testing.T) {
	sb := newSandbox(t)
	d := &counting{Driver: sb.driver()}
	desired := twoContainers().s

	up(t, d, desired)

	// What a student sees with iproute2.
	if out := sb.mustRun("c1", "ip", "route"); !strings.Contains(out, "default via 10.10.0.1 dev eth0") {
		t.Errorf("ip -n c1 route: want the default route via the bridge address, got:\n%s", out)
	}
	if out := sb.mustRun("c1", "ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, "inet 10.10.0.2/24 brd 10.10.0.255 scope global eth0") {
		t.Errorf("ip -n c1 addr: want 10.10.0.2/24 with its broadcast on eth0, got:\n%s", out)
	}
	if out := sb.mustRun("host", "ip", "link", "show", "master", "br0"); !strings.Contains(out, "vc1@") || !strings.Contains(out, "vc2@") {
		t.Errorf("ip link show master br0: want vc1 and vc2 as ports, got:\n%s", out)
	}
	if out := sb.mustRun("host", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(out) != "1" {
		t.Errorf("host ip_forward = %q, want 1", out)
	}
	// Real traffic: the namespaces reach each other and the bridge's address.
	sb.mustRun("c1", "ping", "-c1", "-W2", "10.10.0.3")
	sb.mustRun("c2", "ping", "-c1", "-W2", "10.10.0.1")

	// The second up has nothing to do and writes nothing.
	h := sb.netlinkAt("c1")
	before := ifindex(t, h, "eth0")
	d.applied = nil
	if got := up(t, d, desired); len(got) != 0 {
		t.Errorf("second up planned %v, want nothing", got)
	}
	if len(d.applied) != 0 {
		t.Errorf("second up applied %v, want no kernel write", d.applied)
	}
	if after := ifindex(t, h, "eth0"); after != before {
		t.Errorf("c1:eth0 ifindex %d -> %d: the second up recreated it", before, after)
	}
}

func TestDriftIsRepairedExactly(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := twoContainers().s
	up(t, d, desired)

	// By hand: delete c2's veth (from the host end), change c1's address, remove c1's default route.
	host, c1 := sb.netlinkAt("host"), sb.netlinkAt("c1")
	vc2, _ := host.LinkByName("vc2")
	if err := host.LinkDel(vc2); err != nil {
		t.Fatal(err)
	}
	sb.mustRun("c1", "ip", "addr", "del", "10.10.0.2/24", "dev", "eth0")
	sb.mustRun("c1", "ip", "addr", "add", "10.10.0.99/24", "dev", "eth0")
	eth0Index := ifindex(t, c1, "eth0")

	// Removing 10.10.0.2 took c1's default route with it (the kernel flushes
	// routes whose gateway's subnet goes away), the third kind of drift. The stale
	// address goes before the new one is added: it is the subnet's primary, and
	// deleting it afterwards would delete the new one too.
	want := []string{
		"+ veth    c2:eth0 <-> host:vc2 master br0, up",
		"- addr    c1:eth0 10.10.0.99/24",
		"+ addr    c1:eth0 10.10.0.2/24",
		"+ addr    c2:eth0 10.10.0.3/24",
		"+ route   c1: default via 10.10.0.1 dev eth0",
		"+ route   c2: default via 10.10.0.1 dev eth0",
	}
	if diff := cmp.Diff(want, planLines(t, d, desired)); diff != "" {
		t.Errorf("plan after drift (-want +got):\n%s", diff)
	}
	up(t, d, desired)
	if got := ifindex(t, c1, "eth0"); got != eth0Index {
		t.Errorf("c1:eth0 was recreated (ifindex %d -> %d); only its address should change", eth0Index, got)
	}
	sb.mustRun("c1", "ping", "-c1", "-W2", "10.10.0.3")

	// A route removed on its own.
	sb.mustRun("c2", "ip", "route", "del", "default")
	if diff := cmp.Diff([]string{"+ route   c2: default via 10.10.0.1 dev eth0"}, planLines(t, d, desired)); diff != "" {
		t.Errorf("plan after route removal (-want +got):\n%s", diff)
	}
	up(t, d, desired)
}

func TestIncrementalChangesTouchOnlyWhatChanged(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	l := twoContainers()
	up(t, d, l.s)
	c1 := sb.netlinkAt("c1")
	eth0 := ifindex(t, c1, "eth0")

	// A second interface in c1, on a second bridge.
	l.bridge("br1", "10.20.0.1/24").veth(r.InterfaceKey{NS: "c1", Name: "eth1"}, r.InterfaceKey{NS: r.Host, Name: "vc1b"}, "br1", "10.20.0.2/24")
	want := []string{
		"+ bridge  host:br1",
		"+ veth    c1:eth1 <-> host:vc1b master br1, up",
		"+ addr    c1:eth1 10.20.0.2/24",
		"+ addr    host:br1 10.20.0.1/24",
		"+ link    host:br1 up",
	}
	if diff := cmp.Diff(want, up(t, d, l.s)); diff != "" {
		t.Errorf("adding eth1 (-want +got):\n%s", diff)
	}
	if got := ifindex(t, c1, "eth0"); got != eth0 {
		t.Errorf("c1:eth0 ifindex %d -> %d: adding eth1 recreated eth0", eth0, got)
	}
	if out := sb.mustRun("c1", "ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, "10.10.0.2/24") {
		t.Errorf("c1:eth0 lost its address:\n%s", out)
	}

	// Removing c2 from the file removes only c2 (its veth goes with it).
	delete(l.s.Namespaces, "c2")
	delete(l.s.Interfaces, r.InterfaceKey{NS: "c2", Name: "eth0"})
	delete(l.s.Interfaces, r.InterfaceKey{NS: r.Host, Name: "vc2"})
	delete(l.s.Addrs, r.AddrKey{InterfaceKey: r.InterfaceKey{NS: "c2", Name: "eth0"}, Prefix: netip.MustParsePrefix("10.10.0.3/24")})
	delete(l.s.Routes, r.RouteKey{NS: "c2", To: netip.MustParsePrefix("0.0.0.0/0")})
	if diff := cmp.Diff([]string{"- netns   c2"}, up(t, d, l.s)); diff != "" {
		t.Errorf("removing c2 (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(sb.netnsDir, "c2")); !os.IsNotExist(err) {
		t.Errorf("namespace file of c2 still there: %v", err)
	}
	if _, err := sb.netlinkAt("host").LinkByName("vc2"); err == nil {
		t.Error("host:vc2 still exists after c2 was removed")
	}
}

func TestForeignObjectsAreConflictsOrLeftAlone(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	host := sb.netlinkAt("host")

	// A bridge the lab wants, made by someone else.
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "br0"
	if err := host.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	// A namespace the lab wants, made by someone else (as `ip netns add c2` would).
	if err := d.createNetns("someone-else", "c2", false); err != nil {
		t.Fatal(err)
	}
	_, err := r.MakePlan(context.Background(), d, twoContainers().s)
	var conflict *r.ConflictError
	if !errors.As(err, &conflict) {
		t.Fatalf("plan with foreign br0 and c2: got %v, want a conflict", err)
	}
	want := []string{
		"namespace c2 already exists and belongs to lab someone-else",
		"interface host:br0 already exists and was not created by netlab",
	}
	if diff := cmp.Diff(want, conflict.Conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(sb.netnsDir, "c1")); !os.IsNotExist(err) {
		t.Error("a conflicting plan created c1")
	}

	// Without the conflicts: a foreign interface inside an owned namespace is left alone by up and down.
	host.LinkDel(mustLink(t, host, "br0"))
	if err := d.deleteNetns("someone-else", "c2", nil); err != nil {
		t.Fatal(err)
	}
	desired := twoContainers().s
	up(t, d, desired)
	sb.mustRun("c1", "ip", "link", "add", "foreign0", "type", "veth", "peer", "name", "foreign1")
	sb.mustRun("host", "ip", "link", "add", "hostonly", "type", "veth", "peer", "name", "hostonly1")
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("plan with foreign interfaces: %v, want no changes", got)
	}
	down(t, d, "spine")
	mustLink(t, host, "hostonly")
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	return l
}

// down plans the empty lab and applies it, as `netlab down` does.
func down(t *testing.T, d *Driver, labName string) []string {
	t.Helper()
	got := up(t, d, r.NewState(labName))
	if err := d.Forget(labName); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestDownLeavesNothingAndRestoresSysctls(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	sb.mustRun("host", "sysctl", "-qw", "net.ipv4.ip_forward=0")
	l := twoContainers().route(r.Host, "10.99.0.0/16", "10.10.0.2", "br0")
	up(t, d, l.s)
	if err := d.RecordLab("spine", "spine.yaml", ""); err != nil {
		t.Fatal(err)
	}

	want := []string{
		"- sysctl  host: net.ipv4.ip_forward 1 -> 0 (restored)",
		"- bridge  host:br0",
		"- netns   c1",
		"- netns   c2",
	}
	if diff := cmp.Diff(want, down(t, d, "spine")); diff != "" {
		t.Errorf("down plan (-want +got):\n%s", diff)
	}
	if out := sb.mustRun("host", "ip", "-o", "link"); strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("host interfaces after down, want only lo:\n%s", out)
	}
	if out := sb.mustRun("host", "ip", "route"); strings.TrimSpace(out) != "" {
		t.Errorf("host routes after down, want none:\n%s", out)
	}
	if entries, _ := os.ReadDir(sb.netnsDir); len(entries) != 0 {
		t.Errorf("namespace files after down: %v", entries)
	}
	if out := sb.mustRun("host", "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(out) != "0" {
		t.Errorf("ip_forward after down = %q, want it restored to 0", out)
	}
	if _, err := os.Stat(filepath.Join(sb.stateDir, "spine")); !os.IsNotExist(err) {
		t.Errorf("state of the lab still there after down: %v", err)
	}
	if got := down(t, d, "spine"); len(got) != 0 {
		t.Errorf("second down planned %v, want nothing", got)
	}
}

func TestInterruptedCreationIsAdoptedNotAConflict(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := twoContainers().s
	// As if an earlier up died between creating br0 and marking it.
	index := newIndex()
	if err := d.state.recordIntent("spine", r.InterfaceKey{NS: r.Host, Name: "br0"}, index); err != nil {
		t.Fatal(err)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.Index = "br0", index
	host := sb.netlinkAt("host")
	if err := host.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
		t.Fatal(err)
	}
	got := up(t, d, desired)
	if !strings.Contains(strings.Join(got, "\n"), "~ link    host:br0 mark netlab:spine") {
		t.Errorf("plan does not adopt the unmarked br0:\n%s", strings.Join(got, "\n"))
	}
	if alias := mustLink(t, host, "br0").Attrs().Alias; alias != "netlab:spine" {
		t.Errorf("br0 alias = %q after up, want netlab:spine", alias)
	}
}

// TestLeftoverIntentDoesNotAdoptAForeignBridge: the record of an interrupted
// creation of br0 (with its index, or an empty one of an older netlab), and a
// br0 made by hand: the bridge is not the lab's (its index is not the one
// recorded), so up is a conflict and down leaves it.
func TestLeftoverIntentDoesNotAdoptAForeignBridge(t *testing.T) {
	for _, leftover := range []string{"index", "empty"} {
		t.Run(leftover, func(t *testing.T) {
			sb := newSandbox(t)
			d := sb.driver()
			k := r.InterfaceKey{NS: r.Host, Name: "br0"}
			if err := d.state.recordIntent("spine", k, newIndex()); err != nil {
				t.Fatal(err)
			}
			if leftover == "empty" {
				if err := os.WriteFile(d.state.intentPath("spine", k), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			sb.mustRun("host", "ip", "link", "add", "br0", "type", "bridge")
			_, err := r.MakePlan(context.Background(), d, twoContainers().s)
			var conflict *r.ConflictError
			if !errors.As(err, &conflict) || !slices.Contains(conflict.Conflicts, "interface host:br0 already exists and was not created by netlab") {
				t.Fatalf("plan with a leftover intent and a hand-made br0: got %v, want a conflict on br0", err)
			}
			down(t, d, "spine")
			if alias := mustLink(t, sb.netlinkAt("host"), "br0").Attrs().Alias; alias != "" {
				t.Errorf("br0 alias = %q, want it untouched", alias)
			}
		})
	}
}

// TestInterfaceMadeBetweenPlanAndApply: a bridge, or a veth end, made by hand
// after the plan and before the apply: the create fails naming it (never taken
// as the lab's), and down leaves it.
func TestInterfaceMadeBetweenPlanAndApply(t *testing.T) {
	for _, made := range []string{"br0", "vc1"} {
		t.Run(made, func(t *testing.T) {
			sb := newSandbox(t)
			d := sb.driver()
			ctx := context.Background()
			desired := twoContainers().s
			plan, err := r.MakePlan(ctx, d, desired)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"ip", "link", "add", made, "type", "bridge"}
			if made != "br0" {
				args = []string{"ip", "link", "add", made, "type", "veth", "peer", "name", made + "-peer"}
			}
			sb.mustRun("host", args...)
			err = r.Apply(ctx, d, plan)
			if err == nil || !strings.Contains(err.Error(), "host:"+made+" exists") || !strings.Contains(err.Error(), "created by someone else between plan and apply") {
				t.Fatalf("apply with a hand-made %s: got %v, want an error naming it", made, err)
			}
			down(t, d, "spine")
			if alias := mustLink(t, sb.netlinkAt("host"), made).Attrs().Alias; alias != "" {
				t.Errorf("%s alias = %q, want it untouched", made, alias)
			}
		})
	}
}

// TestInterruptedVethIsAdoptedByIndex: a pair created with the indexes recorded
// before, then left unmarked (as a crash would leave it), is the lab's.
func TestInterruptedVethIsAdoptedByIndex(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := newLab("spine").veth(r.InterfaceKey{NS: r.Host, Name: "va"}, r.InterfaceKey{NS: r.Host, Name: "vb"}, "").s
	ia, ib := newIndex(), newIndex()
	for k, index := range map[string]int{"va": ia, "vb": ib} {
		if err := d.state.recordIntent("spine", r.InterfaceKey{NS: r.Host, Name: k}, index); err != nil {
			t.Fatal(err)
		}
	}
	sb.mustRun("host", "ip", "link", "add", "va", "index", fmt.Sprint(ia), "type", "veth", "peer", "name", "vb", "index", fmt.Sprint(ib))
	got := strings.Join(up(t, d, desired), "\n")
	if !strings.Contains(got, "host:va mark") || !strings.Contains(got, "host:vb mark") || strings.Contains(got, "+ veth") {
		t.Errorf("plan does not adopt the unmarked pair:\n%s", got)
	}
	down(t, d, "spine")
	if _, err := sb.netlinkAt("host").LinkByName("va"); err == nil {
		t.Error("va left after down")
	}
}

func TestIPv6AddressesRoutesAndNamespaceSysctls(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	l := newLab("six").
		bridge("br6", "2001:db8:1::1/64").
		container("a", "va", "br6", "2001:db8:1::2/64").
		route("a", "::/0", "2001:db8:1::1", "eth0").
		sysctl("a", "net.ipv4.ping_group_range", "0 2147483647").
		sysctl("a", "net.ipv6.conf.eth0.accept_ra", "0")
	up(t, d, l.s)
	if out := sb.mustRun("a", "ip", "-6", "route"); !strings.Contains(out, "default via 2001:db8:1::1 dev eth0") {
		t.Errorf("ip -6 route in a:\n%s", out)
	}
	if out := sb.mustRun("a", "sysctl", "-n", "net.ipv4.ping_group_range"); strings.Join(strings.Fields(out), " ") != "0 2147483647" {
		t.Errorf("ping_group_range in a = %q", out)
	}
	sb.mustRun("a", "ping", "-6", "-c1", "-W2", "2001:db8:1::1")
	if got := planLines(t, d, l.s); len(got) != 0 {
		t.Errorf("second plan: %v, want none (IPv6 metric and sysctl spacing must compare equal)", got)
	}
}

// A namespace the plan deletes is read only as far as deleting it needs (its
// marker and interfaces): the plan is the same as from a full reading, and its
// addresses, routes, table and sysctls are not read.
func TestLeavingNamespacesAreReadOnlyForTheirDeletion(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	const labText = `
name: leave
bridges:
  br0: {addresses: [10.10.0.1/24]}
namespaces:
  keep:
    interfaces: {eth0: {addresses: [10.10.0.2/24]}}
    routes: [default via 10.10.0.1]
%s
links:
  - [keep:eth0, br0]
%s
`
	const gone = `  gone:
    interfaces: {eth0: {addresses: [10.10.0.3/24]}}
    routes: [default via 10.10.0.1]
    sysctls: {net.ipv4.ip_forward: 1}
    nat:
      - {masquerade: {out: eth0}}`
	up(t, d, harness.DesiredFromText(t, fmt.Sprintf(labText, gone, "  - [gone:eth0, br0]")))
	ctx := context.Background()

	// The lab without "gone": read in full, then as a plan reads it.
	without := harness.DesiredFromText(t, fmt.Sprintf(labText, "", ""))
	full, err := d.Observe(ctx, r.Query{Lab: "leave", Tables: without.Tables})
	if err != nil {
		t.Fatal(err)
	}
	fullPlan, err := r.Diff(without, full)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r.MakePlan(ctx, d, without)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(lines(fullPlan), lines(plan)); diff != "" {
		t.Errorf("plan from a full reading vs from a plan's reading (-full +plan):\n%s", diff)
	}
	if !slices.Contains(lines(plan), "- netns   gone") {
		t.Errorf("plan %q does not delete gone", lines(plan))
	}

	shallow, err := d.Observe(ctx, r.Query{Lab: "leave", Keep: map[string]bool{"keep": true}})
	if err != nil {
		t.Fatal(err)
	}
	if shallow.Namespaces["gone"] == nil || shallow.Interfaces[r.InterfaceKey{NS: "gone", Name: "eth0"}] == nil {
		t.Errorf("gone or its eth0 missing from the shallow reading: %v", shallow.Interfaces)
	}
	for k := range shallow.Addrs {
		if k.NS == "gone" {
			t.Errorf("address of gone read: %v", k)
		}
	}
	for k := range shallow.Routes {
		if k.NS == "gone" {
			t.Errorf("route of gone read: %v", k)
		}
	}
	if shallow.Tables["gone"] != nil {
		t.Errorf("table of gone read")
	}
	forward := r.SysctlKey{NS: "gone", Path: r.SysctlPath("net.ipv4.ip_forward")}
	if _, ok := shallow.Sysctls[forward]; ok {
		t.Errorf("sysctl of gone read")
	}
	if _, ok := full.Sysctls[forward]; !ok || full.Tables["gone"] == nil || full.Routes[r.RouteKey{NS: "gone", To: netip.MustParsePrefix("0.0.0.0/0")}] == nil {
		t.Errorf("the full reading lacks gone's sysctl, table or default route: the test proves nothing")
	}
	up(t, d, without)
}

// Verify after a plan reads again the namespaces the plan touched, and answers
// for the others from the reading the plan was made from. A veth added between
// two namespaces that exist touches both: if the far one were answered from the
// earlier reading, the new end's peer would not be found there.
func TestVerifyRereadsBothEndsOfANewVeth(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	const labText = `
name: wire
namespaces:
  a:
  b:
%s`
	up(t, d, harness.DesiredFromText(t, fmt.Sprintf(labText, "")))
	got := up(t, d, harness.DesiredFromText(t, fmt.Sprintf(labText, "links:\n  - [a:x, b:y]\n")))
	if diff := cmp.Diff([]string{"+ veth    a:x <-> b:y, up"}, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
}

// A namespace file that lost its mount since the last reading (an umount, an
// interrupted `ip netns del`) is a plain file at the next observation, also
// at one that answers for the lab's untouched namespaces from the earlier
// reading (Verify): what is in the namespace directory is read every time.
func TestUnmountedNamespaceIsNotAnsweredFromAnEarlierReading(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, harness.DesiredFromText(t, "name: wire\nnamespaces:\n  a:\n  b:\n"))
	ctx := context.Background()
	before, err := d.Observe(ctx, r.Query{Lab: "wire"})
	if err != nil {
		t.Fatal(err)
	}
	if before.Namespaces["b"] == nil {
		t.Fatalf("namespace b not observed after up: %v", slices.Collect(maps.Keys(before.Namespaces)))
	}
	if err := unix.Unmount(filepath.Join(sb.netnsDir, "b"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	after, err := d.Observe(ctx, r.Query{Lab: "wire", Reread: map[string]bool{"a": true}})
	if err != nil {
		t.Fatal(err)
	}
	if after.Namespaces["b"] != nil {
		t.Error("the unmounted namespace b was answered from the earlier reading")
	}
	if !strings.Contains(after.NotNetns["b"], "plain file") {
		t.Errorf("NotNetns[b] = %q, want a plain file", after.NotNetns["b"])
	}
	d.mu.Lock()
	_, kept := d.handles["b"]
	d.mu.Unlock()
	if kept {
		t.Error("the handle of the unmounted namespace b is still open for later steps")
	}
}

// A namespace named "host" in the namespace directory, made by someone else
// (`ip netns add host`), is not the machine's own namespace, which plans and
// state call "host": it is never read as it, and the lab's veths keep their
// host ends.
func TestANamespaceNamedHostIsNotTheHost(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := twoContainers().s
	up(t, d, desired)
	sb.mountForeignNetns("host")
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("plan with a namespace file named host: %v, want no changes", got)
	}
	if err := d.createNetns("spine", "host", false); err == nil {
		t.Error("createNetns made a namespace named host")
	}
}

// mountForeignNetns makes a namespace that is no lab's under name in the
// sandbox's namespace directory, as `ip netns add NAME` does.
func (sb *sandbox) mountForeignNetns(name string) {
	sb.t.Helper()
	path := filepath.Join(sb.netnsDir, name)
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		sb.t.Fatal(err)
	}
	err := inNewNetns(func() error {
		return unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
	})
	if err != nil {
		sb.t.Fatalf("make namespace %s: %v", name, err)
	}
}

// replaceWithForeignNetns deletes a namespace of the sandbox and makes one that
// is no lab's under its name, as `ip netns del NAME; ip netns add NAME` does; it
// returns the name's path.
func (sb *sandbox) replaceWithForeignNetns(name string) string {
	sb.t.Helper()
	path := filepath.Join(sb.netnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		sb.t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		sb.t.Fatal(err)
	}
	sb.mountForeignNetns(name)
	return path
}

// A lab namespace that someone else deletes and makes again under the same
// name while netlab runs (`ip netns del b; ip netns add b`) is the new one
// from then on: the handle opened on the old one neither answers for the
// name nor lets it be deleted.
func TestReplacedNamespaceIsNotServedByTheOldHandle(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, "name: wire\nnamespaces:\n  a:\n  b:\n")
	up(t, d, desired)
	sb.replaceWithForeignNetns("b")

	if err := d.deleteNetns("wire", "b", nil); err == nil {
		t.Error("deleteNetns deleted a namespace made after the lab's, through the lab's old handle")
	}
	if what := d.plainNetnsFile("b"); what != "" {
		t.Fatalf("the other namespace b was unmounted: %s", what)
	}
	_, err := r.MakePlan(context.Background(), d, desired)
	var conflict *r.ConflictError
	if !errors.As(err, &conflict) || !slices.ContainsFunc(conflict.Conflicts, func(c string) bool { return strings.Contains(c, "namespace b") }) {
		t.Errorf("plan with b made again by someone else: %v, want a conflict on namespace b", err)
	}
}
