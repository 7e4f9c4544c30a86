package reconcile

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Plan is the ordered list of actions that takes the observed state to the desired one.
type Plan struct {
	Lab      string
	File     string // the lab's file, when known: a script of the plan records it as up does
	Actions  []Action
	Warnings []string // found while observing: not netlab's to fix, but the user's to know
	// Refusals are what this run cannot do of the plan (stop a process in a
	// cgroup it cannot write): Apply refuses the whole plan before any change.
	// The plan is still made, so that plan and status show it.
	Refusals []string
}

// Empty reports whether the kernel already matches.
func (p *Plan) Empty() bool { return len(p.Actions) == 0 }

// Counts returns how many actions add, change and destroy, Terraform style (the
// delete half of a replace counts as a destroy).
func (p *Plan) Counts() (add, change, destroy int) {
	for _, a := range p.Actions {
		switch a.Op() {
		case OpAdd:
			add++
		case OpChange:
			change++
		case OpDelete, OpReplace:
			destroy++
		}
	}
	return add, change, destroy
}

// RefusedError says that the plan needs what this run cannot do (stop a
// process it cannot stop, Plan.Refusals). Apply returns it before any change,
// so that no down or up is left half done.
type RefusedError struct {
	Lab     string
	Reasons []string
}

// Refused is the plan's RefusedError, nil when this run can carry it out.
func (p *Plan) Refused() error {
	if len(p.Refusals) == 0 {
		return nil
	}
	return &RefusedError{Lab: p.Lab, Reasons: p.Refusals}
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("lab %s: this run cannot carry out the plan (nothing was changed):\n  %s",
		e.Lab, strings.Join(e.Reasons, "\n  "))
}

// ConflictError says that objects the lab wants exist and belong to someone else.
// It is returned before any change is made.
type ConflictError struct {
	Lab       string
	Conflicts []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("lab %s conflicts with objects it does not own (nothing was changed):\n  %s",
		e.Lab, strings.Join(e.Conflicts, "\n  "))
}

// Diff returns the plan that makes observed equal to desired, or a *ConflictError
// when a name the lab wants is taken by an object it does not own.
func Diff(desired, observed *State) (*Plan, error) {
	if err := conflicts(desired, observed); err != nil {
		return nil, err
	}
	if err := missingSysctls(desired, observed); err != nil {
		return nil, err
	}
	if err := missingModules(desired, observed); err != nil {
		return nil, err
	}
	d := &differ{desired: desired, observed: observed, goneNetns: map[string]bool{}, goneInterfaces: map[InterfaceKey]bool{}}
	d.namespaces()
	d.links()
	d.linkStates()
	d.qdiscs()
	d.addrs()
	d.routes()
	d.sysctls()
	d.tables()
	d.files()
	d.uts()
	d.execs()
	d.processes()
	slices.SortStableFunc(d.actions, func(a, b Action) int {
		return cmp.Or(cmp.Compare(a.Phase(), b.Phase()), strings.Compare(sortKey(a), sortKey(b)))
	})
	return &Plan{Lab: desired.Lab, Actions: d.actions, Warnings: append(slices.Clone(observed.Warnings), d.warnings...), Refusals: d.refusals}, nil
}

// sortKey orders actions within a phase: by object, unless the action says
// otherwise (the exec commands of a namespace keep their order in the file).
func sortKey(a Action) string {
	if k, ok := a.(interface{ SortKey() string }); ok {
		return k.SortKey()
	}
	return a.Object()
}

