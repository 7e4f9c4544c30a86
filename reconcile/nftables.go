package reconcile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"netlab/topology"
)

// The nftables layout (`firewall: nftables` on a bridge; `docker: {version:
// "29", firewall: nftables}` at Docker's level): the rules of Docker's bridges
// as Docker 29 writes them with --firewall-backend=nftables, in its own tables
// `ip docker-bridges` and `ip6 docker-bridges`, with its chain names,
// priorities, verdict maps and rule order (moby's nftabler:
// daemon/libnetwork/drivers/bridge/internal/nftabler, whose testdata goldens
// are `nft list table` of each option). They are the same typed rules as the
// lab's own table; the kernel driver writes each table in one transaction and
// marks it as the lab's in the table's userdata, so that a table of that name
// it did not write (a live dockerd's, another lab's) is a conflict.
//
// What dockerd does, and netlab with it:
//   - At start, both tables (ip6tables is on by default since Docker 27) with
//     the base chains and four verdict maps: filter-FORWARD jumps, by the
//     packet's output and input interface, to a network's filter-forward-in__BR
//     and filter-forward-out__BR; nat-POSTROUTING likewise to
//     nat-postrouting-in__BR / -out__BR; nat-PREROUTING and nat-OUTPUT jump
//     for a local destination to nat-prerouting-and-output, which holds the
//     published ports' DNAT; raw-PREROUTING holds the endpoints' drops.
//   - Per network (bridge) with an address of the table's family: its four
//     chains and map elements; conntrack replies accepted both ways; ICC;
//     OUTGOING accepted; anything else coming in dropped ("UNPUBLISHED PORT
//     DROP"); the subnet masqueraded when it leaves by another interface.
//   - Per endpoint (container address): raw-PREROUTING drops packets to it
//     that do not come from its bridge ("DROP DIRECT ACCESS").
//   - Per published port: its accept in filter-forward-in__BR, its DNAT, and
//     without the userland proxy (Docker's "hairpin" mode) the masquerade of a
//     container reaching its own port.
//   - An internal network (--internal) has, instead of ICC with its
//     iifname, OUTGOING, the drop of unpublished ports and the NAT, the drop
//     of what comes from another interface ("INTERNAL NETWORK INGRESS") and
//     of what leaves for one ("EGRESS"), then ICC; its endpoints have no
//     raw-PREROUTING drop, and nothing is published on it.
// Docker has no isolation chains in this layout: a network's "UNPUBLISHED
// PORT DROP" keeps the others out (but not from its published ports).

// LayoutNftables is Table.Layout for Docker 29's tables.
const LayoutNftables = "nftables"

// DockerTableName is the name of Docker 29's tables.
const DockerTableName = "docker-bridges"

// Docker's names of the chains and maps.
const (
	nftForward        = "filter-FORWARD"
	nftPostrouting    = "nat-POSTROUTING"
	nftPrerouting     = "nat-PREROUTING"
	nftOutput         = "nat-OUTPUT"
	nftNAT            = "nat-prerouting-and-output"
	nftRawPrerouting  = "raw-PREROUTING"
	nftFwdInJumps     = "filter-forward-in-jumps"
	nftFwdOutJumps    = "filter-forward-out-jumps"
	nftPostOutJumps   = "nat-postrouting-out-jumps"
	nftPostInJumps    = "nat-postrouting-in-jumps"
	nftPriorityRaw    = -300
	nftPriorityDstNAT = -100
	nftPrioritySrcNAT = 100
)

// nftablesBridges are the bridges of each namespace written in the nftables layout.
func (c *rulesCompiler) nftablesBridges(pubs []published) map[string][]*topology.Bridge {
	out := map[string][]*topology.Bridge{}
	for _, b := range c.lab.Bridges {
		if b.Nftables && dockerBridge(b, pubs) {
			out[b.Namespace] = append(out[b.Namespace], b)
		}
	}
	return out
}

