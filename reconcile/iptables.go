package reconcile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"netlab/topology"
)

// The iptables layout (`firewall: iptables` on a bridge; `docker: {firewall:
// iptables}` at Docker's level): the rules of Docker's bridges as dockerd 26.1
// writes them, in the shared tables ip filter and ip nat, with the chains,
// order and policies it uses, so that `iptables-save` prints what it prints
// for dockerd. They are the same typed rules as the lab's own table, in
// iptables' order of matches; the kernel driver compiles them with
// iptables-nft's encoding (xt compat expressions for conntrack, addrtype,
// MASQUERADE and DNAT) and marks each rule as the lab's, so that it touches
// nothing else in those tables.

// LayoutIptables is Table.Layout for the lab's part of ip filter / ip nat.
const LayoutIptables = "iptables"

// iptablesChains are the chains of the layout, in the order dockerd creates
// them: the order of their rules in iptables-save.
var iptablesChains = []Chain{
	{Table: "filter", Name: "INPUT", Type: ChainFilter, Hook: HookInput},
	{Table: "filter", Name: "FORWARD", Type: ChainFilter, Hook: HookForward, Policy: "DROP"},
	{Table: "filter", Name: "OUTPUT", Type: ChainFilter, Hook: HookOutput},
	{Table: "filter", Name: "DOCKER"},
	{Table: "filter", Name: "DOCKER-ISOLATION-STAGE-1"},
	{Table: "filter", Name: "DOCKER-ISOLATION-STAGE-2"},
	{Table: "filter", Name: "DOCKER-USER"},
	{Table: "nat", Name: "PREROUTING", Type: ChainNAT, Hook: HookPrerouting, Priority: -100},
	{Table: "nat", Name: "INPUT", Type: ChainNAT, Hook: HookInput, Priority: 100},
	{Table: "nat", Name: "OUTPUT", Type: ChainNAT, Hook: HookOutput, Priority: -100},
	{Table: "nat", Name: "POSTROUTING", Type: ChainNAT, Hook: HookPostrouting, Priority: 100},
	{Table: "nat", Name: "DOCKER"},
}

// IptablesChains are the layout's chains (copies), for the driver.
func IptablesChains() []Chain { return slices.Clone(iptablesChains) }

// NewIptablesTable is the layout's table of a namespace with all its chains, empty.
func NewIptablesTable(ns, lab string) *Table {
	t := &Table{NS: ns, Name: TableName(lab), Layout: LayoutIptables}
	for _, c := range iptablesChains {
		c := c
		t.Chains = append(t.Chains, &c)
	}
	return t
}

// IptChain returns the chain of that table and name.
func (t *Table) IptChain(table, name string) *Chain {
	for _, c := range t.Chains {
		if c.Table == table && c.Name == name {
			return c
		}
	}
	return nil
}

// declaration is the chain's line in iptables-save: ":FORWARD DROP", ":DOCKER -".
func (c *Chain) declaration() string {
	switch {
	case c.Hook == "":
		return ":" + c.Name + " -"
	case c.Policy != "":
		return ":" + c.Name + " " + c.Policy
	}
	return ":" + c.Name + " ACCEPT"
}