func conflicts(desired, observed *State) error {
	var out []string
	for _, name := range sortedKeys(desired.Namespaces, strings.Compare) {
		if owner, ok := observed.ForeignNetns[name]; ok {
			out = append(out, fmt.Sprintf("namespace %s already exists and %s", name, ownedBy(owner)))
		}
		if what, ok := observed.NotNetns[name]; ok {
			out = append(out, fmt.Sprintf("namespace %s cannot be made: %s (netlab neither opens nor removes it)", name, what))
		}
	}
	for _, k := range sortedKeys(desired.Interfaces, InterfaceKey.compare) {
		if owner, ok := observed.ForeignInterfaces[k]; ok {
			out = append(out, fmt.Sprintf("interface %s already exists and %s", k, ownedBy(owner)))
		}
	}
	for _, k := range sortedKeys(desired.Files, FileKey.compare) {
		if observed.ForeignFiles[k] {
			out = append(out, fmt.Sprintf("file %s already exists and was not written by netlab for lab %s", k.Path(), desired.Lab))
		}
	}
	for _, k := range sortedKeys(desired.DockerTables, TableKey.compare) {
		if owner, ok := observed.ForeignTables[k]; ok {
			out = append(out, foreignTable(k, owner))
		}
	}
	out = append(out, foreignRoutes(desired, observed)...)
	out = append(out, foreignAddrs(desired, observed)...)
	out = append(out, sysctlConflicts(desired, observed)...)
	out = append(out, observed.IptablesConflicts...)
	if len(out) == 0 {
		return nil
	}
	return &ConflictError{Lab: desired.Lab, Conflicts: out}
}

// foreignTable: Docker's table of that name is there and is not the lab's.
func foreignTable(k TableKey, owner string) string {
	if owner != "" {
		return fmt.Sprintf("%s belongs to lab %s: one lab at a time writes Docker's nftables layout in a namespace, "+
			"as one dockerd does (take lab %s down first, or use docker: {firewall: native})", k, owner, owner)
	}
	return fmt.Sprintf("%s already exists and was not written by netlab (a running dockerd's, with --firewall-backend=nftables?). "+
		"netlab writes Docker's nftables layout only where no dockerd does: stop dockerd and delete the table "+
		"(nft delete table %s %s), or use docker: {firewall: native}, netlab's own table, which coexists with anything",
		k, k.Family, DockerTableName)
}

// foreignRoutes: a route the lab wants whose key (destination, metric) is
// taken by a route on an interface that is not the lab's. Replacing it would
// take the machine's route (its default route, say) and `down` would then
// delete it: netlab refuses instead.
func foreignRoutes(desired, observed *State) []string {
	var out []string
	for _, k := range sortedKeys(desired.Routes, RouteKey.compare) {
		have, ok := observed.ForeignRoutes[k]
		if !ok {
			continue
		}
		dst := k.To.String()
		if k.To.Bits() == 0 {
			dst = "default"
		}
		where := "(" + have.target() + ")"
		if have.Dev == "" {
			where = "(with no interface)"
		}
		what := fmt.Sprintf("route %s: %s (metric %d) already exists %s", k.NS, dst, k.Metric, where)
		if owner := observed.ForeignInterfaces[InterfaceKey{k.NS, have.Dev}]; owner != "" && owner != desired.Lab {
			out = append(out, fmt.Sprintf("%s on an interface of lab %s; give the lab's route another metric, or take lab %s down first", what, owner, owner))
			continue
		}
		out = append(out, fmt.Sprintf("%s and was not created by netlab for lab %s; give the lab's route another metric, or remove the machine's route yourself", what, desired.Lab))
	}
	return out
}

// foreignAddrs: an address the lab wants that an interface not the lab's
// already has in the same namespace. The kernel would hold it twice, with a
// second route to its subnet: the machine's traffic could leave through the
// lab's interface.
func foreignAddrs(desired, observed *State) []string {
	type nsAddr struct {
		ns   string
		addr netip.Addr
	}
	theirs := map[nsAddr][]AddrKey{}
	for _, k := range sortedKeys(observed.ForeignAddrs, AddrKey.compare) {
		a := nsAddr{k.NS, k.Prefix.Addr()}
		theirs[a] = append(theirs[a], k)
	}
	var out []string
	for _, k := range sortedKeys(desired.Addrs, AddrKey.compare) {
		for _, f := range theirs[nsAddr{k.NS, k.Prefix.Addr()}] {
			owner := "which was not created by netlab for lab " + desired.Lab
			fix := "remove it from " + f.Name + " yourself"
			if o := observed.ForeignInterfaces[f.InterfaceKey]; o != "" && o != desired.Lab {
				owner, fix = "which belongs to lab "+o, "take lab "+o+" down first"
			}
			out = append(out, fmt.Sprintf("address %s %s: %s is already an address of %s, %s; give the lab another address, or %s",
				k.InterfaceKey, k.Prefix, k.Prefix.Addr(), f.InterfaceKey, owner, fix))
		}
	}
	return out
}