// nftablesLayout writes the tables Docker 29 writes for a namespace's bridges,
// in the file's order of the bridges (the order Docker creates its networks)
// and of the containers (the order of `docker run`).
func (c *rulesCompiler) nftablesLayout(ns string, bridges []*topology.Bridge, pubs []published) []*Table {
	proxy := slices.ContainsFunc(bridges, func(b *topology.Bridge) bool { return b.UserlandProxy })
	var out []*Table
	for _, family := range []string{FamilyIP, FamilyIP6} {
		t := newDockerTable(c.lab.KernelName(ns), family, proxy)
		for _, b := range bridges {
			if prefix := familyPrefix(b, family); prefix.IsValid() {
				c.dockerNetwork(t, b, prefix, pubs)
			}
		}
		c.dockerEndpoints(t, bridges, pubs)
		out = append(out, t)
	}
	for _, b := range bridges {
		k := c.lab.KernelName(ns)
		// Docker 29 loads br_netfilter's call-iptables only for icc off, or for
		// the DNAT of a neighbour's hairpin connection without the proxy.
		if (b.ICC != nil && !*b.ICC) || !b.UserlandProxy {
			c.s.Sysctls[SysctlKey{k, "net/bridge/bridge-nf-call-iptables"}] = "1"
		}
		if !b.UserlandProxy {
			c.s.Sysctls[SysctlKey{k, "net/ipv4/conf/" + b.Name + "/route_localnet"}] = "1"
			for _, port := range b.Ports { // every endpoint's port, as dockerd
				if l := c.s.Interfaces[InterfaceKey{k, port.Interface}]; l != nil {
					l.Hairpin = true
				}
			}
		}
	}
	return out
}

// familyPrefix is the bridge's subnet of the family: of its first address of it.
func familyPrefix(b *topology.Bridge, family string) netip.Prefix {
	for _, a := range b.Addresses {
		if a.Prefix.Addr().Is4() == (family == FamilyIP) {
			return a.Prefix.Masked()
		}
	}
	return netip.Prefix{}
}

func isFamily(a netip.Addr, family string) bool { return a.Is4() == (family == FamilyIP) }

// newDockerTable is a table as dockerd creates it at start: the maps, and the
// base chains in the order of its first transaction (by name).
func newDockerTable(ns, family string, proxy bool) *Table {
	t := &Table{NS: ns, Name: DockerTableName, Layout: LayoutNftables, Family: family}
	for _, m := range []string{nftFwdInJumps, nftFwdOutJumps, nftPostOutJumps, nftPostInJumps} {
		t.set(m, []DataType{TypeIFName}, []DataType{TypeVerdict})
	}
	vmap := func(out bool, m string) *Rule {
		return &Rule{Verdict: VerdictVmap, Vmap: Vmap{Out: out, Map: m}, NoCounter: true}
	}
	local := FibLocal{Dir: Dst}
	toNAT := &Rule{Match: []Match{local}, Verdict: VerdictJump, Chain: nftNAT}
	output := toNAT
	if proxy { // the proxy answers the host's own connections to loopback
		loopback := netip.IPv4Unspecified()
		if family == FamilyIP6 {
			loopback = netip.IPv6Unspecified()
		}
		output = &Rule{Match: []Match{notLoopback(loopback), local}, Verdict: VerdictJump, Chain: nftNAT}
	}
	t.Chains = []*Chain{
		{Name: nftForward, Type: ChainFilter, Hook: HookForward, Rules: []*Rule{vmap(true, nftFwdInJumps), vmap(false, nftFwdOutJumps)}},
		{Name: nftOutput, Type: ChainNAT, Hook: HookOutput, Priority: nftPriorityDstNAT, Rules: []*Rule{output}},
		{Name: nftPostrouting, Type: ChainNAT, Hook: HookPostrouting, Priority: nftPrioritySrcNAT,
			Rules: []*Rule{vmap(false, nftPostOutJumps), vmap(true, nftPostInJumps)}},
		{Name: nftPrerouting, Type: ChainNAT, Hook: HookPrerouting, Priority: nftPriorityDstNAT, Rules: []*Rule{toNAT}},
		{Name: nftNAT},
		{Name: nftRawPrerouting, Type: ChainFilter, Hook: HookPrerouting, Priority: nftPriorityRaw},
	}
	return t
}

