package reconcile

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The nftables model: a lab's table in one namespace as Go values. rules.go
// builds it from the lab file; the kernel driver compiles it to nftables
// expressions and decodes what it finds back into the same values; Text renders
// it in nft's own syntax, which is what `plan` shows and `plan -o commands`
// feeds to `nft -f`. Nothing here is parsed back from text.

// TableName is the name of the table a lab owns in each namespace.
func TableName(lab string) string { return "netlab-" + lab }

// Table is the lab's table in one namespace: `table inet netlab-LAB`.
type Table struct {
	NS     string
	Name   string
	Layout string // "" netlab's own table; LayoutIptables: the lab's part of ip raw / ip filter / ip nat; LayoutNftables: Docker 29's table
	// Family is nft's family of the table: "" (FamilyInet) for netlab's own,
	// "ip" or "ip6" for Docker's (nftables.go).
	Family string
	// Dockerd is the iptables layout's daemon: the release whose layout it is
	// and its proxy mode ("26.1", "29 noproxy"). Two labs that share a
	// namespace's iptables tables must have the same: they are one dockerd's.
	Dockerd string
	Sets    []*Set   // by name
	Chains  []*Chain // in chainOrder; in the layout's own order for Docker's
}

// The families of the tables netlab writes.
const (
	FamilyInet = "inet"
	FamilyIP   = "ip"
	FamilyIP6  = "ip6"
)

// NftFamily is the table's family in nft syntax: "inet" for netlab's own.
func (t *Table) NftFamily() string {
	if t.Family == "" {
		return FamilyInet
	}
	return t.Family
}

// TableKey names one of Docker's tables (nftables.go) by its namespace and
// family: its name is DockerTableName.
type TableKey struct{ NS, Family string }

func (k TableKey) String() string { return k.NS + ": table " + k.Family + " " + DockerTableName }

func (k TableKey) compare(o TableKey) int {
	if c := strings.Compare(k.NS, o.NS); c != 0 {
		return c
	}
	return strings.Compare(k.Family, o.Family)
}

// Key is the table's TableKey.
func (t *Table) Key() TableKey { return TableKey{t.NS, t.NftFamily()} }

// Hook is the netfilter hook a base chain is attached to.
type Hook string

const (
	HookPrerouting  Hook = "prerouting"
	HookInput       Hook = "input"
	HookForward     Hook = "forward"
	HookOutput      Hook = "output"
	HookPostrouting Hook = "postrouting"
)

// ChainType is a base chain's type.
type ChainType string

const (
	ChainFilter ChainType = "filter"
	ChainNAT    ChainType = "nat"
)

// Chain is a base chain with policy accept: the lab's rules drop explicitly, and
// only traffic of the lab's own interfaces, so the host's other traffic is untouched.
// In Docker's layouts a chain of no Hook is a regular chain, reached by jumps.
type Chain struct {
	Name     string
	Type     ChainType
	Hook     Hook
	Priority int // nft's: dstnat -100, filter 0, srcnat 100
	Rules    []*Rule
	// The iptables layout only: the table (filter, nat), the base chain's
	// policy ("DROP"; "" for ACCEPT) and, for a chain of no hook (DOCKER,
	// DOCKER-USER, ...), Hook "".
	Table  string
	Policy string
}

// chainOrder is the chains a lab table can have, in the order they are listed:
// the one definition of that order, for desired and observed tables alike.
var chainOrder = []Chain{
	{Name: "forward", Type: ChainFilter, Hook: HookForward, Priority: 0},
	{Name: "input", Type: ChainFilter, Hook: HookInput, Priority: 0},
	{Name: "output", Type: ChainFilter, Hook: HookOutput, Priority: 0},
	{Name: "nat-prerouting", Type: ChainNAT, Hook: HookPrerouting, Priority: -100},
	{Name: "nat-output", Type: ChainNAT, Hook: HookOutput, Priority: -100},
	{Name: "nat-postrouting", Type: ChainNAT, Hook: HookPostrouting, Priority: 100},
}

