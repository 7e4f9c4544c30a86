package reconcile

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Op is what an action does to its object, as the plan shows it.
type Op string

const (
	OpAdd     Op = "+"
	OpChange  Op = "~"
	OpDelete  Op = "-"
	OpReplace Op = "-/+" // the delete half of a change the kernel cannot make in place
)

// Phase orders a plan: deletions first, in reverse order of creation, then creation
// from namespaces outwards. Within a phase, actions are sorted by object.
type Phase int

const (
	phaseStopProcess Phase = iota
	phaseForgetExec
	phaseDeleteFile
	phaseDeleteTable
	phaseRestoreSysctl
	phaseDeleteQdisc
	phaseDeleteRoute
	phaseDeleteVeth
	phaseDeleteBridge
	phaseDeleteNetns

	phaseCreateNetns
	phaseNetnsAttrs
	phaseCreateBridge
	phaseCreateVeth
	phaseMark
	phaseMaster
	phaseHairpin
	phaseLinkAttrs
	phaseDeleteAddrFirst // stale addresses that would take new ones with them (see DeleteAddr)
	phaseAddAddr
	phaseDeleteAddr // other stale addresses go after new ones are in place
	phaseUp
	phaseQdisc
	phaseRoute
	phaseSysctl
	phaseNft
	phaseFile
	phaseExec // one-shot commands, once the namespace is configured and before its processes
	phaseProcess
)

// applyGroup is the phase the actions of p are applied with. Deleting a bridge
// and deleting namespaces do not depend on each other, and both are mostly
// waiting for RCU grace periods (one per port leaving the bridge, one per
// unmounted namespace): applied together, the waits overlap and share grace
// periods.
func (p Phase) applyGroup() Phase {
	if p == phaseDeleteNetns {
		return phaseDeleteBridge
	}
	return p
}

// Action is one step of a plan: one object, one kernel operation, one line of the
// plan, and the iproute2 commands that would do the same.
type Action interface {
	Op() Op
	Phase() Phase
	// Kind is the object kind as the plan prints it: netns, bridge, veth, port, link, addr, route, sysctl.
	Kind() string
	// Object is the plan line after the kind ("web:eth0 172.17.0.2/16"); it also sorts actions within a phase.
	Object() string
	// Commands are the equivalent shell commands (`netlab plan -o commands`).
	Commands() []string
	// Namespaces are the namespaces the action changes (Host for the host's):
	// after a plan, Verify reads again only those.
	Namespaces() []string
	// ApplyTo performs the action with d's method for its kind (ApplyCreateNetns
	// for a CreateNetns, ...): a driver that lacks one is no Applier and does
	// not compile.
	ApplyTo(ctx context.Context, d Applier) error
}

// CreateNetns creates a namespace, marks it as the lab's (alias of its loopback) and
// brings its loopback up.
type CreateNetns struct {
	Lab  string
	Name string
	IPv6 bool // off: disabled before any interface exists in it
}

func (a CreateNetns) Op() Op       { return OpAdd }
func (a CreateNetns) Phase() Phase { return phaseCreateNetns }
func (a CreateNetns) Kind() string { return "netns" }
func (a CreateNetns) Object() string {
	if !a.IPv6 {
		return a.Name + " (IPv6 off)"
	}
	return a.Name
}
func (a CreateNetns) Commands() []string {
	cmds := []string{"ip netns add " + a.Name}
	if !a.IPv6 {
		cmds = append(cmds, ipv6Command(a.Name, false))
	}
	return append(cmds,
		fmt.Sprintf("ip -n %s link set lo alias %s", a.Name, Marker(a.Lab)),
		fmt.Sprintf("ip -n %s link set lo up", a.Name))
}

func (a CreateNetns) Namespaces() []string                         { return []string{a.Name} }
func (a CreateNetns) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyCreateNetns(ctx, a) }

func ipv6Command(ns string, on bool) string {
	v := "1"
	if on {
		v = "0"
	}
	return fmt.Sprintf("ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=%s net.ipv6.conf.default.disable_ipv6=%s", ns, v, v)
}

// SetIPv6 turns IPv6 on or off in a namespace: for every interface in it and
// for those made later.
type SetIPv6 struct {
	Name string
	On   bool
}