// sysctlConflicts: a host sysctl another lab set to another value (the host is
// shared: one of the two labs would silently undo the other), and records of
// saved values that cannot be read while the lab wants to set sysctls whose
// originals go there.
func sysctlConflicts(desired, observed *State) []string {
	var out []string
	hostSysctls, nsSysctls := false, false
	for _, k := range sortedKeys(desired.Sysctls, SysctlKey.compare) {
		if k.NS != Host {
			nsSysctls = true
			continue
		}
		hostSysctls = true
		sh := observed.SharedSysctls[k]
		if sh == nil {
			continue
		}
		if others := sh.Others(desired.Lab); len(others) > 0 && NormalizeSysctlValue(sh.Value) != NormalizeSysctlValue(desired.Sysctls[k]) {
			out = append(out, fmt.Sprintf("sysctl host: %s: lab %s wants %s, but %s set it to %s and %s still up; give the labs the same value, or take %s down first",
				k.Name(), desired.Lab, desired.Sysctls[k], labList(others), sh.Value, isAre(others), labList(others)))
		}
	}
	for _, b := range observed.BadRecords {
		switch {
		case b.Host && hostSysctls:
			out = append(out, fmt.Sprintf("cannot read %s (%s): it holds the values host sysctls had before labs changed them, and netlab will not set a host sysctl without it; check the host's sysctls, then repair or remove the file", b.Path, b.Err))
		case !b.Host && nsSysctls:
			out = append(out, fmt.Sprintf("cannot read %s (%s): it holds the values the sysctls of lab %s had before the lab changed them, and netlab will not overwrite it; run \"netlab down --lab %s\" first (it removes the lab and says what it could not restore)", b.Path, b.Err, desired.Lab, desired.Lab))
		}
	}
	return out
}

func labList(labs []string) string {
	if len(labs) == 1 {
		return "lab " + labs[0]
	}
	return "labs " + strings.Join(labs, ", ")
}

func isAre(labs []string) string {
	if len(labs) == 1 {
		return "is"
	}
	return "are"
}

func ownedBy(owner string) string {
	if owner == "" {
		return "was not created by netlab"
	}
	return "belongs to lab " + owner
}

type differ struct {
	desired, observed *State
	actions           []Action
	warnings          []string // for the plan, besides the observation's

	// What the plan deletes or replaces: whatever was inside is gone with it, so
	// the plan neither deletes it again nor trusts its observed attributes.
	goneNetns      map[string]bool
	goneInterfaces map[InterfaceKey]bool
	// The addresses the plan deletes from interfaces that stay: the kernel takes
	// routes with them, which the plan then adds again (see routes).
	goneAddrs []AddrKey
	// Why the plan cannot be carried out by this run: it is refused whole.
	refusals []string
}

func (d *differ) add(a Action) { d.actions = append(d.actions, a) }

// exists reports whether an observed link survives the deletions of the plan.
func (d *differ) exists(k InterfaceKey) bool {
	if k.Name == "lo" && k.NS != Host { // every namespace's; addresses on it are the lab's
		_, ok := d.observed.Namespaces[k.NS]
		return ok && !d.goneNetns[k.NS]
	}
	_, ok := d.observed.Interfaces[k]
	return ok && !d.goneInterfaces[k] && !d.goneNetns[k.NS]
}

func (d *differ) namespaces() {
	for name, want := range d.desired.Namespaces {
		have, ok := d.observed.Namespaces[name]
		if !ok {
			d.add(CreateNetns{Lab: d.desired.Lab, Name: name, IPv6: want.IPv6})
			continue
		}
		if want.LoUp && !have.LoUp {
			d.add(SetUp{InterfaceKey: InterfaceKey{name, "lo"}})
		}
		if want.IPv6 != have.IPv6 {
			d.add(SetIPv6{Name: name, On: want.IPv6})
		}
	}
	// The other ends of each namespace's veths, indexed once: looked up by
	// scanning every interface for each deleted namespace, a down of 5000
	// namespaces spent over a second here.
	peersOut := map[string][]InterfaceKey{}
	for _, l := range d.observed.Interfaces {
		if l.Kind == KindVeth && l.Peer.NS != l.NS && l.Peer != (InterfaceKey{}) {
			peersOut[l.NS] = append(peersOut[l.NS], l.Peer)
		}
	}
	for name := range d.observed.Namespaces {
		if _, ok := d.desired.Namespaces[name]; !ok {
			takes := peersOut[name]
			slices.SortFunc(takes, InterfaceKey.compare)
			d.add(DeleteNetns{Lab: d.desired.Lab, Name: name, Takes: takes})
			d.goneNetns[name] = true
		}
	}
}

