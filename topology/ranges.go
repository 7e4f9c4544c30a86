package topology

// Ranges: a namespace key h[1-100] stands for h1 ... h100, each with a copy of
// the body in which {i} is the number, {i+K} and {i-K} an offset from it (and
// {i:x}, {i:02x} the same in hex, for MACs). A link end with a range
// ("h[1-100]:eth0") stands for one link per number, and a check's from: range
// for one check per number; {i} works in the rest of the link or check too.
//
// Ranges are expanded on the YAML node tree, before the sections are read:
// every copy keeps the line and column of the text it comes from, so an error in
// a copy points at the range and names the copy ("interface h57:eth0: ...").
// An error that every copy has at the same place is reported once, for the
// first copy that has it (see collapseRanges).

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxRange is the most names one range stands for.
const MaxRange = 10_000

var (
	// rangeRE is a name with one range: PREFIX[FIRST-LAST]SUFFIX.
	rangeRE = regexp.MustCompile(`^([^\[\]]*)\[([0-9]+)-([0-9]+)\]([^\[\]]*)$`)
	// exprRE is what {i} may be: {i}, {i+K}, {i-K}, each with an optional
	// format (:x, :02x, :d, :03d).
	exprRE = regexp.MustCompile(`\{i(?:([+-])([0-9]{1,9}))?(?::(0?[0-9]?)([dx]))?\}`)
)

// rangeInfo is one range of the file: the names it expands to, by which the
// errors of its copies are told apart.
type rangeInfo struct {
	text  string          // as written: h[1-100]
	names map[string]bool // h1 ... h100
}

// parseRange reads a name with a range; ok is false for a name without one.
func parseRange(s string) (prefix string, first, last int, suffix string, ok bool, err error) {
	if !strings.ContainsAny(s, "[]") {
		return "", 0, 0, "", false, nil
	}
	m := rangeRE.FindStringSubmatch(s)
	if m == nil {
		return "", 0, 0, "", true, fmt.Errorf("range %q: want NAME[FIRST-LAST], such as h[1-100]", s)
	}
	first, err1 := strconv.Atoi(m[2])
	last, err2 := strconv.Atoi(m[3])
	switch {
	case err1 != nil || err2 != nil || len(m[2]) > 9 || len(m[3]) > 9:
		return "", 0, 0, "", true, fmt.Errorf("range %q: its numbers are too large", s)
	case first > last:
		return "", 0, 0, "", true, fmt.Errorf("range %q: runs backwards (want FIRST at most LAST)", s)
	case last-first+1 > MaxRange:
		return "", 0, 0, "", true, fmt.Errorf("range %q: stands for %d names; at most %d", s, last-first+1, MaxRange)
	}
	return m[1], first, last, m[4], true, nil
}

// expandRangeName returns the names a name with a range stands for, or the
// name itself.
func expandRangeName(s string) ([]string, error) {
	prefix, first, last, suffix, ok, err := parseRange(s)
	if err != nil || !ok {
		return []string{s}, err
	}
	out := make([]string, 0, last-first+1)
	for i := first; i <= last; i++ {
		out = append(out, prefix+strconv.Itoa(i)+suffix)
	}
	return out, nil
}

// substitute replaces the {i} expressions of s with i; changed is false when
// there were none.
func substitute(s string, i int) (out string, changed bool) {
	if !strings.Contains(s, "{i") {
		return s, false
	}
	out = exprRE.ReplaceAllStringFunc(s, func(e string) string {
		m := exprRE.FindStringSubmatch(e)
		n := i
		if m[2] != "" {
			k, _ := strconv.Atoi(m[2])
			if m[1] == "-" {
				k = -k
			}
			n += k
		}
		verb := "%" + m[3] + "d"
		if m[4] == "x" {
			verb = "%" + m[3] + "x"
		}
		return fmt.Sprintf(verb, n)
	})
	return out, out != s
}

// unreplacedIndex is an {i}, {i+K}, {i*2}, {i:FMT}... in a message ({ip: ...} is not).
var unreplacedIndex = regexp.MustCompile(`\{i[^A-Za-z0-9_]`)

// rangeHint adds to a message that quotes an {i} left unreplaced what {i} is.
func rangeHint(msg string) string {
	if !unreplacedIndex.MatchString(msg) || strings.Contains(msg, "range") {
		return msg
	}
	return msg + " ({i} is replaced only inside a range such as h[1-4], and only as {i}, {i+K}, {i-K}, {i:x} or {i:02x})"
}

// expander copies the bodies of ranges.
type expander struct {
	d      *decoder
	budget int // YAML nodes the copies may still add (see maxNodes)
	over   bool
}