// dockerChain returns the table's chain of that name (of the layout).
func (t *Table) dockerChain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	panic("reconcile: no chain " + name + " in " + t.Name)
}

// appendOnce appends a rule to a chain unless the chain has it: dockerd
// ignores a rule it already wrote (two host ports of one container port).
func (ch *Chain) appendOnce(r *Rule) {
	if !slices.ContainsFunc(ch.Rules, func(o *Rule) bool { return o.Text() == r.Text() }) {
		ch.Rules = append(ch.Rules, r)
	}
}

// dockerNetwork writes one network's chains, map elements and published
// ports, in the order dockerd's rule groups give them.
func (c *rulesCompiler) dockerNetwork(t *Table, b *topology.Bridge, prefix netip.Prefix, pubs []published) {
	br := b.Name
	in := &Chain{Name: "filter-forward-in__" + br}
	out := &Chain{Name: "filter-forward-out__" + br}
	postIn := &Chain{Name: "nat-postrouting-in__" + br}
	postOut := &Chain{Name: "nat-postrouting-out__" + br}
	t.Chains = append(t.Chains, in, out, postIn, postOut) // by name, as dockerd declares them
	for m, ch := range map[string]*Chain{nftFwdInJumps: in, nftFwdOutJumps: out, nftPostInJumps: postIn, nftPostOutJumps: postOut} {
		t.set(m, nil, nil).Add(Element{Key: []Value{NameValue(br)}, Data: []Value{JumpValue(ch.Name)}})
	}
	replies := CtStateMatch{States: CtEstablished | CtRelated}
	in.Rules = append(in.Rules, &Rule{Match: []Match{replies}, Verdict: VerdictAccept})
	out.Rules = append(out.Rules, &Rule{Match: []Match{replies}, Verdict: VerdictAccept})
	icc := VerdictAccept
	if b.ICC != nil && !*b.ICC {
		icc = VerdictDrop
	}
	if b.Internal {
		// Nothing from another interface gets in, nothing leaves for one; the
		// rest is between the bridge's ports.
		in.Rules = append(in.Rules, &Rule{Match: []Match{IIFName{Name: br, Neg: true}}, Verdict: VerdictDrop, Comment: "INTERNAL NETWORK INGRESS"})
		out.Rules = append(out.Rules, &Rule{Match: []Match{OIFName{Name: br, Neg: true}}, Verdict: VerdictDrop, Comment: "INTERNAL NETWORK EGRESS"})
		in.Rules = append(in.Rules, &Rule{Verdict: icc, Comment: "ICC"})
		return
	}
	in.Rules = append(in.Rules, &Rule{Match: []Match{IIFName{Name: br}}, Verdict: icc, Comment: "ICC"})
	out.Rules = append(out.Rules, &Rule{Verdict: VerdictAccept, Comment: "OUTGOING"})
	if b.Masquerade {
		postOut.Rules = append(postOut.Rules, &Rule{Match: []Match{OIFName{Name: br, Neg: true}, addrMatch(Src, prefix)},
			Verdict: VerdictMasquerade, Comment: "MASQUERADE"})
	}
	if !b.UserlandProxy {
		postIn.Rules = append(postIn.Rules, &Rule{Match: []Match{FibLocal{Dir: Src}}, Verdict: VerdictMasquerade, Comment: "MASQUERADE FROM HOST"})
	}
	nat := t.dockerChain(nftNAT)
	for _, p := range pubs {
		if p.bridge != b || !isFamily(p.addr, t.Family) {
			continue
		}
		proto := protoOf(p.p.Proto)
		in.appendOnce(&Rule{Match: []Match{addrMatch(Dst, p.addr), portMatch(p.p.Proto, Dst, uint16Range(p.p.Port))}, Verdict: VerdictAccept})
		var dnat []Match
		if b.UserlandProxy {
			dnat = append(dnat, IIFName{Name: br, Neg: true})
		}
		if t.Family == FamilyIP6 { // not from a link-local address
			dnat = append(dnat, AddrMatch{Dir: Src, Prefix: netip.MustParsePrefix("fe80::/10"), Neg: true})
		}
		if p.p.HostIP.IsValid() && !p.p.HostIP.IsUnspecified() {
			dnat = append(dnat, addrMatch(Dst, p.p.HostIP))
		}
		dnat = append(dnat, PortMatch{Proto: proto, Dir: Dst, First: p.p.HostPort, Last: p.p.HostPort})
		nat.Rules = append(nat.Rules, &Rule{Match: dnat, Verdict: VerdictDNAT, NAT: natTarget(p.addr, uint16Range(p.p.Port)), Comment: "DNAT"})
		if !b.UserlandProxy {
			postIn.appendOnce(&Rule{Match: []Match{addrMatch(Src, p.addr), addrMatch(Dst, p.addr), portMatch(p.p.Proto, Dst, uint16Range(p.p.Port))},
				Verdict: VerdictMasquerade, Comment: "MASQ TO OWN PORT"})
		}
	}
	in.Rules = append(in.Rules, &Rule{Verdict: VerdictDrop, Comment: "UNPUBLISHED PORT DROP"})
}