// IptablesSave is the layout's tables as iptables-save prints them, without
// counters and header lines.
func (t *Table) IptablesSave() string {
	var b strings.Builder
	for _, table := range []string{"filter", "nat"} {
		fmt.Fprintf(&b, "*%s\n", table)
		var decl []string
		for _, c := range t.Chains {
			if c.Table == table && c.Hook != "" {
				b.WriteString(c.declaration() + "\n")
			} else if c.Table == table {
				decl = append(decl, c.declaration())
			}
		}
		slices.Sort(decl)
		for _, d := range decl {
			b.WriteString(d + "\n")
		}
		for _, c := range t.Chains {
			if c.Table == table {
				for _, r := range c.Rules {
					b.WriteString(r.iptablesText(c.Name) + "\n")
				}
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

func bang(neg bool) string {
	if neg {
		return "! "
	}
	return ""
}

// iptablesText is the rule as iptables-save prints it: "-A FORWARD -o docker0 -j DOCKER".
func (r *Rule) iptablesText(chain string) string {
	if r.Raw != "" {
		return "-A " + chain + " " + r.Raw
	}
	parts := []string{"-A", chain}
	// iptables-save's order: addresses, interfaces, protocol, then the matches.
	var addrs, ifaces, proto, matches []string
	for _, m := range r.Match {
		switch m := m.(type) {
		case AddrMatch:
			flag := map[Dir]string{Src: "-s", Dst: "-d"}[m.Dir]
			addrs = append(addrs, bang(m.Neg)+flag+" "+m.Prefix.String())
		case IIFName:
			ifaces = append(ifaces, bang(m.Neg)+"-i "+m.Name)
		case OIFName:
			ifaces = append(ifaces, bang(m.Neg)+"-o "+m.Name)
		case L4ProtoMatch:
			proto = append(proto, bang(m.Neg)+"-p "+m.Proto.Text())
		case PortMatch:
			matches = append(matches, fmt.Sprintf("-m %s %s--%s %s", m.Proto.Text(), bang(m.Neg), m.Dir.port(), strings.ReplaceAll(portsText(m.First, m.Last), "-", ":")))
		case CtStateMatch:
			matches = append(matches, "-m conntrack "+bang(m.Neg)+"--ctstate "+strings.ToUpper(ctStatesIptables(m.States)))
		case FibLocal:
			flag := map[Dir]string{Src: "--src-type", Dst: "--dst-type"}[m.Dir]
			matches = append(matches, "-m addrtype "+bang(m.Neg)+flag+" LOCAL")
		default:
			matches = append(matches, "<"+m.Text()+">")
		}
	}
	slices.SortStableFunc(addrs, func(a, b string) int {
		return strings.Compare(strings.TrimPrefix(a, "! "), strings.TrimPrefix(b, "! ")) * -1
	})
	parts = append(parts, addrs...)
	parts = append(parts, ifaces...)
	parts = append(parts, proto...)
	parts = append(parts, matches...)
	switch r.Verdict {
	case VerdictJump:
		parts = append(parts, "-j", r.Chain)
	case VerdictDNAT:
		parts = append(parts, "-j DNAT --to-destination", r.NAT.Addr.String()+":"+portsText(r.NAT.First, r.NAT.Last))
	default:
		parts = append(parts, "-j", strings.ToUpper(r.Verdict.Text()))
	}
	return strings.Join(parts, " ")
}

// ctStatesIptables lists conntrack states as iptables does: INVALID,NEW,RELATED,ESTABLISHED,UNTRACKED.
func ctStatesIptables(s CtState) string {
	var out []string
	for _, st := range []CtState{CtInvalid, CtNew, CtRelated, CtEstablished, CtUntracked} {
		if s&st != 0 {
			out = append(out, st.Text())
		}
	}
	return strings.Join(out, ",")
}

// iptablesBridges are the bridges of a namespace written in the iptables layout.
func (c *rulesCompiler) iptablesBridges(pubs []published) map[string][]*topology.Bridge {
	out := map[string][]*topology.Bridge{}
	for _, b := range c.lab.Bridges {
		if b.Iptables && dockerBridge(b, pubs) {
			out[b.Namespace] = append(out[b.Namespace], b)
		}
	}
	return out
}

// iptablesLayout writes the rules dockerd 26.1 writes for a namespace's
// bridges, in the file's order of the bridges (the order Docker creates its
// networks): per-bridge rules inserted at the top, newest network first; a
// published port's rules appended.
func (c *rulesCompiler) iptablesLayout(ns string, bridges []*topology.Bridge, pubs []published) *Table {
	t := NewIptablesTable(c.lab.KernelName(ns), c.lab.Name)
	add := func(table, chain string, r *Rule) {
		ch := t.IptChain(table, chain)
		ch.Rules = append(ch.Rules, r)
	}
	jump := func(to string) *Rule { return &Rule{Verdict: VerdictJump, Chain: to} }
	add("filter", "FORWARD", jump("DOCKER-USER"))
	add("filter", "FORWARD", jump("DOCKER-ISOLATION-STAGE-1"))
	newest := slices.Clone(bridges)
	slices.Reverse(newest)
	proxy := false
	for _, b := range newest {
		proxy = proxy || b.UserlandProxy
		oif, iif := OIFName{Name: b.Name}, IIFName{Name: b.Name}
		notOif := OIFName{Name: b.Name, Neg: true}
		add("filter", "FORWARD", &Rule{Match: []Match{oif, CtStateMatch{States: CtEstablished | CtRelated}}, Verdict: VerdictAccept})
		add("filter", "FORWARD", &Rule{Match: []Match{oif}, Verdict: VerdictJump, Chain: "DOCKER"})
		add("filter", "FORWARD", &Rule{Match: []Match{iif, notOif}, Verdict: VerdictAccept})
		if b.ICC == nil || *b.ICC {
			add("filter", "FORWARD", &Rule{Match: []Match{iif, oif}, Verdict: VerdictAccept})
		} else {
			add("filter", "FORWARD", &Rule{Match: []Match{iif, oif}, Verdict: VerdictDrop})
		}
		if b.Isolated {
			add("filter", "DOCKER-ISOLATION-STAGE-1", &Rule{Match: []Match{iif, notOif}, Verdict: VerdictJump, Chain: "DOCKER-ISOLATION-STAGE-2"})
			add("filter", "DOCKER-ISOLATION-STAGE-2", &Rule{Match: []Match{oif}, Verdict: VerdictDrop})
		}
		if b.Masquerade {
			for _, a := range b.Addresses {
				if a.Prefix.Addr().Is4() {
					add("nat", "POSTROUTING", &Rule{Match: []Match{notOif, addrMatch(Src, a.Prefix.Masked())}, Verdict: VerdictMasquerade})
				}
			}
		}
		if !b.UserlandProxy {
			add("nat", "POSTROUTING", &Rule{Match: []Match{oif, FibLocal{Dir: Src}}, Verdict: VerdictMasquerade})
		} else {
			add("nat", "DOCKER", &Rule{Match: []Match{iif}, Verdict: VerdictReturn})
		}
	}
	add("filter", "DOCKER-ISOLATION-STAGE-1", &Rule{Verdict: VerdictReturn})
	add("filter", "DOCKER-ISOLATION-STAGE-2", &Rule{Verdict: VerdictReturn})
	add("filter", "DOCKER-USER", &Rule{Verdict: VerdictReturn})
	local := FibLocal{Dir: Dst}
	add("nat", "PREROUTING", &Rule{Match: []Match{local}, Verdict: VerdictJump, Chain: "DOCKER"})
	if proxy {
		add("nat", "OUTPUT", &Rule{Match: []Match{notLoopback(netip.IPv4Unspecified()), local}, Verdict: VerdictJump, Chain: "DOCKER"})
	} else {
		add("nat", "OUTPUT", &Rule{Match: []Match{local}, Verdict: VerdictJump, Chain: "DOCKER"})
	}
	c.iptablesPublished(t, bridges, pubs)
	for _, b := range bridges {
		c.s.Sysctls[SysctlKey{t.NS, "net/bridge/bridge-nf-call-iptables"}] = "1"
		if !b.UserlandProxy {
			c.s.Sysctls[SysctlKey{t.NS, "net/ipv4/conf/" + b.Name + "/route_localnet"}] = "1"
		}
	}
	return t
}

// iptablesPublished writes the rules of published ports, in the order of the
// file (the order of `docker run`), appended to their chains as dockerd does.
func (c *rulesCompiler) iptablesPublished(t *Table, bridges []*topology.Bridge, pubs []published) {
	add := func(table, chain string, r *Rule) {
		ch := t.IptChain(table, chain)
		ch.Rules = append(ch.Rules, r)
	}
	for _, p := range pubs {
		if !slices.Contains(bridges, p.bridge) || !p.addr.Is4() || p.p.HostIP.IsValid() {
			continue
		}
		br := p.bridge.Name
		proto := L4ProtoMatch{Proto: protoOf(p.p.Proto)}
		port := portMatch(p.p.Proto, Dst, uint16Range(p.p.Port))
		host := addrMatch(Dst, p.addr)
		add("filter", "DOCKER", &Rule{Match: []Match{IIFName{Name: br, Neg: true}, OIFName{Name: br}, proto, host, port}, Verdict: VerdictAccept})
		add("nat", "POSTROUTING", &Rule{Match: []Match{proto, addrMatch(Src, p.addr), host, port}, Verdict: VerdictMasquerade})
		// Without the proxy (hairpin mode) dockerd's DNAT takes the bridge's
		// own containers too: a neighbour reaching web through the host's address.
		dnat := []Match{IIFName{Name: br, Neg: true}, proto, portMatch(p.p.Proto, Dst, uint16Range(p.p.HostPort))}
		if !p.bridge.UserlandProxy {
			dnat = dnat[1:]
		}
		add("nat", "DOCKER", &Rule{Match: dnat, Verdict: VerdictDNAT, NAT: natTarget(p.addr, uint16Range(p.p.Port))})
		if l := c.s.Interfaces[p.port]; l != nil && !p.bridge.UserlandProxy {
			l.Hairpin = true
		}
	}
}
