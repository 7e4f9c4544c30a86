package kernel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// ownerOf reads an ownership marker: the lab named by a "netlab:LAB" alias, or "".
func ownerOf(alias string) string {
	lab, ok := strings.CutPrefix(alias, reconcile.MarkerPrefix)
	if !ok {
		return ""
	}
	return lab
}

// Observe returns what the kernel holds for q.Lab. It reads every namespace in the
// namespace directory (by its marker) and the host's interfaces, with one dump per
// object kind per namespace, and changes nothing.
func (d *Driver) Observe(ctx context.Context, q reconcile.Query) (*reconcile.State, error) {
	start := time.Now()
	lap := func(phase string) {
		d.log.Debug("observe", "phase", phase, "took", time.Since(start))
		start = time.Now()
	}
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
	names, odd, err := d.listNetns()
	if err != nil {
		return nil, err
	}
	for name, what := range odd {
		if !d.interruptedNetns(q.Lab, name) { // else creating it again replaces the leftover file
			s.NotNetns[name] = what
		}
	}
	intents, err := d.state.intents(q.Lab)
	if err != nil {
		return nil, err
	}
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
	err = forEach(ctx, indexes, func(i int) error {
		ns := all[i]
		if r := earlier[ns]; r != nil && q.Reread != nil && !q.Reread[ns] && ns != reconcile.Host {
			results[i] = r // untouched since it was read in this run (see reconcile.Query.Reread)
			return nil
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
		lastRead[r.name] = r
	}
	d.mu.Lock()
	d.lastRead = lastRead
	d.mu.Unlock()
	var ends []seenVeth
	for _, r := range results {
		switch {
		case r.absent:
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
	if err := d.observeFiles(s); err != nil {
		return nil, err
	}
	if err := d.observeExecs(s); err != nil {
		return nil, err
	}
	lap("processes, files")

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
	for _, k := range read {
		if _, ok := s.Namespaces[k.NS]; (!ok && k.NS != reconcile.Host) || leaving(q, k.NS) {
			continue // the namespace is not there yet, or goes: nothing to read
		}
		v, ok, err := d.readSysctl(k)
		if err != nil {
			return nil, err
		}
		if ok {
			s.Sysctls[k] = v
		}
	}
	if err := d.missingSysctls(q, s); err != nil {
		return nil, err
	}
	if err := d.missingQdiscs(q, s); err != nil { // qdisc.go
		return nil, err
	}
	return s, nil
}

// nsObservation is what one namespace holds for the lab.
type nsObservation struct {
	name    string
	foreign bool   // not the lab's: only its owner is known
	absent  bool   // only the file of an interrupted creation: not a namespace yet
	owner   string // for a foreign namespace: the lab that owns it ("" none)
	loUp    bool
	ipv6    bool
	part    *reconcile.State // its links, addresses, routes, table and warnings
	ends    []seenVeth
}

// observeOne reads one namespace: its marker, then (when it is the lab's, or the
// host) its interfaces, addresses, routes and the lab's table; only its
// interfaces when the plan will delete it (see reconcile.Query.Keep).
func (d *Driver) observeOne(q reconcile.Query, ns string, intents map[reconcile.InterfaceKey]int) (*nsObservation, error) {
	r := &nsObservation{name: ns, part: reconcile.NewState(q.Lab)}
	if ns != reconcile.Host && d.interruptedNetns(q.Lab, ns) {
		r.absent = true // creating it again will replace the leftover file
		return r, nil
	}
	h, err := d.handle(ns)
	if err != nil && ns != reconcile.Host {
		// A namespace file we cannot open (a stale mount, a plain file): not ours.
		d.log.Debug("skip unreadable namespace", "netns", ns, "err", err)
		r.foreign = true
		return r, nil
	}
	if err != nil {
		return nil, err
	}
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
		r.part.Tables[ns] = t
	}
	if findChain(q.Tables[ns], "forward") != nil {
		if r.part.Warnings, err = d.forwardDrops(ns, reconcile.TableName(q.Lab)); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// leaving reports whether a namespace is one the plan will delete (see
// reconcile.Query.Keep).
func leaving(q reconcile.Query, ns string) bool {
	return ns != reconcile.Host && q.Keep != nil && !q.Keep[ns]
}

// mergeInto adds what one namespace holds to the lab's state.
func (r *nsObservation) mergeInto(s *reconcile.State) {
	maps.Copy(s.Interfaces, r.part.Interfaces)
	maps.Copy(s.ForeignInterfaces, r.part.ForeignInterfaces)
	maps.Copy(s.ForeignRoutes, r.part.ForeignRoutes)
	maps.Copy(s.ForeignAddrs, r.part.ForeignAddrs)
	maps.Copy(s.Addrs, r.part.Addrs)
	maps.Copy(s.Routes, r.part.Routes)
	maps.Copy(s.Tables, r.part.Tables)
	maps.Copy(s.Qdiscs, r.part.Qdiscs)
	s.Warnings = append(s.Warnings, r.part.Warnings...)
}

// seenVeth is a veth interface seen in a namespace, for pairing ends with their peers.
type seenVeth struct {
	key       reconcile.InterfaceKey
	index     int
	peerIndex int
	peerNsid  int // -1: the peer is in the same namespace
	owned     bool
}

// loopbackOf finds lo among a namespace's interfaces.
func loopbackOf(links []ifaceRow) loopback {
	for _, l := range links {
		if l.name == "lo" {
			return l.loopback()
		}
	}
	return loopback{}
}

// observeNetns reads the interfaces, addresses and routes of one namespace, given
// its interfaces; only the interfaces unless deep.
func (d *Driver) observeNetns(s *reconcile.State, ns string, links []ifaceRow, intents map[reconcile.InterfaceKey]int, deep bool) ([]seenVeth, error) {
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.index] = l.name
	}
	h, err := d.handle(ns)
	if err != nil {
		return nil, err
	}
	owned := map[int]bool{}
	var ends []seenVeth
	for _, l := range links {
		if l.name == "lo" {
			continue
		}
		k := reconcile.InterfaceKey{NS: ns, Name: l.name}
		owner := ownerOf(l.alias)
		// Unmarked, it is the lab's only if it has the index recorded before its
		// creation (see Driver.newIndex): never by its name alone.
		unmarked := l.alias == "" && intents[k] != 0 && intents[k] == l.index
		isOwned := owner == s.Lab || unmarked
		if l.kind == reconcile.KindVeth {
			ends = append(ends, seenVeth{key: k, index: l.index, peerIndex: l.peerIndex, peerNsid: l.peerNsid, owned: isOwned})
		}
		if !isOwned {
			s.ForeignInterfaces[k] = owner
			continue
		}
		owned[l.index] = true
		s.Interfaces[k] = &reconcile.Interface{
			InterfaceKey: k,
			Kind:         l.kind,
			Master:       names[l.master],
			MTU:          l.mtu,
			MAC:          l.mac,
			Up:           l.up,
			Unmarked:     unmarked,
			Index:        l.index,
		}
	}
	if !deep {
		return ends, nil // a leaving namespace: its interfaces are all its deletion needs
	}

	addrs, err := dumpAddrs(h.rt)
	if err != nil {
		return nil, fmt.Errorf("netns %s: list addresses: %w", ns, err)
	}
	for _, a := range addrs {
		if a.prefix.Addr().Is6() && a.prefix.Addr().IsLinkLocalUnicast() {
			continue // the kernel's own fe80:: addresses are not the lab's
		}
		k := reconcile.InterfaceKey{NS: ns, Name: names[a.index]}
		switch {
		case owned[a.index]:
			s.Addrs[reconcile.AddrKey{InterfaceKey: k, Prefix: a.prefix}] = true
		case ns != reconcile.Host && k.Name == "lo": // a lab namespace's lo is the lab's
			if !a.prefix.Addr().IsLoopback() { // 127.0.0.1/8 and ::1 are the kernel's
				s.Addrs[reconcile.AddrKey{InterfaceKey: k, Prefix: a.prefix}] = true
			}
		default:
			s.ForeignAddrs[reconcile.AddrKey{InterfaceKey: k, Prefix: a.prefix}] = true
		}
	}

	routes, err := dumpMainRoutes(h.rt)
	if err != nil {
		return nil, fmt.Errorf("netns %s: list routes: %w", ns, err)
	}
	for _, r := range routes {
		k := reconcile.RouteKey{NS: ns, To: r.to, Metric: r.metric}
		if !owned[r.index] && (ns == reconcile.Host || names[r.index] != "lo") { // a lab namespace's lo is the lab's
			// Someone else's (the machine's default route, say): a route the lab
			// wants with the same key would replace it, whatever its kind.
			s.ForeignRoutes[k] = &reconcile.Route{RouteKey: k, Via: r.via, Dev: names[r.index]}
			continue
		}
		if !labRoute(r) {
			continue
		}
		s.Routes[k] = &reconcile.Route{RouteKey: k, Via: r.via, Dev: names[r.index]}
	}
	return ends, nil
}

// observeHairpins reads the hairpin mode of the lab's bridge ports. It is a port
// attribute that only a dump of the AF_BRIDGE family carries (netlink's
// LinkGetProtinfo does that whole dump for a single port), so each namespace
// with ports is dumped once.
func (d *Driver) observeHairpins(s *reconcile.State) error {
	ports := map[string]map[int]*reconcile.Interface{} // namespace -> ifindex -> port
	for _, l := range s.Interfaces {
		if l.Master != "" {
			if ports[l.NS] == nil {
				ports[l.NS] = map[int]*reconcile.Interface{}
			}
			ports[l.NS][l.Index] = l
		}
	}
	for ns, byIndex := range ports {
		hairpins, err := d.bridgePortHairpins(ns)
		if err != nil {
			return err
		}
		for index, l := range byIndex {
			l.Hairpin = hairpins[index]
		}
	}
	return nil
}

// bridgePortHairpins dumps the bridge ports of a namespace and returns which
// ones have hairpin mode on, by ifindex.
//
// Equivalent to: ip netns exec NS bridge -d link
func (d *Driver) bridgePortHairpins(ns string) (map[int]bool, error) {
	h, err := d.handle(ns)
	if err != nil {
		return nil, err
	}
	type hairpin struct {
		index int
		on    bool
	}
	found, err := retryDump(func() ([]hairpin, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
		var found []hairpin
		err := h.rt.request(req, func(m []byte) error {
			info := nl.DeserializeIfInfomsg(m)
			attrs, err := nl.ParseRouteAttr(m[info.Len():])
			if err != nil {
				return err
			}
			for _, a := range attrs {
				if a.Attr.Type != unix.IFLA_PROTINFO|unix.NLA_F_NESTED {
					continue
				}
				port, err := nl.ParseRouteAttr(a.Value)
				if err != nil {
					return err
				}
				for _, p := range port {
					if p.Attr.Type == nl.IFLA_BRPORT_MODE && len(p.Value) > 0 {
						found = append(found, hairpin{int(info.Index), p.Value[0] == 1})
					}
				}
			}
			return nil
		})
		return found, err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: list bridge ports: %w", ns, err)
	}
	out := map[int]bool{}
	for _, f := range found {
		out[f.index] = f.on
	}
	return out, nil
}

// Routes lists every route of a namespace's main table as `ip route` prints it,
// the kernel's own included, for `inspect`.
func (d *Driver) Routes(ns string) ([]string, error) {
	h, err := d.handle(ns)
	if err != nil {
		return nil, err
	}
	links, err := dumpIfaceRows(h.rt)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.index] = l.name
	}
	routes, err := dumpMainRoutes(h.rt)
	if err != nil {
		return nil, fmt.Errorf("netns %s: list routes: %w", ns, err)
	}
	var out []string
	for _, r := range routes {
		if r.to.Bits() > 0 && r.to.Addr().IsLinkLocalUnicast() && r.protocol == unix.RTPROT_KERNEL {
			continue // fe80::/64 on every interface: the kernel's, and `ip route` does not show it
		}
		dst := "default"
		if r.to.Bits() > 0 {
			dst = r.to.String()
		}
		parts := []string{dst}
		if r.via.IsValid() {
			parts = append(parts, "via", r.via.String())
		}
		parts = append(parts, "dev", names[r.index])
		if r.protocol == unix.RTPROT_KERNEL {
			parts = append(parts, "proto kernel")
		}
		if r.scope == unix.RT_SCOPE_LINK {
			parts = append(parts, "scope link")
		}
		if r.src.IsValid() {
			parts = append(parts, "src", r.src.String())
		}
		if r.metric != 0 {
			parts = append(parts, "metric", fmt.Sprint(r.metric))
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out, nil
}

// labRoute keeps the routes a lab can have asked for: unicast routes (of the
// main table: the only ones read), not those the kernel adds for addresses
// (proto kernel) or learns (RA, redirects).
func labRoute(r routeEntry) bool {
	switch r.protocol {
	case unix.RTPROT_KERNEL, unix.RTPROT_RA, unix.RTPROT_REDIRECT:
		return false
	}
	return r.typ == unix.RTN_UNICAST && !r.multipath
}

// resolvePeers finds the other end of each owned veth. A veth knows its peer's
// ifindex and, when the peer is in another namespace, that namespace's id as seen
// from its own. Two ends that point at each other's ifindex are a pair; only when
// several candidates do (ifindexes repeat across namespaces) is the namespace id
// asked of the kernel.
func (d *Driver) resolvePeers(s *reconcile.State, ends []seenVeth) error {
	type pointer struct{ index, peerIndex int }
	byPointer := map[pointer][]seenVeth{}
	for _, e := range ends {
		byPointer[pointer{e.index, e.peerIndex}] = append(byPointer[pointer{e.index, e.peerIndex}], e)
	}
	for _, e := range ends {
		if !e.owned {
			continue
		}
		var candidates []seenVeth
		for _, c := range byPointer[pointer{e.peerIndex, e.index}] {
			if (e.peerNsid < 0) == (c.key.NS == e.key.NS) {
				candidates = append(candidates, c)
			}
		}
		if len(candidates) > 1 {
			var err error
			if candidates, err = d.byNsid(e, candidates); err != nil {
				return err
			}
		}
		if len(candidates) == 1 {
			s.Interfaces[e.key].Peer = candidates[0].key
			s.Interfaces[e.key].PeerIndex = candidates[0].index
		}
	}
	return nil
}

// byNsid keeps the candidates whose namespace has the id e's namespace knows its peer's by.
func (d *Driver) byNsid(e seenVeth, candidates []seenVeth) ([]seenVeth, error) {
	h, err := d.handle(e.key.NS)
	if err != nil {
		return nil, err
	}
	lib, err := h.lib()
	if err != nil {
		return nil, err
	}
	var out []seenVeth
	for _, c := range candidates {
		ch, err := d.handle(c.key.NS)
		if err != nil {
			return nil, err
		}
		id, err := lib.GetNetNsIdByFd(int(ch.fd))
		if err != nil {
			return nil, fmt.Errorf("netns %s: namespace id of %s: %w", e.key.NS, c.key.NS, err)
		}
		if id == e.peerNsid {
			out = append(out, c)
		}
	}
	return out, nil
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