// SortChains puts a table's chains in chainOrder (chains netlab does not write
// last, by name), so that equal tables compare equal however they were read.
func (t *Table) SortChains() {
	rank := func(name string) int {
		if i := slices.IndexFunc(chainOrder, func(c Chain) bool { return c.Name == name }); i >= 0 {
			return i
		}
		return len(chainOrder)
	}
	slices.SortStableFunc(t.Chains, func(a, b *Chain) int {
		if c := rank(a.Name) - rank(b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// chain returns the table's chain of that name, creating it in chainOrder.
func (t *Table) chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	i := slices.IndexFunc(chainOrder, func(c Chain) bool { return c.Name == name })
	if i < 0 {
		panic("reconcile: unknown chain " + name)
	}
	c := chainOrder[i]
	t.Chains = append(t.Chains, &c)
	t.SortChains()
	return &c
}

// header is the chain's declaration line in nft syntax ("" for a regular chain).
func (c *Chain) header() string {
	if c.Hook == "" {
		return ""
	}
	// nft's names for standard priorities, where nft accepts them: dstnat only on
	// prerouting, srcnat only on postrouting.
	prio := strconv.Itoa(c.Priority)
	switch {
	case c.Priority == 0:
		prio = "filter"
	case c.Priority == -300:
		prio = "raw"
	case c.Priority == -100 && c.Hook == HookPrerouting:
		prio = "dstnat"
	case c.Priority == 100 && c.Hook == HookPostrouting:
		prio = "srcnat"
	}
	return fmt.Sprintf("type %s hook %s priority %s; policy accept;", c.Type, c.Hook, prio)
}

// RuleCount is the number of rules in the table.
func (t *Table) RuleCount() int {
	n := 0
	for _, c := range t.Chains {
		n += len(c.Rules)
	}
	return n
}

// DataType is nft's type of a field of a set's keys or values, by nft's number
// for it (the number the kernel stores, so that `nft list` names it).
type DataType uint32

const (
	TypeVerdict     DataType = 1 // a verdict map's values: accept, jump CHAIN, ...
	TypeIPv4Addr    DataType = 7
	TypeIPv6Addr    DataType = 8
	TypeInetService DataType = 13
	TypeIFName      DataType = 41 // an interface name
)

// Text is nft's name of the type.
func (t DataType) Text() string {
	switch t {
	case TypeVerdict:
		return "verdict"
	case TypeIPv4Addr:
		return "ipv4_addr"
	case TypeIPv6Addr:
		return "ipv6_addr"
	case TypeInetService:
		return "inet_service"
	case TypeIFName:
		return "ifname"
	}
	return fmt.Sprintf("datatype %d", uint32(t))
}

// Size is the number of bytes of a value of the type; 0 for a type netlab does
// not write, and for a verdict (not bytes: a verdict of its own kind).
func (t DataType) Size() int {
	return map[DataType]int{TypeIPv4Addr: 4, TypeIPv6Addr: 16, TypeInetService: 2, TypeIFName: 16}[t]
}

// typesText is a (concatenated) type as nft writes it: "ipv4_addr . inet_service".
func typesText(types []DataType) string {
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = t.Text()
	}
	return strings.Join(parts, " . ")
}

// Value is one field of a set element: an address (ipv4_addr, ipv6_addr), a
// port (inet_service), an interface name (ifname) or, in a verdict map, the
// chain its verdict jumps to (verdict).
type Value struct {
	Addr netip.Addr
	Port uint16
	Name string // ifname
	Jump string // verdict: jump to this chain
}

// AddrValue, PortValue, NameValue and JumpValue make the kinds of Value.
func AddrValue(a netip.Addr) Value { return Value{Addr: a} }
func PortValue(p uint16) Value     { return Value{Port: p} }
func NameValue(n string) Value     { return Value{Name: n} }
func JumpValue(chain string) Value { return Value{Jump: chain} }

// Text is the value as nft writes it.
func (v Value) Text() string {
	switch {
	case v.Addr.IsValid():
		return v.Addr.String()
	case v.Name != "":
		return `"` + v.Name + `"`
	case v.Jump != "":
		return "jump " + v.Jump
	}
	return strconv.Itoa(int(v.Port))
}

// Element is an element of a set (Key only) or of a map (Key : Data), a Value
// per field of the set's type.
type Element struct {
	Key, Data []Value
	// Observed only: an element whose bytes do not fit the set's type.
	Raw string
}

// Text is the element as nft writes it: "172.17.0.2 . 80", "8000 : 172.17.0.2 . 80".
func (e Element) Text() string {
	if e.Raw != "" {
		return e.Raw
	}
	text := valuesText(e.Key)
	if e.Data != nil {
		text += " : " + valuesText(e.Data)
	}
	return text
}

func valuesText(vs []Value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Text()
	}
	return strings.Join(parts, " . ")
}

// Set is a named set, or map, of the lab's table. Published ports live in them:
// a packet's way through NAT is then one lookup however many ports are
// published (Docker's iptables rules are one rule per port, each tried in turn).
type Set struct {
	Name     string
	Key      []DataType // the elements' (a map's keys') type, one per concatenated field
	Data     []DataType // a map's values' type; nil for a set
	Elements []Element  // sorted by Text
}

// Kind is "map" or "set", as nft declares it.
func (s *Set) Kind() string {
	if s.Data != nil {
		return "map"
	}
	return "set"
}

// TypeText is the set's type declaration as nft writes it.
func (s *Set) TypeText() string { return "type " + s.TypeName() }

// TypeName is the set's type as nft writes it: "inet_service : ipv4_addr . inet_service".
func (s *Set) TypeName() string {
	if s.Data != nil {
		return typesText(s.Key) + " : " + typesText(s.Data)
	}
	return typesText(s.Key)
}

// ElementTexts are the elements as nft writes them, in order.
func (s *Set) ElementTexts() []string {
	out := make([]string, len(s.Elements))
	for i, e := range s.Elements {
		out[i] = e.Text()
	}
	return out
}

// Add adds an element, keeping the elements sorted and without duplicates.
func (s *Set) Add(e Element) {
	text := e.Text()
	i, found := slices.BinarySearchFunc(s.Elements, text, func(x Element, t string) int { return strings.Compare(x.Text(), t) })
	if !found {
		s.Elements = slices.Insert(s.Elements, i, e)
	}
}

// set returns the table's set of that name, creating it (sorted by name).
func (t *Table) set(name string, key, data []DataType) *Set {
	for _, s := range t.Sets {
		if s.Name == name {
			return s
		}
	}
	s := &Set{Name: name, Key: key, Data: data}
	t.Sets = append(t.Sets, s)
	slices.SortFunc(t.Sets, func(a, b *Set) int { return strings.Compare(a.Name, b.Name) })
	return s
}

// Script is the table as an `nft -f` script that replaces it atomically: the
// first line creates it if missing so that the delete never fails.
func (t *Table) Script() string {
	var b strings.Builder
	name := t.NftFamily() + " " + t.Name
	fmt.Fprintf(&b, "table %s\ndelete table %s\n", name, name)
	t.writeBody(&b)
	return b.String()
}

// writeBody writes the table as nft declares it: "table FAMILY NAME { ... }".
func (t *Table) writeBody(b *strings.Builder) {
	fmt.Fprintf(b, "table %s %s {\n", t.NftFamily(), t.Name)
	for _, s := range t.Sets {
		fmt.Fprintf(b, "\t%s %s {\n\t\t%s\n", s.Kind(), s.Name, s.TypeText())
		if len(s.Elements) > 0 {
			fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(s.ElementTexts(), ", "))
		}
		b.WriteString("\t}\n\n")
	}
	for i, c := range t.Chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(b, "\tchain %s {\n", c.Name)
		if h := c.header(); h != "" {
			fmt.Fprintf(b, "\t\t%s\n", h)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(b, "\t\t%s\n", r.TextIn(t.NftFamily()))
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
}

// tableLine is one line of a table as the plan compares and shows it: a set's
// type or a chain's declaration, a set element, or a rule.
type tableLine struct {
	text string
	kind lineKind
}

type lineKind uint8

const (
	lineDeclaration lineKind = iota
	lineElement
	lineRule
)

// lines is the table as "chain: rule" and "set NAME: element" lines, the unit
// the plan compares and shows.
func (t *Table) lines() []tableLine {
	if t == nil {
		return nil
	}
	var out []tableLine
	for _, s := range t.Sets {
		prefix := s.Kind() + " " + s.Name + ": "
		out = append(out, tableLine{prefix + s.TypeText(), lineDeclaration})
		for _, e := range s.Elements {
			out = append(out, tableLine{prefix + e.Text(), lineElement})
		}
	}
	for _, c := range t.Chains {
		if t.Layout == LayoutIptables {
			out = append(out, tableLine{c.Table + ": " + c.declaration(), lineDeclaration})
			for _, r := range c.Rules {
				out = append(out, tableLine{c.Table + ": " + r.iptablesText(c.Name), lineRule})
			}
			continue
		}
		decl := c.header()
		if decl == "" {
			decl = "a chain of no hook, entered by jump"
		}
		out = append(out, tableLine{c.Name + ": " + decl, lineDeclaration})
		for _, r := range c.Rules {
			out = append(out, tableLine{c.Name + ": " + r.TextIn(t.NftFamily()), lineRule})
		}
	}
	return out
}

// tableChanges compares two versions of a table rule by rule: the lines only in
// want and the lines only in have, each in order.
func tableChanges(want, have *Table) (added, removed []tableLine) {
	w, h := want.lines(), have.lines()
	only := func(lines, other []tableLine) []tableLine {
		in := make(map[string]bool, len(other))
		for _, l := range other {
			in[l.text] = true
		}
		var out []tableLine
		for _, l := range lines {
			if !in[l.text] {
				out = append(out, l)
			}
		}
		return out
	}
	return only(w, h), only(h, w)
}

// Plural says "1 rule", "2 rules".
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// count counts the lines of a kind.
func count(lines []tableLine, kind lineKind) int {
	n := 0
	for _, l := range lines {
		if l.kind == kind {
			n++
		}
	}
	return n
}

// ReplaceTable writes the lab's table in a namespace in one atomic transaction:
// the whole table is replaced, so a half-applied rule set never exists.
type ReplaceTable struct {
	Lab   string
	Table *Table
	Old   *Table // nil when the table does not exist yet
}

func (a ReplaceTable) Op() Op {
	if a.Old == nil {
		return OpAdd
	}
	return OpChange
}
func (a ReplaceTable) Phase() Phase { return phaseNft }
func (a ReplaceTable) Kind() string { return "nft" }
func (a ReplaceTable) Object() string {
	s := a.Table.NS + ": table " + a.Table.NftFamily() + " " + a.Table.Name
	if a.Table.Layout == LayoutIptables {
		s = a.Table.NS + ": iptables (" + a.Table.IptTablesText() + ")"
	}
	if a.Old == nil {
		if n := count(a.Table.lines(), lineElement); n > 0 {
			return fmt.Sprintf("%s (%s, %s)", s, Plural(a.Table.RuleCount(), "rule"), Plural(n, "set element"))
		}
		return fmt.Sprintf("%s (%s)", s, Plural(a.Table.RuleCount(), "rule"))
	}
	added, removed := tableChanges(a.Table, a.Old)
	if len(added) == 0 && len(removed) == 0 {
		return s + " (rules reordered)"
	}
	text := fmt.Sprintf("%s to add, %d to remove", Plural(count(added, lineRule), "rule"), count(removed, lineRule))
	if n, m := count(added, lineElement), count(removed, lineElement); n > 0 || m > 0 {
		text += fmt.Sprintf("; %s to add, %d to remove", Plural(n, "set element"), m)
	}
	return fmt.Sprintf("%s (%s)", s, text)
}

// Details are the rules the change adds (+) and removes (-), one per line.
func (a ReplaceTable) Details() []string {
	added, removed := tableChanges(a.Table, a.Old)
	var out []string
	for _, l := range added {
		out = append(out, "+ "+l.text)
	}
	for _, l := range removed {
		out = append(out, "- "+l.text)
	}
	return out
}

func (a ReplaceTable) Commands() []string {
	if a.Table.Layout == LayoutIptables {
		return a.iptablesCommands()
	}
	if a.Table.Layout == LayoutNftables {
		return a.dockerCommands()
	}
	return []string{fmt.Sprintf("%snft -f - <<'EOF'\n%sEOF", nsExec(a.Table.NS), a.Table.Script())}
}

func (a ReplaceTable) Namespaces() []string { return []string{a.Table.NS} }
func (a ReplaceTable) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyReplaceTable(ctx, a)
}

