package kernel

// Observation, the orchestration: which namespaces are read, in parallel, and
// in what order the per-object readers (observe_net.go, process.go, files.go,
// hostsysctl.go) fill the State.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// Observe returns what the kernel holds for q.Lab. It reads every namespace in the
// namespace directory (by its marker) and the host's interfaces, with one dump per
// object kind per namespace, and changes nothing.
func (d *Driver) Observe(ctx context.Context, q reconcile.Query) (*reconcile.State, error) {
	start := time.Now()
	lap := func(phase string) {
		d.log.Debug("observe", "phase", phase, "took", time.Since(start))
		start = time.Now()
	}
	d.releaseHeld()
	waited, err := d.waitDying(ctx)
	if err != nil {
		return nil, err
	}
	if waited {
		lap("the kernel destroying deleted namespaces")
	}
	s := reconcile.NewState(q.Lab)
	if err := d.state.check(q.Lab); err != nil {
		return nil, err
	}
	// The regular files are told from namespaces in parallel, by observeOne.
	names, odd, err := d.netnsEntries()
	if err != nil {
		return nil, err
	}
	maps.Copy(s.NotNetns, odd)
	reserveFiles(filesToRead(len(names)))
	intents, err := d.state.intents(q.Lab)
	if err != nil {
		return nil, err
	}
	ends, err := d.observeNamespaces(ctx, q, s, names, intents)
	if err != nil {
		return nil, err
	}
	lap("namespaces, links, addresses, routes, nftables")
	if err := d.resolvePeers(s, ends); err != nil {
		return nil, err
	}
	if err := d.observeHairpins(s); err != nil {
		return nil, err
	}
	lap("peers, hairpins")
	d.processesChanged()
	if err := d.observeProcesses(s); err != nil {
		return nil, err
	}
	if err := d.observeUTS(s); err != nil {
		return nil, err
	}
	if err := d.observeFiles(s); err != nil {
		return nil, err
	}
	if err := d.observeExecs(s); err != nil {
		return nil, err
	}
	lap("processes, files")
	if err := d.observeSysctls(q, s); err != nil {
		return nil, err
	}
	return s, nil
}

// observeNamespaces reads the host and each named namespace on its own, in
// parallel, and merges what they hold for the lab into s; it returns the veth
// ends seen, for resolvePeers.
func (d *Driver) observeNamespaces(ctx context.Context, q reconcile.Query, s *reconcile.State, names []string, intents map[reconcile.InterfaceKey]int) ([]seenVeth, error) {
	// Each namespace is read on its own, in parallel, into a result of its own.
	results := make([]*nsObservation, len(names)+1)
	all := append([]string{reconcile.Host}, names...)
	indexes := make([]int, len(all))
	for i := range indexes {
		indexes[i] = i
	}
	d.mu.Lock()
	earlier := d.lastRead
	d.mu.Unlock()
	err := forEach(ctx, indexes, func(i int) error {
		ns := all[i]
		if ns != reconcile.Host {
			// The namespace directory is looked at every time, never answered
			// from the earlier reading.
			if r := d.notMounted(q.Lab, ns); r != nil {
				results[i] = r
				return nil
			}
			if d.replaced(ns) {
				d.forget(ns) // read below, from the namespace its file leads to now
			} else if r := earlier[ns]; r != nil && q.Reread != nil && !q.Reread[ns] {
				results[i] = r // untouched since it was read in this run (see reconcile.Query.Reread)
				return nil
			}
		}
		r, err := d.observeOne(q, ns, intents)
		results[i] = r
		return err
	})
	if err != nil {
		return nil, err
	}
	lastRead := make(map[string]*nsObservation, len(results))
	for _, r := range results {
		if !r.absent && r.notNetns == "" {
			lastRead[r.name] = r
		}
	}
	d.mu.Lock()
	d.lastRead = lastRead
	d.mu.Unlock()
	var ends []seenVeth
	for _, r := range results {
		switch {
		case r.absent:
			continue
		case r.notNetns != "":
			s.NotNetns[r.name] = r.notNetns
			continue
		case r.foreign:
			s.ForeignNetns[r.name] = r.owner
			continue
		case r.name != reconcile.Host:
			s.Namespaces[r.name] = &reconcile.Netns{Name: r.name, LoUp: r.loUp, IPv6: r.ipv6}
		}
		r.mergeInto(s)
		ends = append(ends, r.ends...)
	}
	for k, l := range s.Interfaces {
		d.rememberIndex(k, l.Index)
	}
	return ends, nil
}

