package reconcile

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one rule of a chain: matches, a counter, a verdict, and a comment
// saying which part of the lab file it comes from.
type Rule struct {
	Match   []Match
	Verdict Verdict
	Chain   string    // jump: the chain jumped to
	NAT     NATTarget // snat, dnat: where to
	Vmap    Vmap      // vmap: the verdict map
	Comment string
	// NoCounter: the rule has no counter (Docker's verdict map rules).
	NoCounter bool

	// Observed only: a rule in the lab's table that netlab did not write there
	// (or wrote differently); Raw says what is known of it.
	Raw string
	// Observed only, for `inspect`: what the rule's counter has counted.
	Packets, Bytes uint64

	// The iptables layout only (iptables_docker.go): Seq places the rule among
	// the rules of its chain, every lab's, as dockerd's `-I` and `-A` would
	// (rules sort by it); Shared marks a rule of the daemon's own, which every
	// lab of the layout has and only the last one down removes.
	Seq    int64
	Shared bool
}

// Text is the rule in nft syntax, as `nft list ruleset` prints it (without the
// counter's numbers) in an inet table.
func (r *Rule) Text() string { return r.TextIn(FamilyInet) }

// TextIn is the rule as nft prints it in a table of that family: in an ip or
// ip6 table a NAT target names no family ("dnat to 172.17.0.2:80").
func (r *Rule) TextIn(family string) string {
	if r.Raw != "" {
		return r.Raw
	}
	if r.Comment != "" {
		return fmt.Sprintf("%s comment %q", r.StatementIn(family), r.Comment)
	}
	return r.StatementIn(family)
}

// Statement is the rule in nft syntax without its comment, in an inet table.
func (r *Rule) Statement() string { return r.StatementIn(FamilyInet) }

// StatementIn is the rule without its comment as nft prints it in a table of
// that family.
func (r *Rule) StatementIn(family string) string {
	var parts []string
	for _, m := range r.Match {
		parts = append(parts, m.Text())
	}
	if !r.NoCounter {
		parts = append(parts, "counter")
	}
	switch r.Verdict {
	case VerdictVmap:
		parts = append(parts, r.Vmap.Text())
	case VerdictJump:
		parts = append(parts, r.Verdict.Text(), r.Chain)
	case VerdictSNAT, VerdictDNAT:
		parts = append(parts, r.Verdict.Text(), r.NAT.textIn(family))
	default:
		parts = append(parts, r.Verdict.Text())
	}
	return strings.Join(parts, " ")
}

// Verdict is what a rule does with a packet that matches.
type Verdict uint8

const (
	VerdictAccept Verdict = iota + 1
	VerdictDrop
	VerdictReject
	VerdictJump
	VerdictMasquerade
	VerdictSNAT
	VerdictDNAT
	VerdictReturn
	// VerdictVmap: the verdict a map gives for the packet's interface
	// (`oifname vmap @NAME`), Rule.Vmap.
	VerdictVmap
)

var verdictNames = map[Verdict]string{VerdictAccept: "accept", VerdictDrop: "drop", VerdictReject: "reject",
	VerdictJump: "jump", VerdictMasquerade: "masquerade", VerdictSNAT: "snat", VerdictDNAT: "dnat", VerdictReturn: "return",
	VerdictVmap: "vmap"}

// Vmap is a verdict map looked up by the interface a packet comes in by
// (iifname) or goes out by (oifname): its elements are verdicts, such as
// `"docker0" : jump filter-forward-in__docker0`.
type Vmap struct {
	Out bool // oifname; false: iifname
	Map string
}

// Text is the lookup in nft syntax: "oifname vmap @filter-forward-in-jumps".
func (v Vmap) Text() string {
	key := "iifname"
	if v.Out {
		key = "oifname"
	}
	return key + " vmap @" + v.Map
}

// Text is nft's keyword for the verdict.
func (v Verdict) Text() string {
	if name, ok := verdictNames[v]; ok {
		return name
	}
	return fmt.Sprintf("verdict %d", uint8(v))
}

// verdictOf is the verdict a lab file's action names (topology validated it).
func verdictOf(action string) Verdict {
	for v, name := range verdictNames {
		if name == action {
			return v
		}
	}
	panic("reconcile: unknown action " + action)
}

// NATTarget is where snat/dnat translates to: an address and, if First is not
// 0, a port or port range; or, with Map set, the address and port that a map
// gives for the packet's destination port ("tcp dport map @NAME", IPv4).
type NATTarget struct {
	Addr        netip.Addr
	First, Last uint16
	Map         string
	MapProto    Proto
}

// Text is the target in nft syntax: "ip to 172.17.0.2:80", "ip6 to
// [2001:db8::2]:80", "ip to tcp dport map @docker0-tcp-dnat".
func (n NATTarget) Text() string { return n.textIn(FamilyInet) }

// textIn is the target as nft prints it in a table of that family: only an
// inet table's names the address family ("ip to ...").
func (n NATTarget) textIn(family string) string {
	af, to := "ip ", n.Addr.String()
	switch {
	case n.Map != "":
		to = n.MapProto.Text() + " dport map @" + n.Map
	case n.Addr.Is6():
		af = "ip6 "
		if n.First != 0 {
			to = "[" + to + "]"
		}
	}
	if n.Map == "" && n.First != 0 {
		to += ":" + portsText(n.First, n.Last)
	}
	if family != FamilyInet {
		af = ""
	}
	return af + "to " + to
}

func portsText(first, last uint16) string {
	if last > first {
		return strconv.Itoa(int(first)) + "-" + strconv.Itoa(int(last))
	}
	return strconv.Itoa(int(first))
}