func (d *differ) links() {
	// A deleted namespace takes its interfaces with it, and the kernel deletes the
	// other end of each of its veths.
	for k, have := range d.observed.Interfaces {
		if d.goneNetns[k.NS] {
			d.goneInterfaces[k] = true
			d.goneInterfaces[have.Peer] = true
		}
	}
	// Deletions and replacements first, so that creation sees what will be left.
	for _, k := range sortedKeys(d.observed.Interfaces, InterfaceKey.compare) {
		have := d.observed.Interfaces[k]
		if d.goneInterfaces[k] {
			continue
		}
		want, ok := d.desired.Interfaces[k]
		why := ""
		switch {
		case !ok:
		case want.Kind != have.Kind:
			why = fmt.Sprintf("was a %s", have.Kind)
		case want.Kind == KindVeth && have.Peer == (InterfaceKey{}):
			why = "its peer is gone" // its namespace was deleted by hand: the kernel is destroying it
		case want.Kind == KindVeth && want.Peer != have.Peer:
			why = "peer was " + have.Peer.String()
		default:
			continue // kept; its attributes are compared below
		}
		d.add(DeleteInterface{InterfaceKey: k, InterfaceKind: have.Kind, Peer: have.Peer, Replace: ok, Why: why})
		d.goneInterfaces[k] = true
		if have.Kind == KindVeth && have.Peer != (InterfaceKey{}) {
			d.goneInterfaces[have.Peer] = true // the kernel deletes both ends of a veth
		}
	}

	for _, k := range sortedKeys(d.desired.Interfaces, InterfaceKey.compare) {
		want := d.desired.Interfaces[k]
		if !d.exists(k) {
			d.create(want)
			continue
		}
		have := d.observed.Interfaces[k]
		if have.Unmarked {
			d.add(MarkInterface{Lab: d.desired.Lab, InterfaceKey: k})
		}
		if want.Master != have.Master {
			d.add(SetMaster{InterfaceKey: k, Master: want.Master, Old: have.Master})
		}
		// A port that changes bridges starts with hairpin off.
		if haveHairpin := have.Hairpin && want.Master == have.Master; want.Hairpin != haveHairpin && want.Master != "" {
			d.add(SetHairpin{InterfaceKey: k, On: want.Hairpin})
		}
		if want.MTU != 0 && want.MTU != have.MTU {
			d.add(SetMTU{InterfaceKey: k, MTU: want.MTU, Old: have.MTU})
		}
		if want.MAC != "" && want.MAC != have.MAC {
			d.add(SetMAC{InterfaceKey: k, MAC: want.MAC, Old: have.MAC})
		}
		if want.Kind == KindBridge && !have.NoSnooping && want.SnoopingOff != have.SnoopingOff {
			d.add(SetSnooping{InterfaceKey: k, On: !want.SnoopingOff})
		}
		if want.Up && !have.Up {
			d.add(SetUp{InterfaceKey: k, Bridge: want.Kind == KindBridge, SnoopingOff: want.SnoopingOff})
		}
	}
}

// create adds the actions that make a new link as desired. A veth pair is
// created with what `ip link add` takes in the same command: its bridge and its
// up state. A bridge is brought up in a later step, once its new ports have
// joined: a port joining a bridge that is up costs the kernel a walk over all
// the bridge's ports (with a thousand ports, three times the cost of bringing
// the bridge up at the end).
func (d *differ) create(want *Interface) {
	switch want.Kind {
	case KindBridge:
		d.add(CreateBridge{Lab: d.desired.Lab, InterfaceKey: want.InterfaceKey, MTU: want.MTU, MAC: want.MAC, SnoopingOff: want.SnoopingOff})
		if want.Up {
			d.add(SetUp{InterfaceKey: want.InterfaceKey, New: true, Bridge: true, SnoopingOff: want.SnoopingOff})
		}
	case KindVeth:
		// One action per pair, emitted from its main end.
		peer := d.desired.Interfaces[want.Peer]
		switch {
		case peer == nil: // not in a desired state, which has both ends: kept for safety
			d.add(CreateVeth{Lab: d.desired.Lab, Main: vethEnd(want), Peer: VethEnd{InterfaceKey: want.Peer}})
		case IsMainEnd(want, peer):
			d.add(CreateVeth{Lab: d.desired.Lab, Main: vethEnd(want), Peer: vethEnd(peer)})
		}
		if want.Hairpin {
			d.add(SetHairpin{InterfaceKey: want.InterfaceKey, On: true, New: true})
		}
	}
}

