package reconcile

import (
	"fmt"
	"net/netip"

	"netlab/topology"
)

// This file turns the lab file's NAT and filtering into the rules of the lab's
// tables: Docker's bridge behaviour (masquerade, icc, isolated, publish) and the
// generic `nat:` and `filter:` lists. The rules follow what dockerd puts in
// iptables (see docs/nat.md), written as nftables rules scoped to the lab's own
// interfaces.

// rulesCompiler builds the tables of one lab.
type rulesCompiler struct {
	lab    *topology.Lab
	s      *State
	tables map[string]*Table
}

func (c *rulesCompiler) table(ns string) *Table {
	k := c.lab.KernelName(ns)
	if t, ok := c.tables[k]; ok {
		return t
	}
	t := &Table{NS: k, Name: TableName(c.lab.Name)}
	c.tables[k] = t
	return t
}

func (c *rulesCompiler) add(ns, chain string, r *Rule) {
	ch := c.table(ns).chain(chain)
	ch.Rules = append(ch.Rules, r)
}

// published is one `publish:` entry resolved to the container address it reaches.
type published struct {
	p         *topology.Publish
	container string       // the namespace that publishes
	addr      netip.Addr   // the container's address on the bridge
	port      InterfaceKey // the container's bridge port (hairpin mode)
	bridge    *topology.Bridge
}

// compileRules fills s.Tables (and the sysctls and hairpin ports the rules need).
func compileRules(lab *topology.Lab, s *State) {
	c := &rulesCompiler{lab: lab, s: s, tables: map[string]*Table{}}

	// User rules come first, like Docker's DOCKER-USER chain: they are the place
	// for the lab author's own exceptions.
	for _, ns := range allNamespaces(lab) {
		for i, r := range ns.Filter {
			c.add(ns.Name, r.Chain, filterRule(r, ns.Name, i+1))
		}
		for i, r := range ns.NAT {
			chain := "nat-postrouting"
			if r.Action == "dnat" {
				chain = "nat-prerouting"
			}
			c.add(ns.Name, chain, natRule(r, ns.Name, i+1))
		}
	}

	pubs := c.publishedPorts()
	// Isolation comes before every bridge's own rules, as Docker's
	// DOCKER-ISOLATION chains do: otherwise a published port of one bridge would
	// accept a packet from an isolated neighbour before its drop is reached.
	for _, b := range lab.Bridges {
		if b.Internal && nativeFirewall(b) {
			c.internal(b)
		}
		if b.Isolated && nativeFirewall(b) {
			c.isolate(b)
		}
	}
	c.dnsRules()
	c.proxyReturns(pubs)
	c.proxyProcesses()
	var drops []*topology.Bridge
	for _, b := range lab.Bridges {
		if dockerBridge(b, pubs) && nativeFirewall(b) {
			c.dockerBridge(b, pubs)
			drops = append(drops, b)
		}
	}
	// Each bridge's "nothing else gets in" comes after every bridge's accepts, as
	// Docker's FORWARD policy drop does: otherwise traffic between two bridges
	// that are not isolated would pass one way only, by the order of the file.
	for _, b := range drops {
		c.add(b.Namespace, "forward", &Rule{Match: []Match{OIFName{Name: b.Name}}, Verdict: VerdictDrop,
			Comment: b.Name + ": nothing else gets in (Docker's FORWARD policy drop)"})
	}
	for k, t := range c.tables {
		s.Tables[k] = t
	}
	for ns, bridges := range c.iptablesBridges(pubs) {
		t := c.iptablesLayout(ns, bridges, pubs)
		s.Iptables[t.NS] = t
	}
	for ns, bridges := range c.nftablesBridges(pubs) {
		for _, t := range c.nftablesLayout(ns, bridges, pubs) {
			s.DockerTables[t.Key()] = t
		}
	}
}

// nativeFirewall says whether a bridge's Docker rules are in the lab's own
// table (`firewall: native`), not in Docker's layouts.
func nativeFirewall(b *topology.Bridge) bool { return !b.Iptables && !b.Nftables }