// Match is one condition of a rule. Each kind of condition is a type of its
// own; the kernel driver has a compiler and a decoder case for each (a test
// fails when one is missing).
type Match interface {
	Text() string
	isMatch()
}

// Dir says which end of a packet a field is about: its source or its destination.
type Dir uint8

const (
	Src Dir = iota + 1
	Dst
)

func (d Dir) addr() string { return map[Dir]string{Src: "saddr", Dst: "daddr"}[d] }
func (d Dir) port() string { return map[Dir]string{Src: "sport", Dst: "dport"}[d] }

// Proto is a layer 4 protocol, by its IP protocol number.
type Proto uint8

const (
	ProtoICMP   Proto = 1
	ProtoTCP    Proto = 6
	ProtoUDP    Proto = 17
	ProtoICMPv6 Proto = 58
)

var protoNames = map[Proto]string{ProtoICMP: "icmp", ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMPv6: "icmpv6"}

// Text is nft's name of the protocol.
func (p Proto) Text() string {
	if name, ok := protoNames[p]; ok {
		return name
	}
	return strconv.Itoa(int(p))
}

// protoOf is the protocol a lab file names (topology validated it).
func protoOf(name string) Proto {
	for p, n := range protoNames {
		if n == name {
			return p
		}
	}
	panic("reconcile: unknown protocol " + name)
}

// CtState is a set of conntrack states, as the kernel's bits.
type CtState uint32

const (
	CtInvalid     CtState = 1
	CtEstablished CtState = 2
	CtRelated     CtState = 4
	CtNew         CtState = 8
	CtUntracked   CtState = 64
)

// ctStateNames are the states in the order nft prints them: the one list of them.
var ctStateNames = []struct {
	state CtState
	name  string
}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}, {CtUntracked, "untracked"}}

// Text lists the states as nft does: "established,related".
func (s CtState) Text() string {
	var out []string
	for _, n := range ctStateNames {
		if s&n.state != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// ctStatesOf is the set of the states a lab file names.
func ctStatesOf(names []string) CtState {
	var s CtState
	for _, n := range ctStateNames {
		for _, want := range names {
			if want == n.name {
				s |= n.state
			}
		}
	}
	return s
}

func not(neg bool) string {
	if neg {
		return "!= "
	}
	return ""
}

// IIFName matches the interface a packet came in by: `iifname "docker0"`.
type IIFName struct {
	Name string
	Neg  bool
}

// OIFName matches the interface a packet goes out by: `oifname != "docker0"`.
type OIFName struct {
	Name string
	Neg  bool
}

// AddrMatch matches the source or destination address against an address or
// prefix (IPv4 or IPv6, by the prefix): `ip saddr 172.17.0.0/16`.
type AddrMatch struct {
	Dir    Dir
	Prefix netip.Prefix
	Neg    bool
}

// L4ProtoMatch matches the layer 4 protocol: `meta l4proto icmp`.
type L4ProtoMatch struct {
	Proto Proto
	Neg   bool
}

// PortMatch matches a TCP or UDP port or range: `tcp dport 80`, `udp sport 5000-5010`.
type PortMatch struct {
	Proto       Proto
	Dir         Dir
	First, Last uint16 // Last == First for one port
	Neg         bool
}

// CtStateMatch matches conntrack states: `ct state established,related`.
type CtStateMatch struct {
	States CtState
	Neg    bool
}

// FibLocal matches a source or destination address that is one of the
// namespace's own: `fib daddr type local`.
type FibLocal struct {
	Dir Dir
	Neg bool
}

// SetLookup matches fields of the packet, concatenated, against a named set:
// `ip daddr . tcp dport @docker0-tcp-published`.
type SetLookup struct {
	Fields []Field
	Set    string
}

// Field is a packet field a set lookup loads: an IPv4 address (Proto 0) or a
// TCP or UDP port.
type Field struct {
	Proto Proto
	Dir   Dir
}

// Text is the field in nft syntax: "ip daddr", "tcp dport".
func (f Field) Text() string {
	if f.Proto == 0 {
		return "ip " + f.Dir.addr()
	}
	return f.Proto.Text() + " " + f.Dir.port()
}

func (m IIFName) Text() string { return "iifname " + not(m.Neg) + `"` + m.Name + `"` }
func (m OIFName) Text() string { return "oifname " + not(m.Neg) + `"` + m.Name + `"` }
func (m AddrMatch) Text() string {
	family, v := "ip6 ", m.Prefix.String()
	if m.Prefix.Addr().Is4() {
		family = "ip "
	}
	if m.Prefix.IsSingleIP() {
		v = m.Prefix.Addr().String() // nft prints a full-length prefix as an address
	}
	return family + m.Dir.addr() + " " + not(m.Neg) + v
}
func (m L4ProtoMatch) Text() string { return "meta l4proto " + not(m.Neg) + m.Proto.Text() }
func (m PortMatch) Text() string {
	return m.Proto.Text() + " " + m.Dir.port() + " " + not(m.Neg) + portsText(m.First, m.Last)
}
func (m CtStateMatch) Text() string { return "ct state " + not(m.Neg) + m.States.Text() }
func (m FibLocal) Text() string     { return "fib " + m.Dir.addr() + " type " + not(m.Neg) + "local" }
func (m SetLookup) Text() string {
	parts := make([]string, len(m.Fields))
	for i, f := range m.Fields {
		parts[i] = f.Text()
	}
	return strings.Join(parts, " . ") + " @" + m.Set
}

func (IIFName) isMatch()      {}
func (OIFName) isMatch()      {}
func (AddrMatch) isMatch()    {}
func (L4ProtoMatch) isMatch() {}
func (PortMatch) isMatch()    {}
func (CtStateMatch) isMatch() {}
func (FibLocal) isMatch()     {}
func (SetLookup) isMatch()    {}