func vethEnd(l *Interface) VethEnd {
	return VethEnd{InterfaceKey: l.InterfaceKey, MTU: l.MTU, MAC: l.MAC, Master: l.Master, Up: l.Up}
}

// IsMainEnd reports whether a is the main end of the veth pair it forms with b.
// This is the one rule for it:
//
// The main end of a veth pair is the end that is a bridge port when only one
// end is; otherwise (both or neither) the end that sorts first (namespace, then
// name).
//
// The main end is the end the pair is created from: `ip link add MAIN master BR
// type veth peer name PEER` and the kernel's create request take a bridge only
// for the end they create, so the port is the one that joins its bridge in the
// same request. The plan line names the pair from the other side first when the
// main end is the only bridge port ("web:eth0 <-> host:veth1a2b3c4 master
// docker0": the container side first; see CreateVeth.Object).
func IsMainEnd(a, b *Interface) bool {
	if (a.Master == "") != (b.Master == "") {
		return a.Master != ""
	}
	return a.InterfaceKey.compare(b.InterfaceKey) < 0
}

func (d *differ) addrs() {
	for _, k := range sortedKeys(d.desired.Addrs, AddrKey.compare) {
		if !d.observed.Addrs[k] || !d.exists(k.InterfaceKey) {
			d.add(AddAddr{k})
		}
	}
	for _, k := range sortedKeys(d.observed.Addrs, AddrKey.compare) {
		if !d.desired.Addrs[k] && d.exists(k.InterfaceKey) {
			d.add(DeleteAddr{AddrKey: k, First: d.sharesSubnetWithNewAddr(k)})
			d.goneAddrs = append(d.goneAddrs, k)
		}
	}
}

// sharesSubnetWithNewAddr reports whether a stale IPv4 address is in the subnet of
// an address the plan adds to the same interface.
func (d *differ) sharesSubnetWithNewAddr(stale AddrKey) bool {
	if !stale.Prefix.Addr().Is4() {
		return false
	}
	for k := range d.desired.Addrs {
		if k.InterfaceKey == stale.InterfaceKey && !d.observed.Addrs[k] && k.Prefix.Masked() == stale.Prefix.Masked() {
			return true
		}
	}
	return false
}

func (d *differ) routes() {
	for _, k := range sortedKeys(d.desired.Routes, RouteKey.compare) {
		want := d.desired.Routes[k]
		have, ok := d.observed.Routes[k]
		switch {
		case !ok || !d.exists(InterfaceKey{k.NS, have.Dev}):
			d.add(ReplaceRoute{Route: *want})
		case have.Via != want.Via || have.Dev != want.Dev:
			old := *have
			d.add(ReplaceRoute{Route: *want, Old: &old})
		default:
			if gone, ok := d.takenWithAddr(want); ok {
				d.add(ReplaceRoute{Route: *want, Why: "again: the kernel drops it with " + gone.Prefix.String()})
			}
		}
	}
	for _, k := range sortedKeys(d.observed.Routes, RouteKey.compare) {
		have := d.observed.Routes[k]
		if _, ok := d.desired.Routes[k]; !ok && d.exists(InterfaceKey{k.NS, have.Dev}) {
			d.add(DeleteRoute{Route: *have})
		}
	}
}

