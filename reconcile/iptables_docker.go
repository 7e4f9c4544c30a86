package reconcile

import (
	"cmp"
	"net/netip"
	"slices"

	"netlab/topology"
)

// What dockerd does to iptables, by release, replayed step by step: the
// daemon's start, then each network it creates (`docker network create`, the
// default bridge first) and each container it runs. Every step is one of the
// three dockerd uses: `iptables -I` (the rule goes first in its chain),
// `iptables -A` (last) and EnsureJumpRule (a jump kept at the very top). The
// sources, in moby (github.com/moby/moby):
//
//   - 20.10 and 26.1 (the same rules; docker-facts.md observed both):
//     libnetwork/drivers/bridge/setup_ip_tables_linux.go (setupIPChains,
//     setupIPTablesInternal, setIcc, setINC, and for a --internal network
//     setupInternalNetworkRules), libnetwork/iptables/iptables.go
//     (ProgramChain, ChainInfo.Forward for a published port, AddReturnRule,
//     EnsureJumpRule), libnetwork/firewall_linux.go (DOCKER-USER) at v26.1.5
//     (vendor/github.com/docker/libnetwork/... at v20.10.24).
//   - 28 means the last 28.x, 28.5.2: DOCKER-FORWARD, DOCKER-CT and
//     DOCKER-BRIDGE (28.1), the per-network default drop in DOCKER and the
//     raw-table drop of direct access to a container's address (28.2), no
//     RETURN rules: libnetwork/drivers/bridge/internal/iptabler/ (iptabler.go,
//     network.go, endpoint.go, port.go) and its goldens
//     testdata/TestIptabler_*__iptables.golden at v28.5.2 (those of an
//     internal network are in reconcile/testdata/moby/iptabler-28).
//   - 29: the same package under daemon/ after v28.5.2 (Docker 29's
//     development): DOCKER-INTERNAL instead of the isolation chains, no
//     `-i BR -j RETURN` in nat DOCKER, goldens testdata/TestIptabler/.
//
// Which step a rule comes from also places it among other labs' rules in the
// same chains (Rule.Seq), so that two labs merge as one dockerd's networks.

// Docker's chain names.
const (
	chainDocker   = "DOCKER"
	chainUser     = "DOCKER-USER"
	chainIso1     = "DOCKER-ISOLATION-STAGE-1"
	chainIso2     = "DOCKER-ISOLATION-STAGE-2"
	chainForward  = "DOCKER-FORWARD"
	chainBridge   = "DOCKER-BRIDGE"
	chainCT       = "DOCKER-CT"
	chainInternal = "DOCKER-INTERNAL"
)

// DockerChains are every chain name a dockerd of any release makes in
// iptables: one of them in ip filter or ip nat that netlab did not make is a
// running (or stopped) dockerd's.
var DockerChains = []string{chainDocker, chainUser, chainIso1, chainIso2, chainForward, chainBridge, chainCT, chainInternal, "DOCKER-INGRESS"}

// seqTop is the Seq of EnsureJumpRule's jumps, before any -I: dockerd moves
// them back to the top after its other steps.
const seqTop = -1 << 62

// IptablesLayoutOf is the release whose iptables layout a dockerd release
// writes: 20.10's rules are 26.1's.
func IptablesLayoutOf(version string) string {
	switch version {
	case "28", "29":
		return version
	}
	return "26.1"
}

// dockerd replays one dockerd's steps in one namespace into its Table.
type dockerd struct {
	release string // IptablesLayoutOf the bridges' docker-version
	proxy   bool   // the userland proxy is on (dockerd's hairpin mode is off)
	t       *Table
	clock   int64
	shared  bool // the daemon's own steps: their rules are Shared
}