func (a SetIPv6) Op() Op       { return OpChange }
func (a SetIPv6) Phase() Phase { return phaseNetnsAttrs }
func (a SetIPv6) Kind() string { return "netns" }
func (a SetIPv6) Object() string {
	if a.On {
		return a.Name + " IPv6 off -> on"
	}
	return a.Name + " IPv6 on -> off"
}
func (a SetIPv6) Commands() []string {
	cmd := ipv6Command(a.Name, a.On)
	v := "1"
	if a.On {
		v = "0"
	}
	return []string{cmd, fmt.Sprintf("for i in $(ip -n %s -o link | awk -F'[:@ ]+' '{print $2}'); do ip netns exec %s sysctl -qw net.ipv6.conf.$i.disable_ipv6=%s; done", a.Name, a.Name, v)}
}

func (a SetIPv6) Namespaces() []string                         { return []string{a.Name} }
func (a SetIPv6) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetIPv6(ctx, a) }

// DeleteNetns deletes a namespace and, with it, everything inside.
type DeleteNetns struct {
	Lab  string
	Name string
	// Takes are the interfaces outside the namespace that go with it (the other
	// ends of its veths): the kernel deletes them a moment after the namespace.
	Takes []InterfaceKey
}

func (a DeleteNetns) Op() Op             { return OpDelete }
func (a DeleteNetns) Phase() Phase       { return phaseDeleteNetns }
func (a DeleteNetns) Kind() string       { return "netns" }
func (a DeleteNetns) Object() string     { return a.Name }
func (a DeleteNetns) Commands() []string { return []string{"ip netns del " + a.Name} }

// Namespaces: the namespace, and where the other ends of its veths were.
func (a DeleteNetns) Namespaces() []string {
	ns := []string{a.Name}
	for _, k := range a.Takes {
		ns = append(ns, k.NS)
	}
	return ns
}

func (a DeleteNetns) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyDeleteNetns(ctx, a) }

// CreateBridge creates a bridge and marks it as the lab's.
type CreateBridge struct {
	Lab string
	InterfaceKey
	MTU         int
	MAC         string
	SnoopingOff bool // multicast snooping off (`multicast-snooping: false`)
}

func (a CreateBridge) Op() Op       { return OpAdd }
func (a CreateBridge) Phase() Phase { return phaseCreateBridge }
func (a CreateBridge) Kind() string { return "bridge" }
func (a CreateBridge) Object() string {
	if a.SnoopingOff {
		return a.InterfaceKey.String() + attrText(a.MTU, a.MAC, "multicast snooping off")
	}
	return a.InterfaceKey.String() + attrText(a.MTU, a.MAC)
}
func (a CreateBridge) Commands() []string {
	snooping := ""
	if a.SnoopingOff {
		snooping = " mcast_snooping 0"
	}
	return []string{
		fmt.Sprintf("%s link add %s%s type bridge%s", ipn(a.NS), a.Name, attrArgs(a.MTU, a.MAC), snooping),
		fmt.Sprintf("%s link set %s alias %s", ipn(a.NS), a.Name, Marker(a.Lab)),
	}
}

func (a CreateBridge) Namespaces() []string { return []string{a.NS} }
func (a CreateBridge) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyCreateBridge(ctx, a)
}

// VethEnd is one end of a veth pair being created: where it goes, and what the
// kernel can give it in the same request (its bridge, its up state).
type VethEnd struct {
	InterfaceKey
	MTU    int
	MAC    string
	Master string // the bridge it is a port of; "" none
	Up     bool
}

// CreateVeth creates a veth pair with each end directly in its namespace (a crash
// never leaves an end in the wrong place), already a port of its bridge, marks
// both ends as the lab's and brings them up. `ip link add` takes the namespaces,
// the bridge and the up state in one command, and the kernel the pair and its
// bridge in one request (the driver then marks each end and brings it up, one
// request each, in the order that costs the kernel least).
//
// Main is the pair's main end (see IsMainEnd: the bridge port when only one end
// is one, else the end that sorts first), the end the pair is created from;
// Peer is the other end.
type CreateVeth struct {
	Lab        string
	Main, Peer VethEnd
}

