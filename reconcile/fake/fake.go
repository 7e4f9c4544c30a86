// Package fake is an in-memory reconcile.Driver: a small model of the kernel objects
// netlab manages, with ownership markers and the kernel's side effects (deleting a
// namespace takes its interfaces, deleting one end of a veth takes the other). Unit
// tests and plan goldens run against it.
package fake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	r "netlab/reconcile"
)

// ErrExists and ErrNotFound mimic the kernel's EEXIST and ENOENT/ENODEV.
var (
	ErrExists   = errors.New("file exists")
	ErrNotFound = errors.New("no such device")
)

// DefaultSysctl is what every sysctl reads before anyone sets it.
const DefaultSysctl = "0"

type proc struct {
	r.Process
	lab string
}

type file struct {
	content string
	lab     string // "" for a file netlab did not write
}

// iface is an interface of the fake kernel, with the lab that made it.
type iface struct {
	r.Interface
	owner string // lab name, "" for a foreign interface
}

// Driver is the fake kernel. The zero value is not usable: call New.
type Driver struct {
	mu      sync.Mutex
	netns   map[string]string // name -> owner lab ("" foreign)
	ipv6    map[string]bool   // namespaces with IPv6 on
	ifaces  map[r.InterfaceKey]*iface
	addrs   map[r.AddrKey]bool
	routes  map[r.RouteKey]*r.Route
	sysctls map[r.SysctlKey]string
	saved   map[string]map[r.SysctlKey]string // lab -> values from before the lab (its namespaces')
	shared  map[r.SysctlKey]*r.SharedSysctl   // the host's sysctls labs set: the machine-wide record
	tables  map[string]map[string]*r.Table    // namespace -> table name -> table
	docker  map[r.TableKey]dockerTable        // Docker 29's tables (the nftables layout)
	ipt     map[string]map[string]*r.Table    // namespace -> lab -> its part of ip raw / ip filter / ip nat (the iptables layout)
	procs   map[r.ProcKey]*proc
	files   map[r.FileKey]file
	uts     map[string]utsNS                      // namespace -> its UTS namespace
	execs   map[string]map[string][]r.ExecCommand // lab -> namespace -> the exec commands recorded as run
	labs    map[string]string                     // lab -> the file it was brought up from (RecordLab)
	nextPID int
	// lastRead is the last observation, for answerFromEarlier.
	lastRead *r.State

	// Writes counts the actions applied: a no-op `up` must leave it unchanged.
	Writes int
	// Ran lists the exec commands run, as "NS: COMMAND", in order.
	Ran []string
	// Fail, when set, is consulted before each action; a non-nil error fails it.
	Fail func(r.Action) error
	// NetnsErr, when set, is what CheckNetns returns.
	NetnsErr error
	// NoQdisc lists the qdisc kinds the fake kernel does not have ("netem"):
	// Observe reports them as State.MissingQdiscs and applying one fails.
	NoQdisc map[string]bool
	qdiscs  map[r.InterfaceKey]*r.Qdisc // netlab's shaping, by interface (shaping.go)
	// NoSysctl lists the sysctls (paths below /proc/sys) the fake kernel does not
	// have, in any namespace, each with the nearest one it has ("" none): Observe
	// reports them as State.MissingSysctls and writing one fails.
	NoSysctl map[string]string
	// Unstoppable says, by process, why this run could not stop it (a cgroup
	// it cannot write): Observe reports it as Process.Unstoppable.
	Unstoppable map[r.ProcKey]string
}

// New returns an empty fake kernel with only the host namespace.
func New() *Driver {
	return &Driver{
		netns:   map[string]string{},
		ipv6:    map[string]bool{},
		ifaces:  map[r.InterfaceKey]*iface{},
		addrs:   map[r.AddrKey]bool{},
		routes:  map[r.RouteKey]*r.Route{},
		sysctls: map[r.SysctlKey]string{},
		saved:   map[string]map[r.SysctlKey]string{},
		shared:  map[r.SysctlKey]*r.SharedSysctl{},
		tables:  map[string]map[string]*r.Table{},
		docker:  map[r.TableKey]dockerTable{},
		ipt:     map[string]map[string]*r.Table{},
		procs:   map[r.ProcKey]*proc{},
		files:   map[r.FileKey]file{},
		uts:     map[string]utsNS{},
		execs:   map[string]map[string][]r.ExecCommand{},
		labs:    map[string]string{},
		qdiscs:  map[r.InterfaceKey]*r.Qdisc{},
		nextPID: 100,
	}
}