// chain returns the table's chain, making it: a chain of the user's
// (`iptables -N`) or a built-in one, when first written to.
func (d *dockerd) chain(table, name string) *Chain {
	if c := d.t.IptChain(table, name); c != nil {
		return c
	}
	c := IptBuiltin(table, name)
	if c == nil {
		c = &Chain{Table: table, Name: name}
	}
	d.t.Chains = append(d.t.Chains, c)
	return c
}

func (d *dockerd) add(table, chain string, r *Rule, seq int64) {
	c := d.chain(table, chain)
	r.Seq, r.Shared = seq, d.shared
	c.Rules = append(c.Rules, r)
}

// insert is `iptables -I CHAIN RULE`, append `iptables -A CHAIN RULE`.
func (d *dockerd) insert(table, chain string, r *Rule) { d.clock++; d.add(table, chain, r, -d.clock) }
func (d *dockerd) append(table, chain string, r *Rule) { d.clock++; d.add(table, chain, r, d.clock) }

// top is EnsureJumpRule(chain, to): the jump first in the filter chain, after
// the ones of a lower rank (which dockerd ensured later).
func (d *dockerd) top(chain string, rank int, to string) {
	d.add("filter", chain, jump(to), seqTop+int64(rank))
}

func jump(to string, m ...Match) *Rule { return &Rule{Match: m, Verdict: VerdictJump, Chain: to} }
func verdict(v Verdict, m ...Match) *Rule {
	return &Rule{Match: m, Verdict: v}
}

// start is the daemon's start: its chains, the jumps to them, FORWARD's
// policy (dockerd turned ip_forward on) and DOCKER-USER.
func (d *dockerd) start() {
	d.shared = true
	defer func() { d.shared = false }()
	chains := []string{chainDocker, chainIso1, chainIso2}
	switch d.release {
	case "28":
		chains = []string{chainDocker, chainForward, chainBridge, chainCT, chainIso1, chainIso2}
	case "29":
		chains = []string{chainDocker, chainForward, chainBridge, chainCT, chainInternal}
	}
	d.chain("nat", chainDocker)
	for _, name := range append(chains, chainUser) {
		d.chain("filter", name)
	}
	local := FibLocal{Dir: Dst}
	// nat: the jumps for the host's own addresses (the first network's
	// ProgramChain up to 26.1, setupIPChains' addNATJumpRules since).
	d.append("nat", "PREROUTING", jump(chainDocker, local))
	if d.proxy {
		d.append("nat", "OUTPUT", jump(chainDocker, notLoopback(netip.IPv4Unspecified()), local))
	} else {
		d.append("nat", "OUTPUT", jump(chainDocker, local))
	}
	d.chain("filter", "FORWARD").Policy = "DROP"
	if d.release == "26.1" {
		d.append("filter", chainIso1, verdict(VerdictReturn))
		d.append("filter", chainIso2, verdict(VerdictReturn))
		d.append("filter", chainUser, verdict(VerdictReturn))
		// Ensured after every network: DOCKER-USER first, then the isolation.
		d.top("FORWARD", 0, chainUser)
		d.top("FORWARD", 1, chainIso1)
		return
	}
	d.top("FORWARD", 0, chainUser)
	d.top("FORWARD", 1, chainForward)
	d.top(chainForward, 0, chainCT)
	d.top(chainForward, 1, chains[4]) // 28: DOCKER-ISOLATION-STAGE-1; 29: DOCKER-INTERNAL
	d.top(chainForward, 2, chainBridge)
}

