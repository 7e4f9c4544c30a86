// Package reconcile turns a desired State into kernel state: it diffs the desired
// State against the observed one, orders the differences into a Plan of small
// idempotent Actions, applies them through a Driver and verifies the result.
//
// It never touches the kernel itself: reconcile/kernel is the Driver that does,
// reconcile/fake is an in-memory one for tests.
package reconcile

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"netlab/topology"
)

// Host is the name State uses for the namespace netlab runs in: the file's
// name for it, which topology.Lab.KernelName maps to itself.
const Host = topology.HostName

// MarkerPrefix starts the alias netlab writes on every interface it creates (and on
// the loopback of every namespace it creates): "netlab:LAB". The kernel keeps it, so
// ownership survives a crash and `down` works without the file.
const MarkerPrefix = "netlab:"

// Marker is the alias that marks an object as owned by lab.
func Marker(lab string) string { return MarkerPrefix + lab }

// Driver is the kernel-facing side. Observe never changes anything; Apply of one
// Action is idempotent, so re-running a plan after a failure is safe.
type Driver interface {
	Observe(ctx context.Context, q Query) (*State, error)
	Apply(ctx context.Context, a Action) error
}

// Query says what to observe: the objects owned by Lab, and the current values of
// sysctls the lab wants to set (the kernel cannot list "owned" sysctls).
type Query struct {
	Lab     string
	Sysctls []SysctlKey
	// Tables are the lab's desired tables by namespace: the driver recognises the
	// rules it finds by comparing them with these.
	Tables map[string]*Table
	// Iptables are the lab's desired rules in the shared tables ip filter / ip
	// nat (`firewall: iptables`), by namespace (iptables.go).
	Iptables map[string]*Table
	// DockerTables are the lab's desired tables ip/ip6 docker-bridges
	// (`firewall: nftables`, nftables.go).
	DockerTables map[TableKey]*Table
	// Qdiscs are the lab's desired shapings: the driver checks that the kernel
	// has their kinds, and recognises its own encoding of them (qdisc.go).
	Qdiscs map[InterfaceKey]*Qdisc
	// Keep, when not nil, names the namespaces the lab keeps. Any other namespace
	// of the lab is read only as far as deleting it needs: that it is the lab's,
	// and its interfaces (the other end of each of its veths goes with it). Its
	// addresses, routes, table and sysctls go with it too, unread: `down` of a
	// thousand namespaces reads one dump in each instead of four.
	Keep map[string]bool
	// Reread, when not nil, names the namespaces to read again (Verify after a
	// plan: those the plan touched). The driver may answer for the lab's other
	// namespaces with what it read of them earlier in this run. The host, the
	// list of namespaces, processes, files, exec records and sysctls are always read.
	Reread map[string]bool
}

// State is a lab's kernel objects, desired or observed, normalized so that two
// States compare field by field. Namespaces are named by their kernel names; the
// namespace netlab runs in is Host.
type State struct {
	Lab        string
	Namespaces map[string]*Netns
	Interfaces map[InterfaceKey]*Interface
	Addrs      map[AddrKey]bool
	Routes     map[RouteKey]*Route
	Sysctls    map[SysctlKey]string
	Tables     map[string]*Table // the lab's nftables table, by namespace
	Iptables   map[string]*Table // the lab's rules in ip filter / ip nat, by namespace (iptables.go)
	// DockerTables are Docker 29's tables ip/ip6 docker-bridges (`firewall:
	// nftables`, nftables.go): observed, those marked as the lab's.
	DockerTables map[TableKey]*Table
	Processes    map[ProcKey]*Process
	Files        map[FileKey]string      // generated files (/etc/netns/NS/hosts) and their content
	UTS          map[string]string       // namespaces with a UTS namespace of their own: name -> hostname
	Qdiscs       map[InterfaceKey]*Qdisc // netlab's shaping of the lab's interfaces (qdisc.go)
	// Execs are the `exec:` commands of each namespace: desired, the list in the
	// file; observed, those recorded as run and succeeded, in order (only for
	// namespaces that exist).
	Execs map[string][]ExecCommand

	// Observed only.
	SavedSysctls      map[SysctlKey]string    // values from before the lab changed them
	ForeignNetns      map[string]string       // namespaces not owned by Lab: name -> owner lab ("" if not netlab's)
	ForeignInterfaces map[InterfaceKey]string // interfaces not owned by Lab: key -> owner lab ("" if not netlab's)
	ForeignFiles      map[FileKey]bool        // files the lab wants to write that someone else wrote
	// ForeignTables are Docker's tables (nftables.go), where the lab wants
	// them, that are not the lab's: key -> owner lab ("" if not netlab's: a
	// live dockerd's).
	ForeignTables map[TableKey]string
	NotNetns      map[string]string // objects other than a namespace where one would go (a FIFO at /run/netns/NAME): name -> what it is
	Warnings      []string          // what others do that will break the lab (another table's forward drop)
	// IptablesConflicts say why the lab's iptables layout cannot be written
	// where it wants it: chains of Docker's names netlab did not make (a
	// dockerd's), another lab's layout of another dockerd (iptables.go).
	IptablesConflicts []string

	// MissingQdiscs are the qdisc kinds the lab's shaping needs that the
	// kernel does not have, each with its module (sch_netem).
	MissingQdiscs map[string]string
	// MissingSysctls are the wanted sysctls (Query.Sysctls) the kernel does not
	// have where they will be written, each with the nearest name it has ("" none).
	MissingSysctls map[SysctlKey]string
	// ForeignRoutes are the main-table routes of the lab's namespaces and the
	// host whose interface is not the lab's (or that have none): a route the lab
	// wants with the same key (destination, metric) would replace them.
	ForeignRoutes map[RouteKey]*Route
	// ForeignAddrs are the addresses of interfaces that are not the lab's, in
	// the namespaces the lab has interfaces in (the host's own, mostly).
	ForeignAddrs map[AddrKey]bool
	// SharedSysctls are the host's sysctls that labs set, from netlab's
	// machine-wide record: the host is shared by every lab, so a value stays
	// until the last lab that set it goes down. Only labs that are still there
	// are listed as holders.
	SharedSysctls map[SysctlKey]*SharedSysctl
	// BadRecords are records of saved values that could not be read: netlab
	// will not set a sysctl whose original it cannot keep, and `down` says
	// which saved values it could not restore.
	BadRecords []BadRecord
}

