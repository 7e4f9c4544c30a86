package reconcile

import (
	"fmt"
	"slices"
	"strings"
)

// A lab owns one nftables table per namespace that needs rules: `table inet
// netlab-LAB`. It never touches any other table. The model below is pure: the
// kernel driver compiles it to nftables expressions, and Text renders it in nft's
// own syntax, which is what `plan` shows and `plan -o commands` feeds to `nft -f`.

// TableName is the name of the table a lab owns in each namespace.
func TableName(lab string) string { return "netlab-" + lab }

// Table is the lab's table in one namespace.
type Table struct {
	NS     string
	Name   string
	Sets   []*Set   // by name
	Chains []*Chain // in chainOrder
}

// Set is a named set, or map, of the lab's table. Published ports live in them:
// a packet's way through NAT is then one lookup however many ports are
// published (Docker's iptables rules are one rule per port, each tried in turn).
type Set struct {
	Name     string
	Key      string   // nft's type of the elements (a map's keys): "ipv4_addr . inet_service"
	Data     string   // a map's type of values ("ipv4_addr . inet_service"); "" for a set
	Elements []string // in nft's syntax, sorted: "172.17.0.2 . 80", for a map "8000 : 172.17.0.2 . 80"
}

// Kind is "map" or "set", as nft declares it.
func (s *Set) Kind() string {
	if s.Data != "" {
		return "map"
	}
	return "set"
}

// TypeText is the set's type declaration as nft writes it.
func (s *Set) TypeText() string {
	if s.Data != "" {
		return "type " + s.Key + " : " + s.Data
	}
	return "type " + s.Key
}

// set returns the table's set of that name, creating it (sorted by name).
func (t *Table) set(name, key, data string) *Set {
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

// add adds an element, keeping the elements sorted and without duplicates.
func (s *Set) add(element string) {
	if i, found := slices.BinarySearch(s.Elements, element); !found {
		s.Elements = slices.Insert(s.Elements, i, element)
	}
}

// Chain is a base chain with policy accept: the lab's rules drop explicitly, and
// only traffic of the lab's own interfaces, so the host's other traffic is untouched.
type Chain struct {
	Name     string
	Type     string // "filter" or "nat"
	Hook     string // "prerouting", "input", "forward", "output" or "postrouting"
	Priority int    // nft's: dstnat -100, filter 0, srcnat 100
	Rules    []*Rule
}

// The chains a lab table can have, in the order they are listed.
var chainOrder = []Chain{
	{Name: "forward", Type: "filter", Hook: "forward", Priority: 0},
	{Name: "input", Type: "filter", Hook: "input", Priority: 0},
	{Name: "output", Type: "filter", Hook: "output", Priority: 0},
	{Name: "nat-prerouting", Type: "nat", Hook: "prerouting", Priority: -100},
	{Name: "nat-output", Type: "nat", Hook: "output", Priority: -100},
	{Name: "nat-postrouting", Type: "nat", Hook: "postrouting", Priority: 100},
}

// Rule is one rule: matches, a counter, a verdict, and a comment saying which
// part of the lab file it comes from.
type Rule struct {
	Match   []Match
	Verdict string // "accept", "drop", "reject", "masquerade", "snat" or "dnat"
	To      string // snat/dnat: "172.17.0.2:80", "[2001:db8::2]:80", "198.51.100.7"
	Family  string // snat/dnat: "ip" or "ip6"
	Comment string

	// Observed only: a rule in the lab's table that netlab did not write there
	// (or wrote differently); Raw says what is known of it.
	Raw string
	// Observed only, for `inspect`: what the rule's counter has counted.
	Packets, Bytes uint64
}

// Match is one condition of a rule, in nft's words: Field "oifname", Value
// "docker0"; Field "ip saddr", Value "172.17.0.0/16"; Field "tcp dport", Value
// "8000-8010"; Field "ct state", Value "established,related"; Field "fib daddr
// type", Value "local".
type Match struct {
	Field string
	Neg   bool
	Value string
}

// The fields a Match may have.
const (
	FieldIIFName     = "iifname"
	FieldOIFName     = "oifname"
	FieldIPSaddr     = "ip saddr"
	FieldIPDaddr     = "ip daddr"
	FieldIP6Saddr    = "ip6 saddr"
	FieldIP6Daddr    = "ip6 daddr"
	FieldL4Proto     = "meta l4proto"
	FieldTCPDport    = "tcp dport"
	FieldTCPSport    = "tcp sport"
	FieldUDPDport    = "udp dport"
	FieldUDPSport    = "udp sport"
	FieldCtState     = "ct state"
	FieldFibDaddrTyp = "fib daddr type"
	FieldFibSaddrTyp = "fib saddr type"
)

// Text is the rule in nft syntax, as `nft list ruleset` prints it (without the
// counter's numbers).
func (r *Rule) Text() string {
	if r.Raw != "" {
		return r.Raw
	}
	var parts []string
	for _, m := range r.Match {
		v := m.Value
		if m.Field == FieldIIFName || m.Field == FieldOIFName {
			v = `"` + v + `"`
		}
		if m.Neg {
			parts = append(parts, m.Field+" != "+v)
		} else {
			parts = append(parts, m.Field+" "+v)
		}
	}
	parts = append(parts, "counter", r.Verdict)
	if r.To != "" {
		parts = append(parts, r.Family+" to "+r.To)
	}
	if r.Comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(parts, " ")
}

// header is the chain's declaration line in nft syntax.
func (c *Chain) header() string {
	// nft's names for standard priorities, where nft accepts them: dstnat only on
	// prerouting, srcnat only on postrouting.
	prio := fmt.Sprint(c.Priority)
	switch {
	case c.Priority == 0:
		prio = "filter"
	case c.Priority == -100 && c.Hook == "prerouting":
		prio = "dstnat"
	case c.Priority == 100 && c.Hook == "postrouting":
		prio = "srcnat"
	}
	return fmt.Sprintf("type %s hook %s priority %s; policy accept;", c.Type, c.Hook, prio)
}

// Script is the table as an `nft -f` script that replaces it atomically: the
// first line creates it if missing so that the delete never fails.
func (t *Table) Script() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", t.Name, t.Name, t.Name)
	for _, s := range t.Sets {
		fmt.Fprintf(&b, "\t%s %s {\n\t\t%s\n", s.Kind(), s.Name, s.TypeText())
		if len(s.Elements) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(s.Elements, ", "))
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

// lines is the table as "chain: rule" and "set NAME: element" lines, the unit
// the plan compares and shows.
func (t *Table) lines() []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, s := range t.Sets {
		prefix := s.Kind() + " " + s.Name + ": "
		out = append(out, prefix+s.TypeText())
		for _, e := range s.Elements {
			out = append(out, prefix+e)
		}
	}
	for _, c := range t.Chains {
		out = append(out, c.Name+": "+c.header())
		for _, r := range c.Rules {
			out = append(out, c.Name+": "+r.Text())
		}
	}
	return out
}