// network is `docker network create`: the rules of bridge b.
func (d *dockerd) network(b *topology.Bridge) {
	if b.Internal {
		d.internalNetwork(b)
		return
	}
	br := b.Name
	iif, oif := IIFName{Name: br}, OIFName{Name: br}
	notIif, notOif := IIFName{Name: br, Neg: true}, OIFName{Name: br, Neg: true}
	icc := b.ICC == nil || *b.ICC
	if b.Masquerade {
		for _, a := range b.Addresses {
			if a.Prefix.Addr().Is4() {
				d.insert("nat", "POSTROUTING", verdict(VerdictMasquerade, notOif, addrMatch(Src, a.Prefix.Masked())))
			}
		}
		if b.UserlandProxy && d.release != "29" {
			d.insert("nat", chainDocker, verdict(VerdictReturn, iif))
		}
	}
	if !b.UserlandProxy {
		d.insert("nat", "POSTROUTING", verdict(VerdictMasquerade, oif, FibLocal{Dir: Src}))
	}
	if d.release == "26.1" {
		if icc {
			d.insert("filter", "FORWARD", verdict(VerdictAccept, iif, oif))
		} else {
			d.append("filter", "FORWARD", verdict(VerdictDrop, iif, oif))
		}
		d.insert("filter", "FORWARD", verdict(VerdictAccept, iif, notOif))
		d.insert("filter", "FORWARD", jump(chainDocker, oif))
		d.insert("filter", "FORWARD", verdict(VerdictAccept, oif, CtStateMatch{States: CtEstablished | CtRelated}))
		if b.Isolated {
			d.insert("filter", chainIso1, jump(chainIso2, iif, notOif))
			d.insert("filter", chainIso2, verdict(VerdictDrop, oif))
		}
		return
	}
	if icc {
		d.append("filter", chainForward, verdict(VerdictAccept, iif))
	} else {
		d.append("filter", chainForward, verdict(VerdictDrop, iif, oif))
		d.append("filter", chainForward, verdict(VerdictAccept, iif, notOif))
	}
	d.append("filter", chainDocker, verdict(VerdictDrop, notIif, oif))
	d.append("filter", chainCT, verdict(VerdictAccept, oif, CtStateMatch{States: CtEstablished | CtRelated}))
	d.append("filter", chainBridge, jump(chainDocker, oif))
	if b.Isolated && d.release == "28" {
		d.append("filter", chainIso1, jump(chainIso2, iif, notOif))
		d.insert("filter", chainIso2, verdict(VerdictDrop, oif))
	}
}

// internalNetwork is `docker network create --internal`
// (setupInternalNetworkRules): what leaves the bridge for another subnet and
// what enters it from another is dropped, in DOCKER-ISOLATION-STAGE-1 (26.1,
// 28) or DOCKER-INTERNAL (29), then icc as setIcc writes it. Nothing else: no
// NAT, no isolation from the other networks, no DOCKER rules.
func (d *dockerd) internalNetwork(b *topology.Bridge) {
	iif, oif := IIFName{Name: b.Name}, OIFName{Name: b.Name}
	chain := chainIso1
	if d.release == "29" {
		chain = chainInternal
	}
	if sub := familyPrefix(b, FamilyIP); sub.IsValid() {
		d.insert("filter", chain, verdict(VerdictDrop, iif, AddrMatch{Dir: Dst, Prefix: sub, Neg: true}))
		d.insert("filter", chain, verdict(VerdictDrop, oif, AddrMatch{Dir: Src, Prefix: sub, Neg: true}))
	}
	switch {
	case b.ICC != nil && !*b.ICC && d.release == "26.1":
		d.append("filter", "FORWARD", verdict(VerdictDrop, iif, oif))
	case b.ICC != nil && !*b.ICC:
		d.append("filter", chainForward, verdict(VerdictDrop, iif, oif))
	case d.release == "26.1":
		d.insert("filter", "FORWARD", verdict(VerdictAccept, iif, oif))
	default:
		d.append("filter", chainForward, verdict(VerdictAccept, iif, oif))
	}
}

// endpoint is a container's address on bridge b (28 and 29: packets routed
// to it directly from anywhere but its bridge are dropped before NAT; not on
// an internal network).
func (d *dockerd) endpoint(b *topology.Bridge, addr netip.Addr) {
	if d.release != "26.1" && addr.Is4() && !b.Internal {
		d.append("raw", "PREROUTING", verdict(VerdictDrop, IIFName{Name: b.Name, Neg: true}, addrMatch(Dst, addr)))
	}
}