// dockerTable is one of Docker's tables and the lab whose mark it bears ("":
// none, a dockerd's).
type dockerTable struct {
	owner string
	table *r.Table
}

// AddForeignDockerTable adds Docker's table of a family to a namespace, as a
// running dockerd would.
func (d *Driver) AddForeignDockerTable(k r.TableKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docker[k] = dockerTable{table: &r.Table{NS: k.NS, Name: r.DockerTableName, Layout: r.LayoutNftables, Family: k.Family}}
}

// AddForeignFile adds a file under /etc/netns that netlab did not write.
func (d *Driver) AddForeignFile(k r.FileKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files[k] = file{content: "someone else's\n"}
}

// AddForeignNetns adds a namespace that belongs to owner ("" for one not made by netlab).
func (d *Driver) AddForeignNetns(name, owner string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.netns[name] = owner
}

// AddForeignInterface adds an interface that belongs to owner ("" for one not made by netlab).
func (d *Driver) AddForeignInterface(l r.Interface, owner string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ifaces[l.InterfaceKey] = &iface{Interface: l, owner: owner}
}

// Mutate runs f on the kernel's objects, to simulate drift made by hand.
func (d *Driver) Mutate(f func(k *Kernel)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(&Kernel{d})
}

// Kernel gives Mutate direct access to the fake's objects.
type Kernel struct{ d *Driver }

// DeleteInterface deletes an interface (and its veth peer) as `ip link del` would.
func (k *Kernel) DeleteInterface(key r.InterfaceKey) { k.d.deleteInterface(key) }

// SetAddrs replaces the addresses of an interface.
func (k *Kernel) SetAddrs(key r.InterfaceKey, prefixes ...r.AddrKey) {
	for a := range k.d.addrs {
		if a.InterfaceKey == key {
			delete(k.d.addrs, a)
		}
	}
	for _, p := range prefixes {
		k.d.addrs[p] = true
	}
}

// DeleteRoute deletes a route.
func (k *Kernel) DeleteRoute(key r.RouteKey) { delete(k.d.routes, key) }

// AddRoute adds a route, as `ip route add` would (on any interface: the
// machine's own routes are added this way).
func (k *Kernel) AddRoute(rt r.Route) { k.d.routes[rt.RouteKey] = &rt }

// AddAddr adds an address to an interface, as `ip addr add` would.
func (k *Kernel) AddAddr(a r.AddrKey) { k.d.addrs[a] = true }

// SetSysctl writes a sysctl by hand.
func (k *Kernel) SetSysctl(key r.SysctlKey, value string) { k.d.sysctls[key] = value }

// Sysctl reads a sysctl.
func (k *Kernel) Sysctl(key r.SysctlKey) string { return k.d.sysctl(key) }

// KillProcess kills a lab's process, as `kill PID` would.
func (k *Kernel) KillProcess(key r.ProcKey) { delete(k.d.procs, key) }

// FlushTable empties the chains of a table, as `nft flush table` does.
func (k *Kernel) FlushTable(ns, name string) {
	t := k.d.tables[ns][name]
	if t == nil {
		return
	}
	flushed := &r.Table{NS: t.NS, Name: t.Name}
	for _, c := range t.Chains {
		empty := *c
		empty.Rules = nil
		flushed.Chains = append(flushed.Chains, &empty)
	}
	k.d.tables[ns][name] = flushed
}

// SetDown sets an interface down.
func (k *Kernel) SetDown(key r.InterfaceKey) {
	if l := k.d.ifaces[key]; l != nil {
		l.Up = false
	}
}

// ToggleSnooping turns a bridge's multicast snooping off, or on, as
// `ip link set BR type bridge mcast_snooping 0|1` would (or, for off, a run
// stopped while bringing the bridge up).
func (k *Kernel) ToggleSnooping(key r.InterfaceKey) {
	if l := k.d.ifaces[key]; l != nil && l.Kind == r.KindBridge {
		l.SnoopingOff = !l.SnoopingOff
	}
}

