package topology

// A namespace's `nat:` and `filter:` rules.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

var natActions = []string{"masquerade", "snat", "dnat"}

// natRule reads {masquerade: {...}}, {snat: {...}} or {dnat: {...}}.
func (d *decoder) natRule(n *yaml.Node, nsl string) *NATRule {
	label := "nat rule in " + nsl
	ps, ok := d.mapping(n, label)
	if !ok {
		return nil
	}
	if len(ps) != 1 || !slices.Contains(natActions, ps[0].key.Value) {
		d.errorf(n, "%s: want one key, masquerade, snat or dnat, as in {masquerade: {out: eth0}}", label)
		return nil
	}
	r := &NATRule{Pos: pos(n), Action: ps[0].key.Value}
	label = r.Action + " rule in " + nsl
	body := ps[0].value
	var f fields
	switch r.Action {
	case "masquerade":
		f, _ = d.fields(body, label, "source", "dest", "out", "in")
	case "snat":
		f, _ = d.fields(body, label, "source", "dest", "out", "in", "to")
	case "dnat":
		f, _ = d.fields(body, label, "in", "proto", "port", "to", "source", "dest")
	}
	good := true
	read := func(key string, fn func(*yaml.Node, string) bool) {
		if v := f.val(key); v != nil && !fn(v, label+": "+key) {
			good = false
		}
	}
	read("source", func(v *yaml.Node, l string) (ok bool) { r.Source, ok = value(d, v, l, parseMatchPrefix); return })
	read("dest", func(v *yaml.Node, l string) (ok bool) { r.Dest, ok = value(d, v, l, parseMatchPrefix); return })
	read("in", func(v *yaml.Node, l string) (ok bool) { r.In, ok = value(d, v, l, parseIfaceMatch); return })
	read("out", func(v *yaml.Node, l string) (ok bool) { r.Out, ok = value(d, v, l, parseIfaceMatch); return })
	read("proto", func(v *yaml.Node, l string) (ok bool) { r.Proto, ok = d.oneOf(v, l, "tcp", "udp"); return })
	read("port", func(v *yaml.Node, l string) (ok bool) { r.Port, ok = d.portRange(v, l); return })
	if v := f.val("to"); v != nil {
		l := label + ": to"
		if r.Action == "snat" {
			var ok bool
			r.To, ok = value(d, v, l, parseAddr)
			good = good && ok
		} else {
			s, ok := d.str(v, l)
			if ok {
				var err error
				if r.To, r.ToPort, err = parseDNATTarget(s); err != nil {
					d.errorf(v, "%s: %v", l, err)
					ok = false
				}
			}
			good = good && ok
		}
	} else if r.Action != "masquerade" {
		what := "the address to rewrite the source to"
		if r.Action == "dnat" {
			what = "where to send the traffic, e.g. 10.0.0.5:80"
		}
		d.errorf(n, "%s: missing to: (%s)", label, what)
		good = false
	}
	if !good {
		return nil
	}
	if (r.Port != PortRange{} || r.ToPort != PortRange{}) && r.Proto == "" {
		d.errorf(n, "%s: a port needs proto: tcp or udp", label)
		return nil
	}
	if err := sameFamily(r.Source, r.Dest, r.To); err != nil {
		d.errorf(n, "%s: %v", label, err)
		return nil
	}
	return r
}

var (
	chains      = []string{"forward", "input", "output"}
	filterProto = []string{"tcp", "udp", "icmp", "icmpv6"}
	ctStates    = []string{"new", "established", "related", "invalid"}
	verdicts    = []string{"accept", "drop", "reject"}
)