func (a CreateVeth) Op() Op       { return OpAdd }
func (a CreateVeth) Phase() Phase { return phaseCreateVeth }
func (a CreateVeth) Kind() string { return "veth" }

func (a CreateVeth) Namespaces() []string                         { return []string{a.Main.NS, a.Peer.NS} }
func (a CreateVeth) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyCreateVeth(ctx, a) }
func (a CreateVeth) Object() string {
	end := func(e VethEnd) string {
		if e.Master != "" {
			return e.InterfaceKey.String() + " master " + e.Master
		}
		return e.InterfaceKey.String()
	}
	// The plan names a pair from its container side first: the peer, when the
	// main end is the only bridge port.
	first, second := a.Main, a.Peer
	if a.Main.Master != "" && a.Peer.Master == "" {
		first, second = a.Peer, a.Main
	}
	s := end(first) + " <-> " + end(second)
	if a.Main.Up && a.Peer.Up {
		s += ", up"
	}
	return s
}

// Commands: `ip link add` names the main end (the kernel takes a master only
// for that one); the other end cannot be brought up before the pair exists, so
// it is brought up with its marker.
func (a CreateVeth) Commands() []string {
	main, peer := a.Main, a.Peer
	end := func(e VethEnd, netns string) string {
		s := e.Name + netns
		if e == main && e.Master != "" {
			s += " txqueuelen 0" // as Docker's host ends: a bridge port queues nothing
		}
		return s + attrArgs(e.MTU, e.MAC) + " numtxqueues 1 numrxqueues 1"
	}
	peerNetns := ""
	if peer.NS != main.NS {
		peerNetns = " netns " + peer.NS
		if peer.NS == Host { // the host's namespace has no name: the script's own shell is in it
			peerNetns = " netns /proc/$$/ns/net"
		}
	}
	// Run in the main end's namespace, where ip looks its bridge up by name.
	add := ipn(main.NS) + " link add " + end(main, "")
	if main.Master != "" {
		add += " master " + main.Master
	}
	if main.Up {
		add += " up"
	}
	cmds := []string{
		add + " type veth peer name " + end(peer, peerNetns),
		fmt.Sprintf("%s link set %s alias %s", ipn(main.NS), main.Name, Marker(a.Lab)),
	}
	peerSet := fmt.Sprintf("%s link set %s alias %s", ipn(peer.NS), peer.Name, Marker(a.Lab))
	if peer.Master != "" {
		peerSet += " master " + peer.Master
	}
	if peer.Up {
		peerSet += " up"
	}
	return append(cmds, peerSet)
}

// DeleteInterface deletes an interface (for a veth, both ends go).
type DeleteInterface struct {
	InterfaceKey
	InterfaceKind string
	Peer          InterfaceKey // veth only, for the plan line
	Replace       bool         // deleted to be created again differently (same plan)
	Why           string       // for a replace: what made it necessary
}

func (a DeleteInterface) Op() Op {
	if a.Replace {
		return OpReplace
	}
	return OpDelete
}
func (a DeleteInterface) Phase() Phase {
	if a.InterfaceKind == KindBridge {
		return phaseDeleteBridge
	}
	return phaseDeleteVeth
}
func (a DeleteInterface) Kind() string { return a.InterfaceKind }
func (a DeleteInterface) Object() string {
	s := a.InterfaceKey.String()
	if a.InterfaceKind == KindVeth && a.Peer != (InterfaceKey{}) {
		s += " <-> " + a.Peer.String()
	}
	if a.Why != "" {
		s += " (" + a.Why + ")"
	}
	return s
}
func (a DeleteInterface) Commands() []string {
	del := fmt.Sprintf("%s link del %s", ipn(a.NS), a.Name)
	if a.InterfaceKind == KindBridge { // down first: its ports then leave without a walk over the others each
		return []string{fmt.Sprintf("%s link set %s down", ipn(a.NS), a.Name), del}
	}
	return []string{del}
}

// Namespaces: the interface's, and for a veth its peer's, which goes with it.
func (a DeleteInterface) Namespaces() []string {
	if a.Peer != (InterfaceKey{}) {
		return []string{a.NS, a.Peer.NS}
	}
	return []string{a.NS}
}