// recordExecs sets the record of the exec commands run in a namespace.
func (d *Driver) recordExecs(lab, ns string, list []r.ExecCommand) {
	if d.execs[lab] == nil {
		d.execs[lab] = map[string][]r.ExecCommand{}
	}
	if len(list) == 0 {
		delete(d.execs[lab], ns)
		return
	}
	d.execs[lab][ns] = slices.Clone(list)
}

// CheckNetns is the kernel driver's check that a lab is worked on from the
// network namespace it was brought up from: the fake has only one, NetnsErr
// when set fails it.
func (d *Driver) CheckNetns(lab string) error {
	return d.NetnsErr
}

// RecordLab records the file a lab was brought up from, as the kernel driver does.
func (d *Driver) RecordLab(lab, file, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.labs[lab] = file
	return nil
}

// LabFile returns what RecordLab recorded for a lab, if anything.
func (d *Driver) LabFile(lab string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	file, ok := d.labs[lab]
	return file, ok
}

// Forget drops everything recorded of a lab: its file, the sysctl values from
// before it, the exec commands that ran (the kernel driver's state directory).
func (d *Driver) Forget(lab string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.labs, lab)
	delete(d.saved, lab)
	delete(d.execs, lab)
	return nil
}

// Snapshot returns every object, owned or not, for tests that check what was touched.
func (d *Driver) Snapshot() (netns map[string]string, links map[r.InterfaceKey]r.Interface) {
	d.mu.Lock()
	defer d.mu.Unlock()
	links = map[r.InterfaceKey]r.Interface{}
	for k, l := range d.ifaces {
		links[k] = l.Interface
	}
	return maps.Clone(d.netns), links
}

// Observe returns the objects owned by q.Lab, and the names of the others.
func (d *Driver) Observe(_ context.Context, q r.Query) (*r.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := r.NewState(q.Lab)
	for name, owner := range d.netns {
		if owner == q.Lab {
			s.Namespaces[name] = &r.Netns{Name: name, LoUp: true, IPv6: d.ipv6[name]}
		} else {
			s.ForeignNetns[name] = owner
		}
	}
	for k, l := range d.ifaces {
		if l.owner != q.Lab {
			s.ForeignInterfaces[k] = l.owner
			continue
		}
		c := l.Interface
		s.Interfaces[k] = &c
	}
	for a := range d.addrs {
		if _, ok := s.Interfaces[a.InterfaceKey]; ok {
			s.Addrs[a] = true
		} else {
			s.ForeignAddrs[a] = true
		}
	}
	for k, rt := range d.routes {
		c := *rt
		if _, ok := s.Interfaces[r.InterfaceKey{NS: k.NS, Name: rt.Dev}]; ok {
			s.Routes[k] = &c
		} else {
			s.ForeignRoutes[k] = &c
		}
	}
	for ns, tables := range d.tables {
		if t := tables[r.TableName(q.Lab)]; t != nil {
			s.Tables[ns] = t
		}
	}
	d.observeIptables(s, q)
	for k, dt := range d.docker {
		switch {
		case dt.owner == q.Lab:
			s.DockerTables[k] = dt.table
		case q.DockerTables[k] != nil:
			s.ForeignTables[k] = dt.owner
		}
	}
	for key, p := range d.procs {
		if p.lab == q.Lab {
			c := p.Process
			c.Unstoppable = d.Unstoppable[key]
			s.Processes[key] = &c
		}
	}
	for key, f := range d.files {
		switch {
		case f.lab == q.Lab:
			s.Files[key] = f.content
		case f.lab == "":
			s.ForeignFiles[key] = true
		}
	}
	d.observeUTS(q.Lab, s)
	for ns, list := range d.execs[q.Lab] {
		if ns == r.Host || s.Namespaces[ns] != nil {
			s.Execs[ns] = slices.Clone(list)
		}
	}
	d.observeSysctls(s, q)
	d.observeShaping(s, q) // shaping.go
	if q.Reread != nil && d.lastRead != nil {
		d.answerFromEarlier(s, q.Reread)
	}
	d.lastRead = s
	return s, nil
}