// dockerBridge says whether a bridge behaves like a Docker network: it does as
// soon as any of Docker's options is set on it or a port is published through it.
func dockerBridge(b *topology.Bridge, pubs []published) bool {
	if b.Masquerade || b.Isolated || b.ICC != nil || b.Internal {
		return true
	}
	for _, p := range pubs {
		if p.bridge == b {
			return true
		}
	}
	return false
}

// publishedPorts resolves each `publish:` to the container's address on the
// first bridge its interfaces are linked to.
func (c *rulesCompiler) publishedPorts() []published {
	var out []published
	for _, ns := range c.lab.Namespaces {
		if len(ns.Publish) == 0 {
			continue
		}
		end := bridgedEnd(ns)
		if end == nil || end.Config == nil {
			continue // validation refuses a publish without a bridge
		}
		b, ifc := end.Peer.OnBridge, end.Config
		port := InterfaceKey{c.lab.KernelName(end.Peer.Namespace), end.Peer.Interface}
		for _, p := range ns.Publish {
			for _, a := range ifc.Addresses {
				if p.HostIP.IsValid() && p.HostIP.Is4() != a.Prefix.Addr().Is4() {
					continue
				}
				out = append(out, published{p: p, container: ns.Name, addr: a.Prefix.Addr(), port: port, bridge: b})
			}
		}
	}
	return out
}

// bridgedEnd is the namespace's first link end whose peer is a port of a
// bridge that is not internal: its interface on the bridge its ports are
// published through (Docker's gateway network: an internal one is never that).
func bridgedEnd(ns *topology.Namespace) *topology.End {
	for _, end := range ns.Ends {
		if b := end.Peer.OnBridge; b != nil && !b.Internal {
			return end
		}
	}
	return nil
}

// internal drops what would leave an internal bridge for another interface,
// and what would enter it from one, as Docker's rules of a --internal network.
func (c *rulesCompiler) internal(b *topology.Bridge) {
	c.add(b.Namespace, "forward", &Rule{Match: []Match{IIFName{Name: b.Name}, OIFName{Name: b.Name, Neg: true}},
		Verdict: VerdictDrop, Comment: b.Name + ": internal, nothing leaves it"})
	c.add(b.Namespace, "forward", &Rule{Match: []Match{IIFName{Name: b.Name, Neg: true}, OIFName{Name: b.Name}},
		Verdict: VerdictDrop, Comment: b.Name + ": internal, nothing enters it"})
}

// isolate drops what enters an isolated bridge and leaves by another isolated
// bridge of the same namespace.
func (c *rulesCompiler) isolate(b *topology.Bridge) {
	for _, other := range c.lab.Bridges {
		if other != b && other.Isolated && nativeFirewall(other) && other.Namespace == b.Namespace {
			c.add(b.Namespace, "forward", &Rule{Match: []Match{IIFName{Name: b.Name}, OIFName{Name: other.Name}},
				Verdict: VerdictDrop, Comment: fmt.Sprintf("%s: isolated from %s", b.Name, other.Name)})
		}
	}
}