// takenWithAddr reports whether the kernel may delete a route when the plan
// deletes an address: deleting an interface's last IPv4 address deletes every
// IPv4 route through it, and deleting any address the routes whose gateway was
// reached through its subnet (or that had it as source). The rule is wider than
// the kernel's, and simple: a route of the same family through the interface, or
// whose gateway is in the deleted subnet, is added again after the addresses
// (ip route replace: a no-op when the route survived).
func (d *differ) takenWithAddr(rt *Route) (AddrKey, bool) {
	for _, gone := range d.goneAddrs {
		if gone.NS != rt.NS || gone.Prefix.Addr().Is4() != rt.To.Addr().Is4() {
			continue
		}
		if gone.Name == rt.Dev || (rt.Via.IsValid() && gone.Prefix.Masked().Contains(rt.Via)) {
			return gone, true
		}
	}
	return AddrKey{}, false
}

func (d *differ) sysctls() {
	lab := d.desired.Lab
	for _, k := range sortedKeys(d.desired.Sysctls, SysctlKey.compare) {
		want := d.desired.Sysctls[k]
		have, ok := d.observed.Sysctls[k]
		differs := !ok || NormalizeSysctlValue(have) != NormalizeSysctlValue(want)
		if sh := d.observed.SharedSysctls[k]; sh != nil && !sh.HeldBy(lab) {
			// A host sysctl other labs set (to want: conflicts() checked): the lab
			// joins them, so that the value stays until the last of them goes.
			old := ""
			if ok && differs {
				old = have
			}
			d.add(SetSysctl{Lab: lab, SysctlKey: k, Value: want, Old: old, Shared: strings.Join(sh.Others(lab), ", ")})
			continue
		}
		if !ok {
			d.add(SetSysctl{Lab: lab, SysctlKey: k, Value: want})
		} else if differs {
			d.add(SetSysctl{Lab: lab, SysctlKey: k, Value: want, Old: have})
		}
	}
	for _, k := range sortedKeys(d.observed.SharedSysctls, SysctlKey.compare) {
		sh := d.observed.SharedSysctls[k]
		if _, ok := d.desired.Sysctls[k]; ok || !sh.HeldBy(lab) {
			continue
		}
		if others := sh.Others(lab); len(others) > 0 {
			// Other labs still want it: the lab only lets go.
			d.add(SetSysctl{Lab: lab, SysctlKey: k, Value: sh.Value, Old: d.observed.Sysctls[k], Restore: true, Shared: strings.Join(others, ", ")})
			continue
		}
		d.add(SetSysctl{Lab: lab, SysctlKey: k, Value: sh.Original, Old: d.observed.Sysctls[k], Restore: true})
	}
	for _, k := range sortedKeys(d.observed.SavedSysctls, SysctlKey.compare) {
		if _, ok := d.desired.Sysctls[k]; ok || d.goneNetns[k.NS] {
			continue
		}
		if sh := d.observed.SharedSysctls[k]; sh != nil && sh.HeldBy(lab) {
			continue // restored through the machine-wide record, above
		}
		if _, ok := d.observed.Namespaces[k.NS]; !ok && k.NS != Host {
			continue // its namespace is gone (a run died deleting it), and its sysctls with it
		}
		d.add(SetSysctl{Lab: lab, SysctlKey: k, Value: d.observed.SavedSysctls[k], Old: d.observed.Sysctls[k], Restore: true})
	}
	for _, b := range d.observed.BadRecords {
		if b.Host {
			d.warnings = append(d.warnings, fmt.Sprintf("cannot read %s (%s): the host sysctls labs set cannot be put back from it; check them by hand (for example sysctl net.ipv4.ip_forward), then repair or remove the file", b.Path, b.Err))
			continue
		}
		d.warnings = append(d.warnings, fmt.Sprintf("cannot read %s (%s): the values lab %s saved in it for the sysctls of its namespaces could not be restored (a namespace the lab deletes takes its sysctls with it)", b.Path, b.Err, lab))
	}
}