// observeIptables reads the lab's part of the iptables layout, and says
// where other labs have another dockerd's layout (the kernel driver's
// conflicts; a dockerd's own chains are not modelled).
func (d *Driver) observeIptables(s *r.State, q r.Query) {
	for ns, labs := range d.ipt {
		if t := labs[q.Lab]; t != nil {
			s.Iptables[ns] = t
		}
		want := q.Iptables[ns]
		if want == nil {
			continue
		}
		for _, lab := range slices.Sorted(maps.Keys(labs)) {
			if lab != q.Lab && labs[lab].Dockerd != want.Dockerd {
				s.IptablesConflicts = append(s.IptablesConflicts, fmt.Sprintf("iptables %s: lab %s has Docker %s's iptables layout there, lab %s wants %s's", ns, lab, labs[lab].Dockerd, q.Lab, want.Dockerd))
			}
		}
	}
}

// observeSysctls reads the sysctls q asks for, those the lab saved the
// original of, and the host's that labs share.
func (d *Driver) observeSysctls(s *r.State, q r.Query) {
	maps.Copy(s.SavedSysctls, d.saved[q.Lab])
	held := []r.SysctlKey{}
	for k, sh := range d.shared {
		c := *sh
		c.Labs = slices.Clone(sh.Labs)
		s.SharedSysctls[k] = &c
		if sh.HeldBy(q.Lab) {
			held = append(held, k)
		}
	}
	for _, k := range q.Sysctls {
		if near, ok := d.NoSysctl[k.Path]; ok {
			if s.MissingSysctls == nil {
				s.MissingSysctls = map[r.SysctlKey]string{}
			}
			s.MissingSysctls[k] = near
		}
	}
	for _, k := range append(append(q.Sysctls, keys(d.saved[q.Lab])...), held...) {
		if k.NS == r.Host || (d.nsExists(k.NS) && d.netns[k.NS] == q.Lab) {
			s.Sysctls[k] = d.sysctl(k)
		}
	}
}

// answerFromEarlier does what the kernel driver may do with Query.Reread: the
// links, addresses, routes and table of a namespace not to be read again are
// those of the last observation, however the namespace has changed since. A
// plan whose touched namespaces are wrong then fails its Verify.
func (d *Driver) answerFromEarlier(s *r.State, reread map[string]bool) {
	earlier := d.lastRead
	stale := func(ns string) bool {
		return ns != r.Host && !reread[ns] && earlier.Namespaces[ns] != nil && s.Namespaces[ns] != nil
	}
	answer(s.Interfaces, earlier.Interfaces, func(k r.InterfaceKey) bool { return stale(k.NS) })
	answer(s.Addrs, earlier.Addrs, func(k r.AddrKey) bool { return stale(k.NS) })
	answer(s.Routes, earlier.Routes, func(k r.RouteKey) bool { return stale(k.NS) })
	answer(s.Tables, earlier.Tables, stale)
}

// answer replaces the entries of now whose key is stale with those of earlier.
func answer[K comparable, V any](now, earlier map[K]V, stale func(K) bool) {
	maps.DeleteFunc(now, func(k K, _ V) bool { return stale(k) })
	for k, v := range earlier {
		if stale(k) {
			now[k] = v
		}
	}
}

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func (d *Driver) sysctl(k r.SysctlKey) string {
	if v, ok := d.sysctls[k]; ok {
		return v
	}
	return DefaultSysctl
}

// setHostSysctl models the driver's machine-wide record of host sysctls: the
// first lab records the original, the others join; the original comes back
// when the last one lets go.
func (d *Driver) setHostSysctl(a r.SetSysctl) error {
	sh := d.shared[a.SysctlKey]
	if a.Restore {
		if sh == nil || !sh.HeldBy(a.Lab) {
			// Saved by the lab alone (an older netlab's record).
			if v, ok := d.saved[a.Lab][a.SysctlKey]; ok {
				d.sysctls[a.SysctlKey] = v
				delete(d.saved[a.Lab], a.SysctlKey)
			}
			return nil
		}
		sh.Labs = sh.Others(a.Lab)
		if len(sh.Labs) == 0 {
			d.sysctls[a.SysctlKey] = sh.Original
			delete(d.shared, a.SysctlKey)
		}
		return nil
	}
	if sh == nil {
		sh = &r.SharedSysctl{Original: d.sysctl(a.SysctlKey)}
		d.shared[a.SysctlKey] = sh
	}
	if others := sh.Others(a.Lab); len(others) > 0 && r.NormalizeSysctlValue(sh.Value) != r.NormalizeSysctlValue(a.Value) {
		return fmt.Errorf("sysctl %s: lab %s set it to %s: %w", a.Name(), others[0], sh.Value, ErrExists)
	}
	sh.Value = a.Value
	if !sh.HeldBy(a.Lab) {
		sh.Labs = append(sh.Labs, a.Lab)
		slices.Sort(sh.Labs)
	}
	d.sysctls[a.SysctlKey] = a.Value
	return nil
}