// DeleteTable removes the lab's table from a namespace.
type DeleteTable struct {
	Lab      string // LayoutNftables: the lab whose mark the table bears
	NS, Name string
	Layout   string // LayoutIptables: the lab's part of ip raw / ip filter / ip nat; LayoutNftables: Docker 29's table
	Family   string // "" (inet), or the family of Docker's table
}

func (a DeleteTable) Op() Op       { return OpDelete }
func (a DeleteTable) Phase() Phase { return phaseDeleteTable }
func (a DeleteTable) Kind() string { return "nft" }
func (a DeleteTable) Object() string {
	if a.Layout == LayoutIptables {
		return a.NS + ": iptables rules of lab " + strings.TrimPrefix(a.Name, "netlab-") + " (ip raw, ip filter, ip nat)"
	}
	return a.NS + ": table " + (&Table{Family: a.Family}).NftFamily() + " " + a.Name
}
func (a DeleteTable) Commands() []string {
	if a.Layout == LayoutIptables {
		return []string{"# " + a.Object() + ": netlab down removes exactly the rules and chains it added"}
	}
	return []string{fmt.Sprintf("%snft delete table %s %s", nsExec(a.NS), (&Table{Family: a.Family}).NftFamily(), a.Name)}
}

func (a DeleteTable) Namespaces() []string                         { return []string{a.NS} }
func (a DeleteTable) ApplyTo(ctx context.Context, d Applier) error { return d.ApplyDeleteTable(ctx, a) }

// SetHairpin turns hairpin mode of a bridge port on or off. On, a container can
// reach its own published port through the host's address (the packet goes back
// out of the port it came in by).
type SetHairpin struct {
	InterfaceKey
	On  bool
	New bool // the port is created by the same plan
}

func (a SetHairpin) Op() Op {
	if a.New {
		return OpAdd
	}
	return OpChange
}
func (a SetHairpin) Phase() Phase   { return phaseHairpin }
func (a SetHairpin) Kind() string   { return "port" }
func (a SetHairpin) Object() string { return a.InterfaceKey.String() + " hairpin " + onOff(a.On) }
func (a SetHairpin) Commands() []string {
	return []string{fmt.Sprintf("%sbridge link set dev %s hairpin %s", nsExec(a.NS), a.Name, onOff(a.On))}
}

func (a SetHairpin) Namespaces() []string                         { return []string{a.NS} }
func (a SetHairpin) ApplyTo(ctx context.Context, d Applier) error { return d.ApplySetHairpin(ctx, a) }

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