// dockerEndpoints writes raw-PREROUTING: per container, in the order they
// are started, the drop of packets to its address that do not come from its
// bridge, then, per port it publishes on an IPv4 loopback address, the drop
// of that port's packets that do not come from lo.
func (c *rulesCompiler) dockerEndpoints(t *Table, bridges []*topology.Bridge, pubs []published) {
	raw := t.dockerChain(nftRawPrerouting)
	for _, ns := range c.lab.Namespaces {
		for _, end := range ns.Ends {
			b := end.Peer.OnBridge
			if b == nil || b.Internal || end.Config == nil || !slices.Contains(bridges, b) || !familyPrefix(b, t.Family).IsValid() {
				continue
			}
			for _, a := range end.Config.Addresses {
				if isFamily(a.Prefix.Addr(), t.Family) {
					raw.Rules = append(raw.Rules, &Rule{Match: []Match{addrMatch(Dst, a.Prefix.Addr()), IIFName{Name: b.Name, Neg: true}},
						Verdict: VerdictDrop, Comment: "DROP DIRECT ACCESS"})
				}
			}
		}
		if t.Family != FamilyIP {
			continue
		}
		for _, p := range pubs {
			if p.container == ns.Name && slices.Contains(bridges, p.bridge) && p.p.HostIP.Is4() && p.p.HostIP.IsLoopback() {
				raw.appendOnce(&Rule{Match: []Match{IIFName{Name: "lo", Neg: true}, addrMatch(Dst, p.p.HostIP),
					PortMatch{Proto: protoOf(p.p.Proto), Dir: Dst, First: p.p.HostPort, Last: p.p.HostPort}},
					Verdict: VerdictDrop, Comment: "DROP REMOTE LOOPBACK"})
			}
		}
	}
}

// dockerCommands are the commands that write one of Docker's tables as up
// does: the table made and marked as the lab's (by netlab: nft cannot write
// the mark), then in one nft transaction the old contents out (the rules,
// then the maps, then the chains) and the table's in.
func (a ReplaceTable) dockerCommands() []string {
	t := a.Table
	name := t.NftFamily() + " " + t.Name
	var b strings.Builder
	if a.Old != nil {
		fmt.Fprintf(&b, "flush table %s\n", name)
		for _, s := range a.Old.Sets {
			fmt.Fprintf(&b, "delete %s %s %s\n", s.Kind(), name, s.Name)
		}
		for _, c := range a.Old.Chains {
			fmt.Fprintf(&b, "delete chain %s %s\n", name, c.Name)
		}
	}
	t.writeBody(&b)
	return []string{
		fmt.Sprintf("netlab __create-table %s %s %s  # make the table, marked as the lab's, as up does", a.Lab, t.NS, t.Family),
		fmt.Sprintf("%snft -f - <<'EOF'\n%sEOF", nsExec(t.NS), b.String()),
	}
}
