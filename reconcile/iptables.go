package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The iptables layout (`firewall: iptables` on a bridge; `docker: {firewall:
// iptables}` at Docker's level): the rules of Docker's bridges as dockerd
// writes them, in the shared tables ip raw, ip filter and ip nat, with the
// chains, order and policies of the bridge's `docker-version`, so that
// `iptables-save` prints what it prints for that dockerd. They are the same
// typed rules as the lab's own table, in iptables' order of matches;
// iptables_docker.go replays dockerd's steps to build them, and the kernel
// driver compiles them with iptables-nft's encoding (xt compat expressions for
// conntrack, addrtype, MASQUERADE and DNAT) and marks each rule as the lab's,
// or as the daemon's part every lab of the layout shares (Rule.Shared), so
// that it touches nothing else in those tables and several labs merge as one
// dockerd's networks would.

// LayoutIptables is Table.Layout for the lab's part of ip raw / ip filter / ip nat.
const LayoutIptables = "iptables"

// IptTables are iptables' tables the layout writes, in the order iptables-save
// prints them.
var IptTables = []string{"raw", "filter", "nat"}

// iptBuiltins are the built-in chains of each table, in iptables-save's order,
// with the hook and priority iptables-nft gives them.
var iptBuiltins = []Chain{
	{Table: "raw", Name: "PREROUTING", Type: ChainFilter, Hook: HookPrerouting, Priority: -300},
	{Table: "raw", Name: "OUTPUT", Type: ChainFilter, Hook: HookOutput, Priority: -300},
	{Table: "filter", Name: "INPUT", Type: ChainFilter, Hook: HookInput},
	{Table: "filter", Name: "FORWARD", Type: ChainFilter, Hook: HookForward},
	{Table: "filter", Name: "OUTPUT", Type: ChainFilter, Hook: HookOutput},
	{Table: "nat", Name: "PREROUTING", Type: ChainNAT, Hook: HookPrerouting, Priority: -100},
	{Table: "nat", Name: "INPUT", Type: ChainNAT, Hook: HookInput, Priority: 100},
	{Table: "nat", Name: "OUTPUT", Type: ChainNAT, Hook: HookOutput, Priority: -100},
	{Table: "nat", Name: "POSTROUTING", Type: ChainNAT, Hook: HookPostrouting, Priority: 100},
}

// IptBuiltin is the built-in chain of that table and name; nil for a chain of
// the user's (DOCKER, DOCKER-USER, ...).
func IptBuiltin(table, name string) *Chain {
	i := slices.IndexFunc(iptBuiltins, func(c Chain) bool { return c.Table == table && c.Name == name })
	if i < 0 {
		return nil
	}
	c := iptBuiltins[i]
	return &c
}

// iptRank orders a layout's chains as iptables-save does: by table, the
// built-in chains first in their order, then the others by name.
func iptRank(a, b *Chain) int {
	rank := func(c *Chain) (int, int) {
		t := slices.Index(IptTables, c.Table)
		if i := slices.IndexFunc(iptBuiltins, func(x Chain) bool { return x.Table == c.Table && x.Name == c.Name }); i >= 0 {
			return t, i
		}
		return t, len(iptBuiltins)
	}
	ta, ia := rank(a)
	tb, ib := rank(b)
	return cmp.Or(cmp.Compare(ta, tb), cmp.Compare(ia, ib), strings.Compare(a.Name, b.Name))
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
// counters and header lines: every built-in chain of a table the layout
// writes is declared, as iptables-save declares them.
func (t *Table) IptablesSave() string { return t.iptablesTables(true) }

// iptablesRestore is the layout as an `iptables-restore --noflush` input:
// only the chains it writes are declared, so that the policy of a built-in
// chain it does not write (INPUT) is left as it is.
func (t *Table) iptablesRestore() string { return t.iptablesTables(false) }

func (t *Table) iptablesTables(allBuiltins bool) string {
	var b strings.Builder
	for _, table := range IptTables {
		var chains []*Chain
		for _, c := range t.Chains {
			if c.Table == table {
				chains = append(chains, c)
			}
		}
		if len(chains) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, bc := range iptBuiltins {
			if bc.Table != table {
				continue
			}
			c := t.IptChain(table, bc.Name)
			if c == nil && allBuiltins {
				c = &bc
			}
			if c != nil {
				b.WriteString(c.declaration() + "\n")
			}
		}
		for _, c := range chains {
			if c.Hook == "" {
				b.WriteString(c.declaration() + "\n")
			}
		}
		for _, c := range chains {
			for _, r := range c.Rules {
				b.WriteString(r.iptablesText(c.Name) + "\n")
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

// IptablesText is the rule as iptables-save prints it in that chain.
func (r *Rule) IptablesText(chain string) string { return r.iptablesText(chain) }

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

// IptTablesText names the iptables tables a layout table writes: "ip filter, ip nat".
func (t *Table) IptTablesText() string {
	var out []string
	for _, table := range IptTables {
		if slices.ContainsFunc(t.Chains, func(c *Chain) bool { return c.Table == table }) {
			out = append(out, "ip "+table)
		}
	}
	return strings.Join(out, ", ")
}

// iptablesCommands write the layout as up does: iptables-restore writes the
// rules (what a student reads, and could type), and netlab records around it
// what iptables-restore cannot write, each rule's mark (see
// kernel/iptables_script.go): before, what the tables hold (FORWARD's policy
// the layout changes), taking the lab's earlier rules out as up replaces
// them; after, the marks on the rules just written.
func (a ReplaceTable) iptablesCommands() []string {
	t := a.Table
	save := "note what the tables hold before (FORWARD's policy), as up does, for netlab down"
	if a.Old != nil {
		save = "take the lab's earlier rules out and note what the tables hold then, as up does"
	}
	return []string{
		fmt.Sprintf("netlab __save-iptables %s %s  # %s", a.Lab, t.NS, save),
		fmt.Sprintf("%siptables-restore --noflush <<'EOF'\n%sEOF", nsExec(t.NS), t.iptablesRestore()),
		fmt.Sprintf("netlab __mark-iptables %s %s  # mark the rules just written as the lab's, as up does", a.Lab, t.NS),
	}
}
