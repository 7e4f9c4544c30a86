package topology

import (
	"fmt"
	"regexp"
	"strings"
)

// Pictures of a lab: namespaces, bridges and the links between them, with
// interface names and addresses. They are drawn from the file alone (Validate
// must have resolved the link ends), so they show what the lab is meant to be.

// GraphFormats are the formats Graph draws.
var GraphFormats = []string{"ascii", "mermaid", "dot"}

// Graph draws the lab in one of GraphFormats. Text from the file that a
// terminal would act on (an escape sequence in the description, a bidi override
// in an interface name) is escaped; see Printable.
func (l *Lab) Graph(format string) (string, error) {
	switch format {
	case "ascii":
		return PrintableLines(l.ascii()), nil
	case "mermaid":
		return PrintableLines(l.mermaid()), nil
	case "dot":
		return PrintableLines(l.dot()), nil
	}
	return "", fmt.Errorf("unknown graph format %q: want %s", format, strings.Join(GraphFormats, ", "))
}

// namespace returns the namespace (or the host) of that name.
func (l *Lab) namespace(name string) *Namespace {
	if name == HostName {
		return l.Host
	}
	for _, ns := range l.Namespaces {
		if ns.Name == name {
			return ns
		}
	}
	return nil
}

// endAddrs lists the addresses of a plain link end, "" when it has none.
func endAddrs(e *End) string {
	if e.Config == nil {
		return ""
	}
	return joinAddrs(e.Config.Addresses)
}

func joinAddrs(as []Address) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.Prefix.String()
	}
	return strings.Join(s, " ")
}

// bridgeNotes says what Docker behaviour a bridge has, for the picture.
func bridgeNotes(b *Bridge) string {
	var notes []string
	if b.Masquerade {
		notes = append(notes, "masquerade")
	}
	if b.Internal {
		notes = append(notes, "internal")
	}
	if b.ICC != nil && !*b.ICC {
		notes = append(notes, "no icc")
	}
	if b.Isolated {
		notes = append(notes, "isolated")
	}
	if b.Resolve {
		notes = append(notes, "names")
	}
	if b.SnoopingOff {
		notes = append(notes, "multicast flooded")
	}
	if len(notes) == 0 {
		return ""
	}
	return " (" + strings.Join(notes, ", ") + ")"
}

func publishNotes(ns *Namespace) string {
	if ns == nil || len(ns.Publish) == 0 {
		return ""
	}
	s := make([]string, len(ns.Publish))
	for i, p := range ns.Publish {
		s[i] = p.Text
	}
	return " publish " + strings.Join(s, ",")
}

// ascii draws each bridge as a tree of its ports, then the other links, one per
// line: it fits in 80 columns for labs of a few namespaces.
//
//	docker0, bridge in host, 172.17.0.1/16 (masquerade)
//	├── web:eth0 172.17.0.2/16 publish 8000:80  (port veth41bce75)
//	└── c2:eth0 172.17.0.3/16  (port veth755558c)
//	host:lan0 192.0.2.1/24 ─── lan:eth0 192.0.2.2/24
func (l *Lab) ascii() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Lab %s\n", l.Name)
	if l.Description != "" {
		b.WriteString(wrap(l.Description, 78))
	}
	for _, br := range l.Bridges {
		fmt.Fprintf(&b, "\n%s, bridge in %s, %s%s\n", br.Name, br.Namespace, orNone(joinAddrs(br.Addresses)), bridgeNotes(br))
		var ports []string
		for _, link := range l.Links {
			for i, end := range link.Ends {
				if end.Bridge != br.Name {
					continue
				}
				other := link.Ends[1-i]
				ports = append(ports, words(other.Namespace+":"+other.Interface, endAddrs(other),
					publishNotes(l.namespace(other.Namespace)), "(port "+end.Interface+")", linkNotes(link)))
			}
		}
		for i, p := range ports {
			branch := "├── "
			if i == len(ports)-1 {
				branch = "└── "
			}
			b.WriteString(branch + p + "\n")
		}
	}
	var direct []string
	for _, link := range l.Links {
		a, z := link.Ends[0], link.Ends[1]
		if a.Bridge != "" || z.Bridge != "" {
			continue
		}
		direct = append(direct, words(a.Namespace+":"+a.Interface, endAddrs(a), "───", z.Namespace+":"+z.Interface, endAddrs(z), linkNotes(link)))
	}
	if len(direct) > 0 {
		b.WriteString("\n")
		for _, d := range direct {
			b.WriteString(d + "\n")
		}
	}
	var alone []string
	for _, ns := range l.Namespaces {
		if len(ns.Ends) == 0 {
			alone = append(alone, ns.Name)
		}
	}
	if len(alone) > 0 {
		fmt.Fprintf(&b, "\nwithout interfaces (only lo): %s\n", strings.Join(alone, ", "))
	}
	return b.String()
}

