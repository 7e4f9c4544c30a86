package kernel

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// The per-object readers of an observation (see observe.go for the order they
// run in): a namespace's interfaces, addresses and routes, the bridge ports'
// hairpin mode, and the pairing of veth ends across namespaces.

// ownerOf reads an ownership marker: the lab named by a "netlab:LAB" alias, or "".
func ownerOf(alias string) string {
	lab, ok := strings.CutPrefix(alias, reconcile.MarkerPrefix)
	if !ok {
		return ""
	}
	return lab
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
func (d *Driver) observeNetns(s *nsPart, ns string, links []ifaceRow, intents map[reconcile.InterfaceKey]int, deep bool) ([]seenVeth, error) {
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.index] = l.name
	}
	h, done, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	defer done()
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
		isOwned := owner == s.lab || unmarked
		if l.kind == reconcile.KindVeth {
			ends = append(ends, seenVeth{key: k, index: l.index, peerIndex: l.peerIndex, peerNsid: l.peerNsid, owned: isOwned})
		}
		if !isOwned {
			s.foreign = append(s.foreign, foreignInterface{k, owner})
			continue
		}
		owned[l.index] = true
		s.interfaces = append(s.interfaces, &reconcile.Interface{
			InterfaceKey: k,
			Kind:         l.kind,
			Master:       names[l.master],
			MTU:          l.mtu,
			MAC:          l.mac,
			Up:           l.up,
			SnoopingOff:  l.snoopingOff,
			NoSnooping:   l.noSnooping,
			Unmarked:     unmarked,
			Index:        l.index,
		})
	}
	if !deep {
		return ends, nil // a leaving namespace: its interfaces are all its deletion needs
	}
	return ends, d.observeAddrsRoutes(s, h, ns, names, owned, ns == reconcile.Host || anyIPv6(links))
}

// anyIPv6 reports whether IPv6 is on for any of a namespace's interfaces. Where it
// is off for all (as in every lab namespace without IPv6 addresses or routes), the
// kernel keeps no IPv6 address on them and refuses IPv6 routes through them but
// for reject routes (which a route through lo becomes): none of those can be the
// lab's, which turns IPv6 on where it has any IPv6 route (reconcile.DesiredOn). A
// thousand such namespaces are read in two dumps fewer each (a no-op up of 1000:
// 10-15 ms). The host is always read whole: netlab never turns its IPv6 on.
func anyIPv6(links []ifaceRow) bool {
	return slices.ContainsFunc(links, func(l ifaceRow) bool { return l.ipv6 })
}

// observeAddrsRoutes reads a namespace's addresses and main-table routes: those
// of the lab's interfaces (owned, by index) are the lab's, the others foreign.
// Without ipv6, only IPv4's (see anyIPv6).
func (d *Driver) observeAddrsRoutes(s *nsPart, h *nsHandle, ns string, names map[int]string, owned map[int]bool, ipv6 bool) error {
	addrs, err := dumpAddrs(h.rt, ipv6)
	if err != nil {
		return fmt.Errorf("netns %s: list addresses: %w", ns, err)
	}
	for _, a := range addrs {
		if a.prefix.Addr().Is6() && a.prefix.Addr().IsLinkLocalUnicast() {
			continue // the kernel's own fe80:: addresses are not the lab's
		}
		k := reconcile.InterfaceKey{NS: ns, Name: names[a.index]}
		switch {
		case owned[a.index]:
			s.addrs = append(s.addrs, reconcile.AddrKey{InterfaceKey: k, Prefix: a.prefix})
		case ns != reconcile.Host && k.Name == "lo": // a lab namespace's lo is the lab's
			if !a.prefix.Addr().IsLoopback() { // 127.0.0.1/8 and ::1 are the kernel's
				s.addrs = append(s.addrs, reconcile.AddrKey{InterfaceKey: k, Prefix: a.prefix})
			}
		default:
			s.foreignAddrs = append(s.foreignAddrs, reconcile.AddrKey{InterfaceKey: k, Prefix: a.prefix})
		}
	}

	routes, err := dumpMainRoutes(h.rt, ipv6)
	if err != nil {
		return fmt.Errorf("netns %s: list routes: %w", ns, err)
	}
	for _, r := range routes {
		k := reconcile.RouteKey{NS: ns, To: r.to, Metric: r.metric}
		if !owned[r.index] && (ns == reconcile.Host || names[r.index] != "lo") { // a lab namespace's lo is the lab's
			// Someone else's (the machine's default route, say): a route the lab
			// wants with the same key would replace it, whatever its kind.
			s.foreignRoutes = append(s.foreignRoutes, &reconcile.Route{RouteKey: k, Via: r.via, Dev: names[r.index]})
			continue
		}
		if !labRoute(r) {
			continue
		}
		s.routes = append(s.routes, &reconcile.Route{RouteKey: k, Via: r.via, Dev: names[r.index]})
	}
	return nil
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
	h, done, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	type hairpin struct {
		index int
		on    bool
	}
	found, err := retryDump(func() ([]hairpin, error) {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
		var found []hairpin
		err := h.rt.request(req, func(m []byte) error {
			if len(m) < unix.SizeofIfInfomsg {
				return fmt.Errorf("short link message")
			}
			info := nl.DeserializeIfInfomsg(m)
			return eachAttr(m[info.Len():], func(typ uint16, v []byte) error {
				if typ != unix.IFLA_PROTINFO {
					return nil
				}
				return eachAttr(v, func(typ uint16, v []byte) error {
					if typ == nl.IFLA_BRPORT_MODE && len(v) > 0 {
						found = append(found, hairpin{int(info.Index), v[0] == 1})
					}
					return nil
				})
			})
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
	h, done, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	links, err := dumpIfaceRows(h.rt)
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.index] = l.name
	}
	routes, err := dumpMainRoutes(h.rt, true)
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
	h, done, err := d.use(e.key.NS)
	if err != nil {
		return nil, err
	}
	defer done()
	lib, err := d.libOf(h)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", e.key.NS, err)
	}
	var out []seenVeth
	for _, c := range candidates {
		ch, done, err := d.use(c.key.NS)
		if err != nil {
			return nil, err
		}
		defer done()
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