// port is a published port (`docker run -p`): its DNAT, the accept of the
// forwarded connection and the masquerade of a container reaching itself.
func (d *dockerd) port(p published) {
	br := p.bridge.Name
	proto := L4ProtoMatch{Proto: protoOf(p.p.Proto)}
	port := portMatch(p.p.Proto, Dst, uint16Range(p.p.Port))
	host := addrMatch(Dst, p.addr)
	dnat := &Rule{Match: []Match{IIFName{Name: br, Neg: true}, proto, portMatch(p.p.Proto, Dst, uint16Range(p.p.HostPort))},
		Verdict: VerdictDNAT, NAT: natTarget(p.addr, uint16Range(p.p.Port))}
	if !p.bridge.UserlandProxy {
		// Hairpin mode: the bridge's own containers are DNATed too.
		dnat.Match = dnat.Match[1:]
	}
	d.append("nat", chainDocker, dnat)
	accept := verdict(VerdictAccept, IIFName{Name: br, Neg: true}, OIFName{Name: br}, host, proto, port)
	masq := verdict(VerdictMasquerade, addrMatch(Src, p.addr), host, proto, port)
	if d.release == "26.1" {
		d.append("filter", chainDocker, accept)
		d.append("nat", "POSTROUTING", masq)
		return
	}
	if !p.bridge.UserlandProxy {
		d.append("nat", "POSTROUTING", masq)
	}
	d.insert("filter", chainDocker, accept)
}

// finish puts each chain's rules in the order the steps leave them, and the
// chains in iptables-save's order.
func (d *dockerd) finish() {
	for _, c := range d.t.Chains {
		slices.SortStableFunc(c.Rules, func(a, b *Rule) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	slices.SortStableFunc(d.t.Chains, iptRank)
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

// iptablesLayout writes what one dockerd writes for a namespace's bridges:
// its start, the networks in the file's order of the bridges (the order
// Docker creates them), then the containers in the file's order of the
// namespaces (the order of `docker run`): each one's addresses on the
// bridges, then its published ports.
func (c *rulesCompiler) iptablesLayout(ns string, bridges []*topology.Bridge, pubs []published) *Table {
	d := &dockerd{release: IptablesLayoutOf(bridges[0].DockerVersion)}
	d.proxy = slices.ContainsFunc(bridges, func(b *topology.Bridge) bool { return b.UserlandProxy })
	d.t = &Table{NS: c.lab.KernelName(ns), Name: TableName(c.lab.Name), Layout: LayoutIptables, Dockerd: d.release}
	if !d.proxy {
		d.t.Dockerd += " noproxy"
	}
	d.start()
	for _, b := range bridges {
		d.network(b)
	}
	for _, n := range c.lab.Namespaces {
		for _, e := range n.Ends {
			if b := e.Peer.OnBridge; b != nil && slices.Contains(bridges, b) && e.Config != nil {
				for _, a := range e.Config.Addresses {
					d.endpoint(b, a.Prefix.Addr())
				}
			}
		}
		for _, p := range pubs {
			if p.container == n.Name && slices.Contains(bridges, p.bridge) && p.addr.Is4() && !p.p.HostIP.IsValid() {
				d.port(p)
				if l := c.s.Interfaces[p.port]; l != nil && !p.bridge.UserlandProxy {
					l.Hairpin = true
				}
			}
		}
	}
	d.finish()
	for _, b := range bridges {
		c.s.Sysctls[SysctlKey{d.t.NS, "net/bridge/bridge-nf-call-iptables"}] = "1"
		if !b.UserlandProxy {
			c.s.Sysctls[SysctlKey{d.t.NS, "net/ipv4/conf/" + b.Name + "/route_localnet"}] = "1"
		}
	}
	return d.t
}