// wrap breaks text into lines of at most width columns, at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	line := 0
	for _, w := range strings.Fields(text) {
		if line > 0 && line+1+len([]rune(w)) > width {
			b.WriteString("\n")
			line = 0
		} else if line > 0 {
			b.WriteString(" ")
			line++
		}
		b.WriteString(w)
		line += len([]rune(w))
	}
	b.WriteString("\n")
	return b.String()
}

// words joins the non-empty parts with single spaces.
func words(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

func orNone(s string) string {
	if s == "" {
		return "no address"
	}
	return s
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9_]`)

// nodeID is a node identifier safe in mermaid and dot ("end" is a mermaid keyword).
func nodeID(kind, name string) string { return kind + "_" + idUnsafe.ReplaceAllString(name, "_") }

// nsLabel is a namespace's node text: its name and its interfaces with addresses.
func (l *Lab) nsLabel(ns *Namespace, newline string) string {
	lines := []string{ns.Name}
	for _, ifc := range ns.Interfaces {
		lines = append(lines, strings.TrimSpace(ifc.Name+" "+joinAddrs(ifc.Addresses)))
	}
	if p := publishNotes(ns); p != "" {
		lines = append(lines, strings.TrimSpace(p))
	}
	return strings.Join(lines, newline)
}

func (l *Lab) bridgeLabel(b *Bridge, newline string) string {
	return strings.Join([]string{b.Name + " (bridge)", orNone(joinAddrs(b.Addresses)) + bridgeNotes(b)}, newline)
}

// endNode is the node a link end attaches to: its bridge, or its namespace.
func endNode(e *End) string {
	if e.Bridge != "" {
		return nodeID("br", e.Bridge)
	}
	return nodeID("ns", e.Namespace)
}

// mermaid draws a flowchart that code-hosting pages render: namespaces as boxes,
// bridges as hexagons, each link an edge labelled with its two interfaces.
func (l *Lab) mermaid() string {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, "#quot;") + `"` }
	for _, ns := range append([]*Namespace{l.Host}, l.Namespaces...) {
		fmt.Fprintf(&b, "  %s[%s]\n", nodeID("ns", ns.Name), q(l.nsLabel(ns, "<br/>")))
	}
	for _, br := range l.Bridges {
		fmt.Fprintf(&b, "  %s{{%s}}\n", nodeID("br", br.Name), q(l.bridgeLabel(br, "<br/>")))
		fmt.Fprintf(&b, "  %s -.-|in| %s\n", nodeID("br", br.Name), nodeID("ns", br.Namespace))
	}
	for _, link := range l.Links {
		a, z := link.Ends[0], link.Ends[1]
		fmt.Fprintf(&b, "  %s ---|%s| %s\n", endNode(a), q(words(a.Interface+" — "+z.Interface, linkNotes(link))), endNode(z))
	}
	return b.String()
}

// dot draws the same picture for Graphviz (dot -Tsvg).
func (l *Lab) dot() string {
	var b strings.Builder
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	fmt.Fprintf(&b, "graph %s {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n", q(l.Name))
	for _, ns := range append([]*Namespace{l.Host}, l.Namespaces...) {
		fmt.Fprintf(&b, "  %s [label=%s];\n", nodeID("ns", ns.Name), q(l.nsLabel(ns, `\n`)))
	}
	for _, br := range l.Bridges {
		fmt.Fprintf(&b, "  %s [shape=hexagon, label=%s];\n", nodeID("br", br.Name), q(l.bridgeLabel(br, `\n`)))
		fmt.Fprintf(&b, "  %s -- %s [style=dotted, label=\"in\"];\n", nodeID("br", br.Name), nodeID("ns", br.Namespace))
	}
	for _, link := range l.Links {
		a, z := link.Ends[0], link.Ends[1]
		fmt.Fprintf(&b, "  %s -- %s [label=%s];\n", endNode(a), endNode(z), q(words(a.Interface+" — "+z.Interface, linkNotes(link))))
	}
	b.WriteString("}\n")
	return b.String()
}