// SharedSysctl is one entry of the machine-wide record of host sysctls.
type SharedSysctl struct {
	Original string   // the value before the first lab set it
	Value    string   // the value the labs set
	Labs     []string // the labs that set it (hold it), sorted
}

// HeldBy reports whether lab is one of the holders.
func (s *SharedSysctl) HeldBy(lab string) bool { return slices.Contains(s.Labs, lab) }

// Others are the holders other than lab.
func (s *SharedSysctl) Others(lab string) []string {
	var out []string
	for _, l := range s.Labs {
		if l != lab {
			out = append(out, l)
		}
	}
	return out
}

// BadRecord is a file of saved values netlab could not read.
type BadRecord struct {
	Path string
	Host bool // the machine-wide record of host sysctls, not the lab's own
	Err  string
}

// NewState returns an empty State for lab.
func NewState(lab string) *State {
	return &State{
		Lab:               lab,
		Namespaces:        map[string]*Netns{},
		Interfaces:        map[InterfaceKey]*Interface{},
		Addrs:             map[AddrKey]bool{},
		Routes:            map[RouteKey]*Route{},
		Sysctls:           map[SysctlKey]string{},
		Tables:            map[string]*Table{},
		Iptables:          map[string]*Table{},
		DockerTables:      map[TableKey]*Table{},
		ForeignTables:     map[TableKey]string{},
		Processes:         map[ProcKey]*Process{},
		Files:             map[FileKey]string{},
		UTS:               map[string]string{},
		Qdiscs:            map[InterfaceKey]*Qdisc{},
		Execs:             map[string][]ExecCommand{},
		ForeignFiles:      map[FileKey]bool{},
		SavedSysctls:      map[SysctlKey]string{},
		ForeignNetns:      map[string]string{},
		ForeignInterfaces: map[InterfaceKey]string{},

		ForeignRoutes: map[RouteKey]*Route{},
		ForeignAddrs:  map[AddrKey]bool{},
		SharedSysctls: map[SysctlKey]*SharedSysctl{},
		NotNetns:      map[string]string{},
	}
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	c := NewState(s.Lab)
	for k, v := range s.Namespaces {
		n := *v
		c.Namespaces[k] = &n
	}
	for k, v := range s.Interfaces {
		l := *v
		c.Interfaces[k] = &l
	}
	maps.Copy(c.Addrs, s.Addrs)
	for k, v := range s.Routes {
		r := *v
		c.Routes[k] = &r
	}
	maps.Copy(c.Sysctls, s.Sysctls)
	maps.Copy(c.Tables, s.Tables) // tables are replaced whole, never edited in place
	maps.Copy(c.Iptables, s.Iptables)
	maps.Copy(c.DockerTables, s.DockerTables)
	maps.Copy(c.ForeignTables, s.ForeignTables)
	for k, v := range s.Processes {
		p := *v
		p.PIDs = slices.Clone(v.PIDs)
		c.Processes[k] = &p
	}
	maps.Copy(c.Files, s.Files)
	maps.Copy(c.UTS, s.UTS)
	for k, v := range s.Qdiscs {
		q := *v
		c.Qdiscs[k] = &q
	}
	if s.MissingQdiscs != nil {
		c.MissingQdiscs = maps.Clone(s.MissingQdiscs)
	}
	for k, v := range s.Execs {
		c.Execs[k] = slices.Clone(v)
	}
	maps.Copy(c.ForeignFiles, s.ForeignFiles)
	if s.MissingSysctls != nil {
		c.MissingSysctls = maps.Clone(s.MissingSysctls)
	}
	c.Warnings = slices.Clone(s.Warnings)
	c.IptablesConflicts = slices.Clone(s.IptablesConflicts)
	maps.Copy(c.SavedSysctls, s.SavedSysctls)
	maps.Copy(c.ForeignNetns, s.ForeignNetns)
	maps.Copy(c.ForeignInterfaces, s.ForeignInterfaces)
	for k, v := range s.ForeignRoutes {
		r := *v
		c.ForeignRoutes[k] = &r
	}
	maps.Copy(c.ForeignAddrs, s.ForeignAddrs)
	for k, v := range s.SharedSysctls {
		sh := *v
		sh.Labs = slices.Clone(v.Labs)
		c.SharedSysctls[k] = &sh
	}
	c.BadRecords = slices.Clone(s.BadRecords)
	maps.Copy(c.NotNetns, s.NotNetns)
	return c
}