func (a DeleteInterface) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyDeleteInterface(ctx, a)
}

// AddAddr adds an address to an interface.
type AddAddr struct{ AddrKey }

func (a AddAddr) Op() Op         { return OpAdd }
func (a AddAddr) Phase() Phase   { return phaseAddAddr }
func (a AddAddr) Kind() string   { return "addr" }
func (a AddAddr) Object() string { return a.InterfaceKey.String() + " " + a.Prefix.String() }
func (a AddAddr) Commands() []string {
	return []string{fmt.Sprintf("%s addr replace %s%s dev %s%s", ipn(a.NS), a.Prefix, brd(a.Prefix), a.Name, nodad(a.Prefix))}
}

func (a AddAddr) Namespaces() []string                         { return []string{a.NS} }
func (a AddAddr) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyAddAddr(ctx, a) }

// brd: IPv4 addresses get their subnet's broadcast address, as Docker's do.
func brd(p netip.Prefix) string {
	if p.Addr().Is4() && p.Bits() < 31 {
		return " brd +"
	}
	return ""
}

// nodad: IPv6 addresses skip duplicate address detection, so a lab is usable at
// once (the addresses are the lab's own, on links it just made).
func nodad(p netip.Prefix) string {
	if p.Addr().Is6() {
		return " nodad"
	}
	return ""
}

// DeleteAddr removes an address from an interface. Stale addresses normally go
// after the new ones are added, so the interface is never left without one. But
// when an IPv4 address shares its subnet with a new one, the stale one is the
// subnet's primary, and deleting a primary deletes its secondaries too (unless
// promote_secondaries is set): such a stale address goes first.
type DeleteAddr struct {
	AddrKey
	First bool
}

func (a DeleteAddr) Op() Op { return OpDelete }
func (a DeleteAddr) Phase() Phase {
	if a.First {
		return phaseDeleteAddrFirst
	}
	return phaseDeleteAddr
}
func (a DeleteAddr) Kind() string   { return "addr" }
func (a DeleteAddr) Object() string { return a.InterfaceKey.String() + " " + a.Prefix.String() }
func (a DeleteAddr) Commands() []string {
	return []string{fmt.Sprintf("%s addr del %s dev %s", ipn(a.NS), a.Prefix, a.Name)}
}

func (a DeleteAddr) Namespaces() []string                         { return []string{a.NS} }
func (a DeleteAddr) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyDeleteAddr(ctx, a) }

// ReplaceRoute adds a route, or changes the gateway or device of an existing one.
type ReplaceRoute struct {
	Route
	Old *Route // nil when the route is new
	Why string // for a route added again: why it will be gone
}

func (a ReplaceRoute) Op() Op {
	if a.Old == nil {
		return OpAdd
	}
	return OpChange
}
func (a ReplaceRoute) Phase() Phase { return phaseRoute }
func (a ReplaceRoute) Kind() string { return "route" }
func (a ReplaceRoute) Object() string {
	if a.Old == nil {
		s := a.NS + ": " + a.Route.spec()
		if a.Why != "" {
			s += " (" + a.Why + ")"
		}
		return s
	}
	return a.NS + ": " + a.Old.spec() + " -> " + a.Route.target()
}
func (a ReplaceRoute) Commands() []string {
	return []string{fmt.Sprintf("%s route replace %s", ipn(a.NS), a.Route.spec())}
}

func (a ReplaceRoute) Namespaces() []string { return []string{a.NS} }
func (a ReplaceRoute) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyReplaceRoute(ctx, a)
}

// DeleteRoute removes a route.
type DeleteRoute struct{ Route }

func (a DeleteRoute) Op() Op         { return OpDelete }
func (a DeleteRoute) Phase() Phase   { return phaseDeleteRoute }
func (a DeleteRoute) Kind() string   { return "route" }
func (a DeleteRoute) Object() string { return a.NS + ": " + a.Route.spec() }
func (a DeleteRoute) Commands() []string {
	return []string{fmt.Sprintf("%s route del %s", ipn(a.NS), a.Route.spec())}
}

