package reconcile

import (
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
	Layout string   // "" netlab's own table; LayoutIptables: the lab's part of ip filter / ip nat
	Sets   []*Set   // by name
	Chains []*Chain // in chainOrder
}

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

// header is the chain's declaration line in nft syntax.
func (c *Chain) header() string {
	// nft's names for standard priorities, where nft accepts them: dstnat only on
	// prerouting, srcnat only on postrouting.
	prio := strconv.Itoa(c.Priority)
	switch {
	case c.Priority == 0:
		prio = "filter"
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
	TypeIPv4Addr    DataType = 7
	TypeIPv6Addr    DataType = 8
	TypeInetService DataType = 13
)

// Text is nft's name of the type.
func (t DataType) Text() string {
	switch t {
	case TypeIPv4Addr:
		return "ipv4_addr"
	case TypeIPv6Addr:
		return "ipv6_addr"
	case TypeInetService:
		return "inet_service"
	}
	return fmt.Sprintf("datatype %d", uint32(t))
}

// Size is the number of bytes of a value of the type; 0 for a type netlab does
// not write.
func (t DataType) Size() int {
	return map[DataType]int{TypeIPv4Addr: 4, TypeIPv6Addr: 16, TypeInetService: 2}[t]
}

// typesText is a (concatenated) type as nft writes it: "ipv4_addr . inet_service".
func typesText(types []DataType) string {
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = t.Text()
	}
	return strings.Join(parts, " . ")
}

// Value is one field of a set element: an address (ipv4_addr, ipv6_addr) or a
// port (inet_service).
type Value struct {
	Addr netip.Addr
	Port uint16
}

// AddrValue and PortValue make the two kinds of Value.
func AddrValue(a netip.Addr) Value { return Value{Addr: a} }
func PortValue(p uint16) Value     { return Value{Port: p} }

// Text is the value as nft writes it.
func (v Value) Text() string {
	if v.Addr.IsValid() {
		return v.Addr.String()
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
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", t.Name, t.Name, t.Name)
	for _, s := range t.Sets {
		fmt.Fprintf(&b, "\t%s %s {\n\t\t%s\n", s.Kind(), s.Name, s.TypeText())
		if len(s.Elements) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(s.ElementTexts(), ", "))
		}
		b.WriteString("\t}\n\n")
	}
	for i, c := range t.Chains {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\tchain %s {\n\t\t%s\n", c.Name, c.header())
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.Text())
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