// observeSysctls reads the sysctls the lab sets (q.Sysctls), those it saved
// and the shared host sysctls it holds.
func (d *Driver) observeSysctls(q reconcile.Query, s *reconcile.State) error {
	saved, err := d.state.savedSysctls(q.Lab)
	if err != nil {
		// Not fatal: `down` must still remove what the lab owns (the plan says
		// what it could not restore, and `up` refuses to set sysctls).
		s.BadRecords = append(s.BadRecords, reconcile.BadRecord{Path: d.state.savedSysctlsPath(q.Lab), Err: errText(errors.Unwrap(err))})
		saved = map[reconcile.SysctlKey]string{}
	}
	s.SavedSysctls = saved
	d.observeHostSysctls(s)
	read := append(q.Sysctls, reconcile.SortedSysctlKeys(saved)...)
	for k, sh := range s.SharedSysctls {
		if sh.HeldBy(q.Lab) {
			read = append(read, k)
		}
	}
	// Read per namespace, one thread visit each, the namespaces in parallel:
	// a lab with a sysctl in each of a thousand namespaces read them one at a
	// time, and under a low open-file limit reopened each namespace's handle.
	type nsSysctls struct {
		ns     string
		keys   []reconcile.SysctlKey
		values map[reconcile.SysctlKey]string
	}
	byNS := map[string]*nsSysctls{}
	var groups []*nsSysctls
	for _, k := range read {
		if _, ok := s.Namespaces[k.NS]; (!ok && k.NS != reconcile.Host) || leaving(q, k.NS) {
			continue // the namespace is not there yet, or goes: nothing to read
		}
		if byNS[k.NS] == nil {
			byNS[k.NS] = &nsSysctls{ns: k.NS}
			groups = append(groups, byNS[k.NS])
		}
		byNS[k.NS].keys = append(byNS[k.NS].keys, k)
	}
	err = forEach(context.Background(), groups, func(g *nsSysctls) (err error) {
		g.values, err = d.readSysctls(g.ns, g.keys)
		return err
	})
	if err != nil {
		return err
	}
	for _, g := range groups {
		maps.Copy(s.Sysctls, g.values)
	}
	if err := d.missingSysctls(q, s); err != nil {
		return err
	}
	if err := d.missingQdiscs(q, s); err != nil { // qdisc.go
		return err
	}
	return nil
}

// nsObservation is what one namespace holds for the lab.
type nsObservation struct {
	name     string
	foreign  bool   // not the lab's: only its owner is known
	absent   bool   // only the file of an interrupted creation: not a namespace yet
	notNetns string // a plain file where the namespace would be: what it is
	owner    string // for a foreign namespace: the lab that owns it ("" none)
	loUp     bool
	ipv6     bool
	part     *nsPart // its interfaces, addresses, routes, table and warnings
	ends     []seenVeth
}