func (a DeleteRoute) Namespaces() []string                         { return []string{a.NS} }
func (a DeleteRoute) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyDeleteRoute(ctx, a) }

// spec is the route in iproute2 syntax: "default via 172.17.0.1 dev eth0".
func (r Route) spec() string {
	dst := r.To.String()
	if r.To.Bits() == 0 && (r.Via.IsValid() || r.To.Addr().Is4()) {
		// ip takes "default" for IPv4 unless a gateway says otherwise: an IPv6
		// default route through a device alone stays ::/0.
		dst = "default"
	}
	s := dst + " " + r.target()
	if r.Metric != 0 && !(r.To.Addr().Is6() && r.Metric == 1024) {
		s += " metric " + strconv.Itoa(r.Metric)
	}
	return s
}

// target is where the route sends packets: "via 172.17.0.1 dev eth0".
func (r Route) target() string {
	if r.Via.IsValid() {
		return "via " + r.Via.String() + " dev " + r.Dev
	}
	return "dev " + r.Dev
}

// SetSysctl writes a sysctl of a namespace. The driver remembers the value it
// replaces the first time, so that Restore can put it back. A sysctl of the host
// is shared by every lab: the driver keeps one record for the machine, with the
// labs that set it, and puts the original back when the last of them lets go.
type SetSysctl struct {
	Lab string
	SysctlKey
	Value   string
	Old     string // "" when unknown (the namespace is created by the same plan)
	Restore bool   // putting back the value from before the lab, which then forgets it
	// Shared names the other labs that set this host sysctl to Value (", "
	// between them): setting it joins them; restoring it only lets go, the
	// value staying for them.
	Shared string
}

func (a SetSysctl) Op() Op {
	switch {
	case a.Restore:
		return OpDelete
	case a.Old == "":
		return OpAdd
	}
	return OpChange
}
func (a SetSysctl) Phase() Phase {
	if a.Restore {
		return phaseRestoreSysctl
	}
	return phaseSysctl
}
func (a SetSysctl) Kind() string { return "sysctl" }

// Object shows values as the kernel prints them, fields separated by one space
// (the kernel separates some with a tab: ping_group_range "0\t2147483647").
func (a SetSysctl) Object() string {
	s := a.NS + ": " + a.Name()
	value, old := NormalizeSysctlValue(a.Value), NormalizeSysctlValue(a.Old)
	switch {
	case a.Restore && a.Shared != "":
		return s + " = " + value + " (kept for lab " + a.Shared + ")"
	case a.Restore:
		return s + " " + old + " -> " + value + " (restored)"
	case a.Old == "":
		s += " = " + value
	default:
		s += " " + old + " -> " + value
	}
	if a.Shared != "" {
		s += " (shared with lab " + a.Shared + ")"
	}
	return s
}

// Commands: the value a sysctl had before the lab is recorded by netlab itself
// (the same code as `up`), so that `netlab down` puts it back after a script too.
func (a SetSysctl) Commands() []string {
	if a.Restore {
		return []string{fmt.Sprintf("netlab __restore-sysctl %s %s %s  # put back the value from before the lab (unless another lab still sets it)", a.Lab, a.NS, a.Name())}
	}
	return []string{
		fmt.Sprintf("netlab __save-sysctl %s %s %s=%s  # record the value it replaces, for netlab down", a.Lab, a.NS, a.Name(), shellQuote(a.Value)),
		fmt.Sprintf("%ssysctl -qw %s=%s", nsExec(a.NS), a.Name(), shellQuote(a.Value)),
	}
}

func (a SetSysctl) Namespaces() []string                         { return []string{a.NS} }
func (a SetSysctl) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetSysctl(ctx, a) }

func attrText(mtu int, mac string, more ...string) string {
	var parts []string
	if mtu != 0 {
		parts = append(parts, "mtu "+strconv.Itoa(mtu))
	}
	if mac != "" {
		parts = append(parts, "mac "+mac)
	}
	parts = append(parts, more...)
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func attrArgs(mtu int, mac string) string {
	s := ""
	if mtu != 0 {
		s += " mtu " + strconv.Itoa(mtu)
	}
	if mac != "" {
		s += " address " + mac
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