// expandRanges returns the document with the ranges of namespaces:, links: and
// checks: expanded. The parts without ranges are the document's own nodes.
func (d *decoder) expandRanges(root *yaml.Node) *yaml.Node {
	if root.Kind != yaml.MappingNode {
		return root
	}
	x := &expander{d: d, budget: maxNodes}
	out := *root
	out.Content = make([]*yaml.Node, len(root.Content))
	copy(out.Content, root.Content)
	for i := 0; i+1 < len(out.Content); i += 2 {
		k, v := resolve(out.Content[i]), resolve(out.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			continue
		}
		switch k.Value {
		case "namespaces":
			if v.Kind == yaml.MappingNode {
				out.Content[i+1] = x.namespaces(v)
			}
		case "links":
			if v.Kind == yaml.SequenceNode {
				out.Content[i+1] = x.list(v, x.linkRange)
			}
		case "checks":
			if v.Kind == yaml.SequenceNode {
				out.Content[i+1] = x.list(v, x.checkRange)
			}
		}
	}
	return &out
}

// namespaces expands the keys of namespaces: that are ranges.
func (x *expander) namespaces(n *yaml.Node) *yaml.Node {
	out := *n
	out.Content = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		rk := resolve(k)
		if rk.Kind != yaml.ScalarNode || rk.ShortTag() == "!!merge" {
			out.Content = append(out.Content, k, v)
			continue
		}
		prefix, first, last, suffix, ok, err := parseRange(rk.Value)
		switch {
		case err != nil:
			x.d.errorf(rk, "namespace %s", err)
			x.d.notes.badSections["namespaces"] = true
			continue
		case !ok:
			out.Content = append(out.Content, k, v)
			continue
		}
		info := x.info(rk.Value, prefix, first, last, suffix)
		for j := first; j <= last && !x.over; j++ {
			key := *rk
			key.Value = prefix + strconv.Itoa(j) + suffix
			key.Tag, key.Style = "!!str", 0
			x.mark(rk, info)
			out.Content = append(out.Content, &key, x.clone(v, j, info, nil))
		}
	}
	return &out
}

// list expands the items of a list for which at returns a range: one copy per
// number, the node in which the range is written replaced by its name.
func (x *expander) list(n *yaml.Node, at func(item *yaml.Node) (*yaml.Node, bool)) *yaml.Node {
	out := *n
	out.Content = nil
	for _, item := range n.Content {
		node, ok := at(resolve(item))
		if !ok {
			out.Content = append(out.Content, item)
			continue
		}
		if node == nil {
			continue // reported
		}
		prefix, first, last, suffix, _, _ := parseRange(node.Value)
		info := x.info(rangeToken(node.Value), prefix, first, last, suffix)
		for j := first; j <= last && !x.over; j++ {
			special := map[*yaml.Node]string{node: prefix + strconv.Itoa(j) + suffix}
			out.Content = append(out.Content, x.clone(item, j, info, special))
		}
	}
	return &out
}