// dockerBridge writes what dockerd writes for one bridge network (docker0):
// forwarding policy, isolation, masquerade and published ports.
func (c *rulesCompiler) dockerBridge(b *topology.Bridge, pubs []published) {
	br := b.Name
	ns := b.Namespace
	oif := OIFName{Name: br}
	iif := IIFName{Name: br}
	notOif := OIFName{Name: br, Neg: true}
	notIif := IIFName{Name: br, Neg: true}

	// forward, in Docker's order.
	var mine, single []published // this bridge's published ports: looked up in sets, or one rule each
	for _, p := range pubs {
		switch {
		case p.bridge != b:
		case p.addr.Is4() && !p.p.HostIP.IsValid():
			mine = append(mine, p)
		default:
			single = append(single, p)
		}
	}
	sets := c.publishSets(b, mine)

	c.add(ns, "forward", &Rule{Match: []Match{oif, CtStateMatch{States: CtEstablished | CtRelated}}, Verdict: VerdictAccept,
		Comment: br + ": replies to connections from inside"})
	for _, s := range sets {
		lookup := SetLookup{Fields: []Field{{Dir: Dst}, {Proto: s.proto, Dir: Dst}}, Set: s.published}
		c.add(ns, "forward", &Rule{Match: []Match{notIif, oif, lookup},
			Verdict: VerdictAccept, Comment: br + ": published " + s.proto.Text() + " ports"})
	}
	for _, p := range single {
		c.add(ns, "forward", &Rule{Match: []Match{notIif, oif, addrMatch(Dst, p.addr), portMatch(p.p.Proto, Dst, uint16Range(p.p.Port))},
			Verdict: VerdictAccept, Comment: publishComment(p)})
	}
	if !b.Internal {
		c.add(ns, "forward", &Rule{Match: []Match{iif, notOif}, Verdict: VerdictAccept, Comment: br + ": containers may go out"})
	}
	icc := b.ICC == nil || *b.ICC
	if icc {
		c.add(ns, "forward", &Rule{Match: []Match{iif, oif}, Verdict: VerdictAccept, Comment: br + ": icc, containers may talk to each other"})
	} else {
		c.add(ns, "forward", &Rule{Match: []Match{iif, oif}, Verdict: VerdictDrop, Comment: br + ": no icc, containers may not talk to each other"})
	}

	// Masquerade what leaves the bridge's subnets by another interface.
	if b.Masquerade {
		for _, a := range b.Addresses {
			c.add(ns, "nat-postrouting", &Rule{Match: []Match{addrMatch(Src, a.Prefix.Masked()), notOif}, Verdict: VerdictMasquerade,
				Comment: fmt.Sprintf("%s: masquerade %s", br, a.Prefix.Masked())})
		}
	}

	c.publishNAT(b, sets, mine, single)
	hasPub := len(mine) > 0 || len(single) > 0
	if hasPub || !icc {
		// Traffic between two ports of the bridge is bridged, not routed: it
		// crosses the forward hook only with br_netfilter's call-iptables on. icc
		// off needs it to be dropped, and a neighbour's hairpin connection needs it
		// for the replies to be un-NATed, as with Docker.
		c.s.Sysctls[SysctlKey{c.lab.KernelName(ns), "net/bridge/bridge-nf-call-iptables"}] = "1"
	}
	if hasPub && !b.UserlandProxy {
		// The host reaching a published port as 127.0.0.1:PORT: the kernel must
		// route a loopback source out of the bridge, which then masquerades it.
		c.s.Sysctls[SysctlKey{c.lab.KernelName(ns), "net/ipv4/conf/" + br + "/route_localnet"}] = "1"
		c.add(ns, "nat-postrouting", &Rule{Match: []Match{oif, FibLocal{Dir: Src}}, Verdict: VerdictMasquerade,
			Comment: br + ": the host's own connections to published ports"})
	}
}