func (d *decoder) filterRule(n *yaml.Node, nsl string) *FilterRule {
	label := "filter rule in " + nsl
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: want a mapping such as {chain: forward, action: accept}, got %s", label, describe(n))
		return nil
	}
	f, _ := d.fields(n, label, "chain", "in", "out", "source", "dest", "proto", "sport", "dport", "state", "action")
	r := &FilterRule{Pos: pos(n)}
	good := true
	read := func(key string, fn func(*yaml.Node, string) bool) {
		if v := f.val(key); v != nil && !fn(v, label+": "+key) {
			good = false
		}
	}
	read("chain", func(v *yaml.Node, l string) (ok bool) { r.Chain, ok = d.oneOf(v, l, chains...); return })
	read("action", func(v *yaml.Node, l string) (ok bool) { r.Action, ok = d.oneOf(v, l, verdicts...); return })
	read("in", func(v *yaml.Node, l string) (ok bool) { r.In, ok = value(d, v, l, parseIfaceMatch); return })
	read("out", func(v *yaml.Node, l string) (ok bool) { r.Out, ok = value(d, v, l, parseIfaceMatch); return })
	read("source", func(v *yaml.Node, l string) (ok bool) { r.Source, ok = value(d, v, l, parseMatchPrefix); return })
	read("dest", func(v *yaml.Node, l string) (ok bool) { r.Dest, ok = value(d, v, l, parseMatchPrefix); return })
	read("proto", func(v *yaml.Node, l string) (ok bool) { r.Proto, ok = d.oneOf(v, l, filterProto...); return })
	read("sport", func(v *yaml.Node, l string) (ok bool) { r.SPort, ok = d.portRange(v, l); return })
	read("dport", func(v *yaml.Node, l string) (ok bool) { r.DPort, ok = d.portRange(v, l); return })
	read("state", func(v *yaml.Node, l string) bool {
		items, ok := d.list(v, l)
		for _, item := range items {
			s, good := d.oneOf(item, l, ctStates...)
			switch {
			case !good:
				ok = false
			case slices.Contains(r.State, s):
				d.errorf(item, "%s: %s is listed twice", l, s)
			default:
				r.State = append(r.State, s)
			}
		}
		return ok
	})
	for _, key := range []string{"chain", "action"} {
		if f.val(key) == nil {
			d.errorf(n, "%s: missing %s: (want one of %s)", label, key, strings.Join(map[string][]string{"chain": chains, "action": verdicts}[key], ", "))
			good = false
		}
	}
	if !good {
		return nil
	}
	switch {
	case (r.SPort != PortRange{} || r.DPort != PortRange{}) && r.Proto != "tcp" && r.Proto != "udp":
		d.errorf(n, "%s: a port needs proto: tcp or udp", label)
		return nil
	case r.Chain == "input" && r.Out.Name != "":
		d.errorf(f["out"].key, "%s: the input chain sees packets for this namespace, which have no out interface", label)
		return nil
	case r.Chain == "output" && r.In.Name != "":
		d.errorf(f["in"].key, "%s: the output chain sees packets from this namespace, which have no in interface", label)
		return nil
	}
	if err := sameFamily(r.Source, r.Dest, netip.Addr{}); err != nil {
		d.errorf(n, "%s: %v", label, err)
		return nil
	}
	return r
}

// sameFamily refuses a rule that mixes IPv4 and IPv6: it could never match.
func sameFamily(source, dest netip.Prefix, to netip.Addr) error {
	var first netip.Addr
	for _, a := range []netip.Addr{source.Addr(), dest.Addr(), to} {
		if !a.IsValid() {
			continue
		}
		if !first.IsValid() {
			first = a
		} else if a.Is4() != first.Is4() {
			return fmt.Errorf("mixes IPv4 and IPv6 addresses (%s and %s)", first, a)
		}
	}
	return nil
}

// oneOf reads a string that must be one of choices.
func (d *decoder) oneOf(n *yaml.Node, label string, choices ...string) (string, bool) {
	s, ok := d.str(n, label)
	if !ok {
		return "", false
	}
	if !slices.Contains(choices, s) {
		d.errorf(n, "%s: invalid value %q (want %s)", label, s, strings.Join(choices, ", "))
		return "", false
	}
	return s, true
}

// portRange reads a port, as an integer or a string, or a range "8000-8010".
func (d *decoder) portRange(n *yaml.Node, label string) (PortRange, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		p, ok := d.integer(n, label, 1, 65535)
		return PortRange{uint16(p), uint16(p)}, ok
	}
	return value(d, n, label, parsePortRange)
}