func orDefault(mtu int) int {
	if mtu == 0 {
		return 1500
	}
	return mtu
}

func (d *Driver) nsExists(ns string) bool {
	_, ok := d.netns[ns]
	return ns == r.Host || ok
}

// createInterface tolerates an existing interface only if it is the same one, owned by lab.
func (d *Driver) createInterface(lab string, l r.Interface) error {
	if !d.nsExists(l.NS) {
		return fmt.Errorf("netns %s: %w", l.NS, ErrNotFound)
	}
	if have, ok := d.ifaces[l.InterfaceKey]; ok {
		if have.owner == lab && have.Kind == l.Kind && have.Peer == l.Peer {
			return nil
		}
		return fmt.Errorf("%s: %w", l.InterfaceKey, ErrExists)
	}
	if l.MAC == "" {
		l.MAC = fmt.Sprintf("aa:bb:cc:00:%02x:%02x", len(d.ifaces)/256%256, len(d.ifaces)%256)
	}
	d.ifaces[l.InterfaceKey] = &iface{Interface: l, owner: lab}
	return nil
}

func (d *Driver) iface(k r.InterfaceKey) (*iface, error) {
	l, ok := d.ifaces[k]
	if !ok {
		return nil, fmt.Errorf("%s: %w", k, ErrNotFound)
	}
	return l, nil
}

// deleteInterface removes an interface with what the kernel removes along with it: its
// veth peer, its addresses and routes, and its bridge's hold on its ports.
func (d *Driver) deleteInterface(k r.InterfaceKey) {
	l, ok := d.ifaces[k]
	if !ok {
		return
	}
	delete(d.ifaces, k)
	delete(d.qdiscs, k)
	for a := range d.addrs {
		if a.InterfaceKey == k {
			delete(d.addrs, a)
		}
	}
	for rk, rt := range d.routes {
		if rk.NS == k.NS && rt.Dev == k.Name {
			delete(d.routes, rk)
		}
	}
	for _, port := range d.ifaces {
		if port.NS == k.NS && port.Master == k.Name {
			port.Master = ""
		}
	}
	if l.Kind == r.KindVeth {
		d.deleteInterface(l.Peer)
	}
}

// dropRoutesOf removes the routes the kernel removes with an address: those
// through the interface whose gateway only the address's subnet reached, and,
// with the interface's last IPv4 address, every IPv4 route through it.
func (d *Driver) dropRoutesOf(gone r.AddrKey) {
	v4 := gone.Prefix.Addr().Is4()
	lastV4 := v4
	for a := range d.addrs {
		if a.InterfaceKey == gone.InterfaceKey && a.Prefix.Addr().Is4() {
			lastV4 = false
		}
	}
	for rk, rt := range d.routes {
		if rk.NS != gone.NS || rt.Dev != gone.Name || rk.To.Addr().Is4() != v4 {
			continue
		}
		reached := !rt.Via.IsValid() || !gone.Prefix.Masked().Contains(rt.Via)
		for a := range d.addrs {
			if a.InterfaceKey == gone.InterfaceKey && a.Prefix.Masked().Contains(rt.Via) {
				reached = true
			}
		}
		if lastV4 || !reached {
			delete(d.routes, rk)
		}
	}
}

// labOf reads the lab from a generated file's marker line, as the kernel driver does.
func labOf(content string) string {
	first, _, _ := strings.Cut(content, "\n")
	rest, ok := strings.CutPrefix(first, "# "+r.MarkerPrefix)
	if !ok {
		return ""
	}
	lab, _, _ := strings.Cut(rest, ":")
	return lab
}
