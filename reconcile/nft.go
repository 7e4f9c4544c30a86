package reconcile

import (
	"context"
	"fmt"
	"strings"
)

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
		out = append(out, tableLine{c.Name + ": " + c.header(), lineDeclaration})
		for _, r := range c.Rules {
			out = append(out, tableLine{c.Name + ": " + r.Text(), lineRule})
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
	s := a.Table.NS + ": table inet " + a.Table.Name
	if a.Table.Layout == LayoutIptables {
		s = a.Table.NS + ": iptables (ip filter, ip nat)"
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
		return []string{fmt.Sprintf("%siptables-restore --noflush <<'EOF'\n%sEOF", nsExec(a.Table.NS), a.Table.IptablesSave())}
	}
	return []string{fmt.Sprintf("%snft -f - <<'EOF'\n%sEOF", nsExec(a.Table.NS), a.Table.Script())}
}

func (a ReplaceTable) Namespaces() []string { return []string{a.Table.NS} }
func (a ReplaceTable) ApplyTo(ctx context.Context, d Applier) error {
	return d.ApplyReplaceTable(ctx, a)
}

// DeleteTable removes the lab's table from a namespace.
type DeleteTable struct {
	NS, Name string
	Layout   string // LayoutIptables: the lab's part of ip filter / ip nat
}

func (a DeleteTable) Op() Op       { return OpDelete }
func (a DeleteTable) Phase() Phase { return phaseDeleteTable }
func (a DeleteTable) Kind() string { return "nft" }
func (a DeleteTable) Object() string {
	if a.Layout == LayoutIptables {
		return a.NS + ": iptables rules of lab " + strings.TrimPrefix(a.Name, "netlab-") + " (ip filter, ip nat)"
	}
	return a.NS + ": table inet " + a.Name
}
func (a DeleteTable) Commands() []string {
	if a.Layout == LayoutIptables {
		return []string{"# " + a.Object() + ": netlab down removes exactly the rules and chains it added"}
	}
	return []string{fmt.Sprintf("%snft delete table inet %s", nsExec(a.NS), a.Name)}
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