// publishNAT writes the NAT of a bridge's published ports: those looked up in
// sets, and those of one rule each.
func (c *rulesCompiler) publishNAT(b *topology.Bridge, sets []publishSetNames, mine, single []published) {
	br, ns := b.Name, b.Namespace
	// Published ports: DNAT from anywhere to a local address, from other machines
	// (prerouting) and from the host itself (output), as Docker without its
	// userland proxy does.
	for _, s := range sets {
		// The host ports are matched first, so that the counter counts only
		// published ports; the map then gives the address and port to translate
		// to. (A map looked up as a set would do both, but kernels before 6.5
		// refuse that.)
		dnat := &Rule{Match: []Match{FibLocal{Dir: Dst}, SetLookup{Fields: []Field{{Proto: s.proto, Dir: Dst}}, Set: s.ports}},
			Verdict: VerdictDNAT, NAT: NATTarget{Map: s.dnat, MapProto: s.proto}, Comment: br + ": published " + s.proto.Text() + " ports"}
		c.add(ns, "nat-prerouting", dnat)
		c.add(ns, "nat-output", c.outputDNAT(b, dnat, netip.IPv4Unspecified()))
		// A container reaching its own published port comes back through the same
		// port (hairpin), and must see the host as the source to answer it.
		lookup := SetLookup{Fields: []Field{{Dir: Src}, {Dir: Dst}, {Proto: s.proto, Dir: Dst}}, Set: s.hairpin}
		c.add(ns, "nat-postrouting", &Rule{Match: []Match{lookup},
			Verdict: VerdictMasquerade, Comment: br + ": published " + s.proto.Text() + " ports: hairpin"})
	}
	for _, p := range mine {
		if l := c.s.Interfaces[p.port]; l != nil && !b.UserlandProxy {
			l.Hairpin = true
		}
	}
	for _, p := range single {
		match := []Match{FibLocal{Dir: Dst}}
		if p.p.HostIP.IsValid() {
			match = append(match, addrMatch(Dst, p.p.HostIP))
		}
		match = append(match, portMatch(p.p.Proto, Dst, uint16Range(p.p.HostPort)))
		dnat := &Rule{Match: match, Verdict: VerdictDNAT, NAT: natTarget(p.addr, uint16Range(p.p.Port)), Comment: publishComment(p)}
		c.add(ns, "nat-prerouting", dnat)
		c.add(ns, "nat-output", c.outputDNAT(b, dnat, p.addr))
		// A container reaching its own published port comes back through the same
		// port (hairpin), and must see the host as the source to answer it.
		c.add(ns, "nat-postrouting", &Rule{Match: []Match{addrMatch(Src, p.addr), addrMatch(Dst, p.addr), portMatch(p.p.Proto, Dst, uint16Range(p.p.Port))},
			Verdict: VerdictMasquerade, Comment: publishComment(p) + ": hairpin"})
		if l := c.s.Interfaces[p.port]; l != nil && !b.UserlandProxy {
			l.Hairpin = true
		}
	}
}

// publishSetNames are the sets of one bridge's published ports of one protocol.
type publishSetNames struct {
	proto     Proto
	ports     string // set: the host ports
	dnat      string // map: host port -> container address . port
	published string // set: container address . port, let in from outside
	hairpin   string // set: container address . itself . port, masqueraded
}

// publishSets fills, per protocol, the sets that stand for a bridge's IPv4
// published ports on every host address, and returns their names.
func (c *rulesCompiler) publishSets(b *topology.Bridge, pubs []published) []publishSetNames {
	var (
		portType     = []DataType{TypeInetService}
		addrPortType = []DataType{TypeIPv4Addr, TypeInetService}
		hairpinType  = []DataType{TypeIPv4Addr, TypeIPv4Addr, TypeInetService}
	)
	var out []publishSetNames
	for _, proto := range []Proto{ProtoTCP, ProtoUDP} {
		prefix := b.Name + "-" + proto.Text()
		n := publishSetNames{proto: proto, ports: prefix + "-ports", dnat: prefix + "-dnat",
			published: prefix + "-published", hairpin: prefix + "-hairpin"}
		used := false
		for _, p := range pubs {
			if protoOf(p.p.Proto) != proto {
				continue
			}
			t := c.table(b.Namespace)
			hostPort, addr, port := PortValue(p.p.HostPort), AddrValue(p.addr), PortValue(p.p.Port)
			t.set(n.ports, portType, nil).Add(Element{Key: []Value{hostPort}})
			t.set(n.dnat, portType, addrPortType).Add(Element{Key: []Value{hostPort}, Data: []Value{addr, port}})
			t.set(n.published, addrPortType, nil).Add(Element{Key: []Value{addr, port}})
			t.set(n.hairpin, hairpinType, nil).Add(Element{Key: []Value{addr, addr, port}})
			used = true
		}
		if used {
			out = append(out, n)
		}
	}
	return out
}