// SysctlKeys lists the sysctls of the state, for a Query.
func (s *State) SysctlKeys() []SysctlKey { return SortedSysctlKeys(s.Sysctls) }

// SortedSysctlKeys lists a map's sysctls in order.
func SortedSysctlKeys(m map[SysctlKey]string) []SysctlKey {
	return sortedKeys(m, SysctlKey.compare)
}

// Netns is a network namespace the lab owns.
type Netns struct {
	Name string
	LoUp bool // loopback is up (set at creation; drift is repaired)
	// IPv6 is on. As Docker does for containers on IPv4-only networks, a
	// namespace without IPv6 addresses has IPv6 off: no link-local addresses,
	// no autoconfiguration chatter flooding every port of a large bridge.
	IPv6 bool
}

// InterfaceKey names an interface: the namespace it lives in and its name there.
type InterfaceKey struct{ NS, Name string }

func (k InterfaceKey) String() string { return k.NS + ":" + k.Name }

func (k InterfaceKey) compare(o InterfaceKey) int {
	if c := strings.Compare(k.NS, o.NS); c != 0 {
		return c
	}
	return strings.Compare(k.Name, o.Name)
}

// Interface kinds.
const (
	KindBridge = "bridge"
	KindVeth   = "veth"
)

// Interface is an interface the lab owns: a bridge or one end of a veth pair.
type Interface struct {
	InterfaceKey
	Kind    string
	Peer    InterfaceKey // veth: the other end; zero when it could not be found
	Master  string       // the bridge this interface is a port of, in the same namespace
	Hairpin bool         // bridge port: frames may go back out of the port they came in by
	MTU     int          // desired 0: the kernel's default
	MAC     string       // lower case; desired "": the kernel's choice
	Up      bool

	// A bridge with multicast snooping off: wanted so (`multicast-snooping:
	// false`), or found so (see SetSnooping).
	SnoopingOff bool
	// Observed only: a bridge of a kernel built without multicast snooping,
	// which floods multicast whatever is asked: there is nothing to compare.
	NoSnooping bool
	// Observed only: the interface exists but its ownership marker is missing
	// because an earlier run was interrupted between creating and marking it.
	Unmarked bool
	// Observed only, for `inspect`: the interface's index and its veth peer's
	// index in the peer's namespace (what `ip link` shows as eth0@if17).
	Index, PeerIndex int
}

// AddrKey is an address on an interface, with its prefix length (172.17.0.2/16).
type AddrKey struct {
	InterfaceKey
	Prefix netip.Prefix
}

func (k AddrKey) compare(o AddrKey) int {
	if c := k.InterfaceKey.compare(o.InterfaceKey); c != 0 {
		return c
	}
	return comparePrefix(k.Prefix, o.Prefix)
}

// RouteKey identifies a route in the main table as the kernel does: destination and metric.
type RouteKey struct {
	NS     string
	To     netip.Prefix
	Metric int
}

func (k RouteKey) compare(o RouteKey) int {
	if c := strings.Compare(k.NS, o.NS); c != 0 {
		return c
	}
	if c := comparePrefix(k.To, o.To); c != 0 {
		return c
	}
	return k.Metric - o.Metric
}

// Route is a route in the main table of a namespace.
type Route struct {
	RouteKey
	Via netip.Addr // invalid for a device route
	Dev string
}

// SysctlKey is a sysctl of a namespace, as a path below /proc/sys/ (net/ipv4/ip_forward).
type SysctlKey struct {
	NS   string
	Path string
}

func (k SysctlKey) compare(o SysctlKey) int {
	if c := strings.Compare(k.NS, o.NS); c != 0 {
		return c
	}
	return strings.Compare(k.Path, o.Path)
}

// Name is the sysctl as `sysctl` prints it: dotted, unless a component has a dot.
func (k SysctlKey) Name() string {
	parts := strings.Split(k.Path, "/")
	for _, p := range parts {
		if strings.Contains(p, ".") {
			return k.Path
		}
	}
	return strings.Join(parts, ".")
}

// SysctlPath turns a sysctl name in either form (net.ipv4.ip_forward or
// net/ipv4/conf/eth0.100/forwarding) into its path below /proc/sys/.
func SysctlPath(name string) string {
	if strings.Contains(name, "/") {
		return strings.Trim(name, "/")
	}
	return strings.ReplaceAll(name, ".", "/")
}

// NormalizeSysctlValue makes values compare as the kernel prints them: fields
// separated by single spaces ("0\t2147483647" equals "0 2147483647").
func NormalizeSysctlValue(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