// linkRange finds the end of a link (either form) written with a range; ok
// with a nil node when the range is wrong (reported).
func (x *expander) linkRange(item *yaml.Node) (*yaml.Node, bool) {
	var ends *yaml.Node
	switch item.Kind {
	case yaml.SequenceNode:
		ends = item
	case yaml.MappingNode:
		for i := 0; i+1 < len(item.Content); i += 2 {
			if k := resolve(item.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "ends" {
				ends = resolve(item.Content[i+1])
			}
		}
	}
	if ends == nil || ends.Kind != yaml.SequenceNode {
		return nil, false
	}
	var found *yaml.Node
	for _, e := range ends.Content {
		e = resolve(e)
		if e.Kind != yaml.ScalarNode {
			continue
		}
		_, _, _, _, ok, err := parseRange(e.Value)
		switch {
		case err != nil:
			x.d.errorf(e, "link: end %v", err)
			x.d.notes.badLinks = true
			return nil, true
		case !ok:
		case found != nil:
			x.d.errorf(e, "link: both ends are ranges; write one as a range and the other with {i}, such as [\"h[1-4]:eth0\", \"s{i}:eth0\"]")
			x.d.notes.badLinks = true
			return nil, true
		default:
			found = e
		}
	}
	return found, found != nil
}

// checkRange finds the from: of a check written with a range.
func (x *expander) checkRange(item *yaml.Node) (*yaml.Node, bool) {
	if item.Kind != yaml.MappingNode {
		return nil, false
	}
	for i := 0; i+1 < len(item.Content); i += 2 {
		k, v := resolve(item.Content[i]), resolve(item.Content[i+1])
		if k.Kind != yaml.ScalarNode || k.Value != "from" || v.Kind != yaml.ScalarNode {
			continue
		}
		_, _, _, _, ok, err := parseRange(v.Value)
		if err != nil {
			x.d.errorf(v, "check: from: %v", err)
			return nil, true
		}
		if ok {
			return v, true
		}
	}
	return nil, false
}

// rangeToken is the part of a link end that holds its range (h[1-4] of
// h[1-4]:eth0), whose names messages use.
func rangeToken(s string) string {
	for _, part := range strings.Split(s, ":") {
		if strings.Contains(part, "[") {
			return part
		}
	}
	return s
}

// info records a range and the names its copies go by in messages.
func (x *expander) info(text, prefix string, first, last int, suffix string) *rangeInfo {
	info := &rangeInfo{text: text, names: map[string]bool{}}
	p, _, _, s, _, _ := parseRange(rangeToken(prefix + "[0-0]" + suffix))
	for i := first; i <= last; i++ {
		info.names[p+strconv.Itoa(i)+s] = true
	}
	return info
}

// mark records that the node at n's position belongs to a range's copies.
func (x *expander) mark(n *yaml.Node, info *rangeInfo) {
	if x.d.ranges == nil {
		x.d.ranges = map[Pos]*rangeInfo{}
	}
	if _, ok := x.d.ranges[pos(n)]; !ok {
		x.d.ranges[pos(n)] = info
	}
}

// clone copies n for number i: aliases followed, {i} replaced in every
// scalar, the nodes of special replaced by their text. A scalar that becomes
// an integer is read as one (mtu: "{i}" is an mtu).
func (x *expander) clone(n *yaml.Node, i int, info *rangeInfo, special map[*yaml.Node]string) *yaml.Node {
	n = resolve(n)
	if x.budget--; x.budget < 0 {
		if !x.over {
			x.d.errorf(n, "ranges expand to more than %d YAML nodes; a lab needs far fewer", maxNodes)
			x.over = true
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
	}
	x.mark(n, info)
	c := *n
	c.Anchor = ""
	if n.Kind == yaml.ScalarNode {
		if s, ok := special[n]; ok {
			c.Value = s
		} else if s, changed := substitute(n.Value, i); changed {
			c.Value = s
			if c.Style == 0 || integerRE.MatchString(s) {
				c.Style, c.Tag = 0, "" // read again: 1{i} is the integer 157
			}
		}
		return &c
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for j, child := range n.Content {
		c.Content[j] = x.clone(child, i, info, special)
	}
	return &c
}

var integerRE = regexp.MustCompile(`^-?[0-9]+$`)

// collapseRanges keeps, of the errors at a place inside a range, those of the
// first copy that has one there: a mistake in the body of h[1-100] is reported
// for h1, not a hundred times; one that only h57 makes is reported for h57.
// A copy is told by the first of its range's names that the message mentions.
func collapseRanges(errs Errors, lab *Lab) Errors {
	if lab == nil || len(lab.ranges) == 0 {
		return errs
	}
	first := map[Pos]string{}
	var out Errors
	for _, e := range errs {
		info := lab.ranges[e.Pos]
		name := ""
		if info != nil {
			name = info.subject(e.Msg)
		}
		if name == "" {
			out = append(out, e)
			continue
		}
		if f, ok := first[e.Pos]; ok && f != name {
			continue
		}
		first[e.Pos] = name
		out = append(out, e)
	}
	return out
}

// subject is the first of the range's names that msg mentions as a word.
func (r *rangeInfo) subject(msg string) string {
	for _, word := range strings.FieldsFunc(msg, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-')
	}) {
		if r.names[word] {
			return word
		}
	}
	return ""
}

// ExpandedYAML is the lab file with its ranges expanded, as YAML: what
// `netlab validate -o yaml` prints. The file is parsed again for it: the node
// tree, kept for the lab's whole life, would be most of netlab's memory in a
// large lab (30 MB of 60 at 10,000 namespaces).
func (l *Lab) ExpandedYAML() ([]byte, error) {
	if l.source == nil {
		return nil, fmt.Errorf("no document")
	}
	d := &decoder{file: l.File, notes: parseNotes{badAddrs: map[string]bool{}, badSections: map[string]bool{}}}
	root := d.document(l.source)
	if root == nil {
		return nil, d.errs.sorted()
	}
	root = d.expandRanges(root)
	return EncodeYAML(plain(root))
}

// plain copies a node tree for printing: positions, comments and styles of
// the file dropped (a copy keeps the line of its range, which would confuse
// the encoder's layout), flow style kept for short lists and mappings.
func plain(n *yaml.Node) *yaml.Node {
	c := &yaml.Node{Kind: n.Kind, Tag: n.Tag, Value: n.Value, Anchor: n.Anchor, Alias: n.Alias}
	if n.Kind == yaml.ScalarNode {
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			c.Style = n.Style & (yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle)
		}
		if c.Tag == "" {
			c.Tag = n.ShortTag()
		}
		return c
	}
	if n.Style&yaml.FlowStyle != 0 {
		c.Style = yaml.FlowStyle
	}
	if n.Kind == yaml.AliasNode {
		return plain(n.Alias)
	}
	for _, child := range n.Content {
		c.Content = append(c.Content, plain(child))
	}
	return c
}