func publishComment(p published) string {
	return fmt.Sprintf("publish %s %s", p.container, p.p.Text)
}

func uint16Range(p uint16) topology.PortRange { return topology.PortRange{First: p, Last: p} }

// addrMatch matches a source or destination address or prefix.
func addrMatch(dir Dir, a any) Match {
	switch a := a.(type) {
	case netip.Addr:
		return AddrMatch{Dir: dir, Prefix: netip.PrefixFrom(a, a.BitLen())}
	case netip.Prefix:
		return AddrMatch{Dir: dir, Prefix: a}
	}
	panic("reconcile: addrMatch of a " + fmt.Sprintf("%T", a))
}

func prefixMatch(dir Dir, p netip.Prefix) []Match {
	if !p.IsValid() {
		return nil
	}
	return []Match{addrMatch(dir, p)}
}

// portMatch matches a TCP or UDP port or range.
func portMatch(proto string, dir Dir, r topology.PortRange) Match {
	return PortMatch{Proto: protoOf(proto), Dir: dir, First: r.First, Last: max(r.Last, r.First)}
}

func ifaceMatches(i topology.Iface, out bool) []Match {
	switch {
	case i.Name == "":
		return nil
	case out:
		return []Match{OIFName{Name: i.Name, Neg: i.Not}}
	}
	return []Match{IIFName{Name: i.Name, Neg: i.Not}}
}

// natTarget is the address[:port] of a snat/dnat.
func natTarget(a netip.Addr, port topology.PortRange) NATTarget {
	return NATTarget{Addr: a, First: port.First, Last: max(port.Last, port.First)}
}

// commonMatches are the interface and address matches of a `nat:` or `filter:` rule.
func commonMatches(in, out topology.Iface, source, dest netip.Prefix) []Match {
	var m []Match
	m = append(m, ifaceMatches(in, false)...)
	m = append(m, ifaceMatches(out, true)...)
	m = append(m, prefixMatch(Src, source)...)
	return append(m, prefixMatch(Dst, dest)...)
}

// natRule is one `nat:` rule; n is its place in the namespace's list (from 1), so
// the comment names it without depending on the lines around it.
func natRule(r *topology.NATRule, ns string, n int) *Rule {
	m := commonMatches(r.In, r.Out, r.Source, r.Dest)
	if r.Proto != "" && r.Port.First != 0 {
		m = append(m, portMatch(r.Proto, Dst, r.Port))
	} else if r.Proto != "" {
		m = append(m, L4ProtoMatch{Proto: protoOf(r.Proto)})
	}
	rule := &Rule{Match: m, Verdict: verdictOf(r.Action), Comment: fmt.Sprintf("%s nat %d: %s", ns, n, r.Action)}
	if rule.Verdict != VerdictMasquerade {
		rule.NAT = natTarget(r.To, r.ToPort)
	}
	return rule
}

// filterRule is one `filter:` rule; n is its place in the namespace's list (from 1).
func filterRule(r *topology.FilterRule, ns string, n int) *Rule {
	m := commonMatches(r.In, r.Out, r.Source, r.Dest)
	switch {
	case (r.Proto == "tcp" || r.Proto == "udp") && (r.SPort.First != 0 || r.DPort.First != 0):
		if r.SPort.First != 0 {
			m = append(m, portMatch(r.Proto, Src, r.SPort))
		}
		if r.DPort.First != 0 {
			m = append(m, portMatch(r.Proto, Dst, r.DPort))
		}
	case r.Proto != "":
		m = append(m, L4ProtoMatch{Proto: protoOf(r.Proto)})
	}
	if len(r.State) > 0 {
		m = append(m, CtStateMatch{States: ctStatesOf(r.State)})
	}
	return &Rule{Match: m, Verdict: verdictOf(r.Action), Comment: fmt.Sprintf("%s filter %d: %s", ns, n, r.Action)}
}