// RuleCount is the number of rules in the table.
func (t *Table) RuleCount() int {
	n := 0
	for _, c := range t.Chains {
		n += len(c.Rules)
	}
	return n
}

// chain returns the table's chain of that name, creating it in chainOrder.
func (t *Table) chain(name string) *Chain {
	for _, c := range t.Chains {
		if c.Name == name {
			return c
		}
	}
	for _, proto := range chainOrder {
		if proto.Name == name {
			c := proto
			t.Chains = append(t.Chains, &c)
			slices.SortStableFunc(t.Chains, func(a, b *Chain) int { return chainIndex(a.Name) - chainIndex(b.Name) })
			return &c
		}
	}
	panic("reconcile: unknown chain " + name)
}

func chainIndex(name string) int {
	for i, c := range chainOrder {
		if c.Name == name {
			return i
		}
	}
	return len(chainOrder)
}

// tableChanges compares two versions of a table rule by rule: the lines only in
// want and the lines only in have, each in order.
func tableChanges(want, have *Table) (added, removed []string) {
	w, h := want.lines(), have.lines()
	only := func(lines, other []string) []string {
		in := make(map[string]bool, len(other))
		for _, l := range other {
			in[l] = true
		}
		var out []string
		for _, l := range lines {
			if !in[l] {
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

// countRules counts the rule lines among table lines: not chain declarations,
// not sets and their elements.
func countRules(lines []string) int {
	n := 0
	for _, l := range lines {
		if !isSetLine(l) && !(strings.Contains(l, ": type ") && strings.Contains(l, " hook ")) {
			n++
		}
	}
	return n
}

// countElements counts the set element lines among table lines.
func countElements(lines []string) int {
	n := 0
	for _, l := range lines {
		if isSetLine(l) && !strings.Contains(l, ": type ") {
			n++
		}
	}
	return n
}

func isSetLine(l string) bool { return strings.HasPrefix(l, "set ") || strings.HasPrefix(l, "map ") }

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
	s := a.Table.NS + ": table inet " + a.Table.Name
	if a.Old == nil {
		lines := a.Table.lines()
		if n := countElements(lines); n > 0 {
			return fmt.Sprintf("%s (%s, %s)", s, Plural(a.Table.RuleCount(), "rule"), Plural(n, "set element"))
		}
		return fmt.Sprintf("%s (%s)", s, Plural(a.Table.RuleCount(), "rule"))
	}
	added, removed := tableChanges(a.Table, a.Old)
	if len(added) == 0 && len(removed) == 0 {
		return s + " (rules reordered)"
	}
	text := fmt.Sprintf("%s to add, %d to remove", Plural(countRules(added), "rule"), countRules(removed))
	if n, m := countElements(added), countElements(removed); n > 0 || m > 0 {
		text += fmt.Sprintf("; %s to add, %d to remove", Plural(n, "set element"), m)
	}
	return fmt.Sprintf("%s (%s)", s, text)
}

// Details are the rules the change adds (+) and removes (-), one per line.
func (a ReplaceTable) Details() []string {
	added, removed := tableChanges(a.Table, a.Old)
	var out []string
	for _, l := range added {
		out = append(out, "+ "+l)
	}
	for _, l := range removed {
		out = append(out, "- "+l)
	}
	return out
}

func (a ReplaceTable) Commands() []string {
	return []string{fmt.Sprintf("%snft -f - <<'EOF'\n%sEOF", nsExec(a.Table.NS), a.Table.Script())}
}

// DeleteTable removes the lab's table from a namespace.
type DeleteTable struct {
	NS, Name string
}

func (a DeleteTable) Op() Op         { return OpDelete }
func (a DeleteTable) Phase() Phase   { return phaseDeleteTable }
func (a DeleteTable) Kind() string   { return "nft" }
func (a DeleteTable) Object() string { return a.NS + ": table inet " + a.Name }
func (a DeleteTable) Commands() []string {
	return []string{fmt.Sprintf("%snft delete table inet %s", nsExec(a.NS), a.Name)}
}

// SetHairpin turns hairpin mode of a bridge port on or off. On, a container can
// reach its own published port through the host's address (the packet goes back
// out of the port it came in by).
type SetHairpin struct {
	LinkKey
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
func (a SetHairpin) Object() string { return a.LinkKey.String() + " hairpin " + onOff(a.On) }
func (a SetHairpin) Commands() []string {
	return []string{fmt.Sprintf("%sbridge link set dev %s hairpin %s", nsExec(a.NS), a.Name, onOff(a.On))}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