// observeOne reads one namespace: its marker, then (when it is the lab's, or the
// host) its interfaces, addresses, routes and the lab's table; only its
// interfaces when the plan will delete it (see reconcile.Query.Keep).
func (d *Driver) observeOne(q reconcile.Query, ns string, intents map[reconcile.InterfaceKey]int) (*nsObservation, error) {
	r := &nsObservation{name: ns, part: &nsPart{lab: q.Lab}}
	h, done, err := d.use(ns)
	switch {
	case err != nil && ns != reconcile.Host && errors.Is(err, unix.ENOENT):
		r.absent = true // removed since the directory was read
		return r, nil
	case err != nil && ns != reconcile.Host && notANetns(err):
		// Something that is no network namespace (another kind mounted
		// there, a symlink): not ours.
		d.log.Debug("skip what is no network namespace", "netns", ns, "err", err)
		r.foreign = true
		return r, nil
	}
	// Any other failure (out of descriptors, say) is an error, not a sign of
	// whose the namespace is: taken for foreign, a down would leave it.
	if err != nil {
		return nil, err
	}
	defer done()
	links, err := dumpIfaceRows(h.rt)
	if err != nil {
		return nil, fmt.Errorf("netns %s: list links: %w", ns, err)
	}
	if ns != reconcile.Host {
		// The namespace is the lab's when its lo bears the lab's marker.
		lo := loopbackOf(links)
		if owner := ownerOf(lo.alias); owner != q.Lab {
			r.foreign, r.owner = true, owner
			d.forget(ns)
			return r, nil
		}
		r.loUp, r.ipv6 = lo.up, lo.ipv6
	}
	goes := leaving(q, ns)
	if r.ends, err = d.observeNetns(r.part, ns, links, intents, !goes); err != nil {
		return nil, err
	}
	if goes {
		return r, nil
	}
	if err := d.observeQdiscs(r.part, ns, links, q.Qdiscs); err != nil { // qdisc.go
		return nil, err
	}
	t, err := d.observeTable(ns, reconcile.TableName(q.Lab), q.Tables[ns])
	if err != nil {
		return nil, err
	}
	if t != nil {
		r.part.table = t
	}
	if ns == reconcile.Host || q.Iptables[ns] != nil {
		ipt, conflicts, err := d.observeIptables(ns, q.Lab, q.Iptables[ns])
		if err != nil {
			return nil, err
		}
		if ipt != nil {
			r.part.iptables = ipt
		}
		r.part.conflicts = conflicts
	}
	if ns == reconcile.Host || wantsDockerTables(q, ns) {
		if err := d.observeDockerTables(r.part, ns, q); err != nil { // nftables.go
			return nil, err
		}
	}
	if findChain(q.Tables[ns], "forward") != nil {
		if r.part.warnings, err = d.forwardDrops(ns, reconcile.TableName(q.Lab)); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// notMounted tells what a regular file of the namespace directory is when no
// namespace is mounted on it: the leftover of an interrupted creation of the
// lab (absent), or a plain file in the way (notNetns); nil when it is a
// namespace.
func (d *Driver) notMounted(lab, ns string) *nsObservation {
	what := d.plainNetnsFile(ns)
	if what == "" {
		return nil
	}
	d.forget(ns) // a handle opened before the unmount reaches a namespace no name leads to
	r := &nsObservation{name: ns, part: &nsPart{lab: lab}}
	if d.interruptedNetns(lab, ns) {
		r.absent = true // creating it again will replace the leftover file
	} else {
		r.notNetns = what
	}
	return r
}

// leaving reports whether a namespace is one the plan will delete (see
// reconcile.Query.Keep).
func leaving(q reconcile.Query, ns string) bool {
	return ns != reconcile.Host && q.Keep != nil && !q.Keep[ns]
}

// nsPart is what one namespace holds for the lab, as read. It is kept until
// the next observation (see Driver.lastRead), for every namespace: lists,
// not a State's maps, which cost ten times the memory for the one or two
// things a namespace of a large lab holds.
type nsPart struct {
	lab           string
	interfaces    []*reconcile.Interface
	foreign       []foreignInterface
	addrs         []reconcile.AddrKey
	foreignAddrs  []reconcile.AddrKey
	routes        []*reconcile.Route
	foreignRoutes []*reconcile.Route
	qdiscs        []*reconcile.Qdisc
	table         *reconcile.Table   // the lab's nftables table
	iptables      *reconcile.Table   // the lab's rules in ip raw / ip filter / ip nat (iptables.go)
	conflicts     []string           // why the iptables layout cannot be written there
	docker        []*reconcile.Table // the lab's tables ip/ip6 docker-bridges (nftables.go)
	foreignTables []foreignTable     // Docker's tables where the lab wants its own, not the lab's
	warnings      []string
}

// foreignInterface is an interface that is not the lab's, with its owner ("" none).
type foreignInterface struct {
	key   reconcile.InterfaceKey
	owner string
}

// mergeInto adds what one namespace holds to the lab's state.
func (r *nsObservation) mergeInto(s *reconcile.State) {
	p := r.part
	for _, l := range p.interfaces {
		s.Interfaces[l.InterfaceKey] = l
	}
	for _, f := range p.foreign {
		s.ForeignInterfaces[f.key] = f.owner
	}
	for _, a := range p.addrs {
		s.Addrs[a] = true
	}
	for _, a := range p.foreignAddrs {
		s.ForeignAddrs[a] = true
	}
	for _, rt := range p.routes {
		s.Routes[rt.RouteKey] = rt
	}
	for _, rt := range p.foreignRoutes {
		s.ForeignRoutes[rt.RouteKey] = rt
	}
	if p.table != nil {
		s.Tables[r.name] = p.table
	}
	if p.iptables != nil {
		s.Iptables[r.name] = p.iptables
	}
	for _, t := range p.docker {
		s.DockerTables[t.Key()] = t
	}
	for _, f := range p.foreignTables {
		s.ForeignTables[f.key] = f.owner
	}
	for _, q := range p.qdiscs {
		s.Qdiscs[q.InterfaceKey] = q
	}
	s.Warnings = append(s.Warnings, p.warnings...)
	s.IptablesConflicts = append(s.IptablesConflicts, p.conflicts...)
}

// Netlink dumps can be interrupted when the kernel's tables change under them; the
// library then returns partial results with ErrDumpInterrupted. These wrappers are
// the only callers of the raw dumps, and retry.
const dumpRetries = 10

func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	for i := 0; ; i++ {
		v, err := dump()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < dumpRetries {
			continue
		}
		return v, err
	}
}