// tables replaces a namespace's table when its rules differ in any way, and
// sends nothing when they are the same.
func (d *differ) tables() {
	for _, ns := range sortedKeys(d.desired.Tables, strings.Compare) {
		want := d.desired.Tables[ns]
		have := d.observed.Tables[ns]
		if have == nil || d.goneNetns[ns] {
			d.add(ReplaceTable{Lab: d.desired.Lab, Table: want})
		} else if !slices.Equal(want.lines(), have.lines()) {
			d.add(ReplaceTable{Lab: d.desired.Lab, Table: want, Old: have})
		}
	}
	for _, ns := range sortedKeys(d.observed.Tables, strings.Compare) {
		if _, ok := d.desired.Tables[ns]; !ok && !d.goneNetns[ns] {
			d.add(DeleteTable{NS: ns, Name: d.observed.Tables[ns].Name})
		}
	}
	// The iptables layout (iptables.go): the lab's part of ip filter / ip nat.
	for _, ns := range sortedKeys(d.desired.Iptables, strings.Compare) {
		want, have := d.desired.Iptables[ns], d.observed.Iptables[ns]
		if have == nil {
			d.add(ReplaceTable{Lab: d.desired.Lab, Table: want})
		} else if !slices.Equal(want.lines(), have.lines()) {
			d.add(ReplaceTable{Lab: d.desired.Lab, Table: want, Old: have})
		}
	}
	for _, ns := range sortedKeys(d.observed.Iptables, strings.Compare) {
		if _, ok := d.desired.Iptables[ns]; !ok {
			d.add(DeleteTable{NS: ns, Name: d.observed.Iptables[ns].Name, Layout: LayoutIptables})
		}
	}
	// The nftables layout (nftables.go): Docker 29's tables.
	for _, k := range sortedKeys(d.desired.DockerTables, TableKey.compare) {
		want, have := d.desired.DockerTables[k], d.observed.DockerTables[k]
		if have == nil || d.goneNetns[k.NS] {
			d.add(ReplaceTable{Lab: d.desired.Lab, Table: want})
		} else if !slices.Equal(want.lines(), have.lines()) {
			d.add(ReplaceTable{Lab: d.desired.Lab, Table: want, Old: have})
		}
	}
	for _, k := range sortedKeys(d.observed.DockerTables, TableKey.compare) {
		if _, ok := d.desired.DockerTables[k]; !ok && !d.goneNetns[k.NS] {
			d.add(DeleteTable{Lab: d.desired.Lab, NS: k.NS, Name: DockerTableName, Layout: LayoutNftables, Family: k.Family})
		}
	}
}

// files writes generated files whose content differs and removes those the lab
// no longer wants.
func (d *differ) files() {
	for _, k := range sortedKeys(d.desired.Files, FileKey.compare) {
		want := d.desired.Files[k]
		have, ok := d.observed.Files[k]
		if !ok || have != want {
			d.add(WriteFile{FileKey: k, Content: want, Old: ok})
		}
	}
	for _, k := range sortedKeys(d.observed.Files, FileKey.compare) {
		if _, ok := d.desired.Files[k]; !ok {
			d.add(DeleteFile{k})
		}
	}
}

// processes starts what is not running and stops what the lab no longer runs. A
// changed command is a different process: the old one stops, the new one starts.
// Processes of a deleted namespace go with it. One that runs but was never seen
// ready starts again (the start stops what runs first).
func (d *differ) processes() {
	for _, k := range sortedKeys(d.desired.Processes, ProcKey.compare) {
		have, ok := d.observed.Processes[k]
		switch {
		case ok && have.NotReady && have.Unstoppable != "" && !d.goneNetns[k.NS]:
			// Starting it again stops what runs first, which this run cannot.
			d.refusals = append(d.refusals, fmt.Sprintf("netns %s: %q was never seen ready and would start again, but cannot be stopped: %s", k.NS, k.Command, have.Unstoppable))
		case !ok || len(have.PIDs) == 0 || have.NotReady || d.goneNetns[k.NS]:
			d.add(StartProcess{Lab: d.desired.Lab, Process: *d.desired.Processes[k]})
		}
	}
	for _, k := range sortedKeys(d.observed.Processes, ProcKey.compare) {
		p := d.observed.Processes[k]
		_, wanted := d.desired.Processes[k]
		if p.Unstoppable != "" && (!wanted || d.goneNetns[k.NS]) {
			// Stopped, or gone with its namespace: neither is this run's to do.
			d.refusals = append(d.refusals, fmt.Sprintf("netns %s: %q cannot be stopped: %s", k.NS, k.Command, p.Unstoppable))
		}
		if !wanted && !d.goneNetns[k.NS] {
			d.add(StopProcess{Lab: d.desired.Lab, Process: *p})
		}
	}
}

// sortedKeys returns a map's keys in a stable order: plans never depend on map order.
func sortedKeys[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compare)
	return keys
}
