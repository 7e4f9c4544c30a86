package topology

// Checks over many pairs and over time:
//
//	- {mesh: [h1, h2, h3], ping: true}     # every ordered pair, first address of each
//	- {mesh: all, ping: true}              # every lab namespace with an address (Mininet's pingall)
//	- {from: h1, throughput: h4, expect: {min: 6mbit, max: 13mbit}}

import (
	"net/netip"
	"slices"

	"go.yaml.in/yaml/v3"
)

// MeshAll is the Target of a mesh check written `mesh: all`, until Validate
// puts the namespaces in Mesh.
const MeshAll = "all"

// extraCheck reads a check with a mesh: or throughput: key; ok is false for
// the other checks, which checks() reads.
func (d *decoder) extraCheck(item *yaml.Node) (c *Check, ok bool) {
	if item.Kind != yaml.MappingNode {
		return nil, false
	}
	kind := ""
	for i := 0; i+1 < len(item.Content); i += 2 {
		if k := resolve(item.Content[i]); k.Kind == yaml.ScalarNode && (k.Value == "mesh" || k.Value == "throughput") {
			kind = k.Value
			break
		}
	}
	switch kind {
	case "mesh":
		return d.meshCheck(item), true
	case "throughput":
		return d.throughputCheck(item), true
	}
	return nil, false
}

// meshCheck reads {mesh: [NS...] | all | RANGE, ping: true[, expect: fail]}.
func (d *decoder) meshCheck(n *yaml.Node) *Check {
	f, good := d.fields(n, "check", "mesh", "ping", "expect")
	c := &Check{Pos: pos(n), Kind: "mesh"}
	v := resolve(f.val("mesh"))
	switch {
	case v.Kind == yaml.ScalarNode && v.Value == MeshAll && v.ShortTag() == "!!str":
		c.Target = MeshAll
	case v.Kind == yaml.ScalarNode && !isNull(v):
		names, err := expandRangeName(v.Value)
		if err != nil || len(names) == 1 {
			d.errorf(v, "check: mesh: want a list of namespaces, all, or a range such as h[1-4], got %s", describe(v))
			return nil
		}
		c.Mesh = names
	default:
		items, ok := d.list(v, "check: mesh")
		good = good && ok
		for _, item := range items {
			s, ok := d.str(item, "check: mesh")
			if !ok {
				good = false
				continue
			}
			names, err := expandRangeName(s)
			if err != nil {
				d.errorf(item, "check: mesh: %v", err)
				good = false
				continue
			}
			for _, name := range names {
				if slices.Contains(c.Mesh, name) {
					d.errorf(item, "check: mesh: %s is listed twice", name)
					good = false
					continue
				}
				c.Mesh = append(c.Mesh, name)
			}
		}
	}
	if p := f.val("ping"); p == nil {
		d.errorf(n, "check: mesh: missing ping: true (what every pair sends)")
		good = false
	} else if on, ok := d.boolean(p, "check: ping"); ok && !on {
		d.errorf(p, "check: mesh: ping: false leaves nothing to check; want ping: true")
		good = false
	} else {
		good = good && ok
	}
	if e := f.val("expect"); e != nil {
		if e.Kind != yaml.ScalarNode || e.Value != "fail" {
			d.errorf(e, "check: mesh: expect: want fail (every pair blocked), got %s", describe(e))
			good = false
		}
		c.ExpectFail = true
	}
	if !good {
		return nil
	}
	return c
}

// throughputCheck reads {from: NS, throughput: NS, expect: {min: RATE, max: RATE}}.
func (d *decoder) throughputCheck(n *yaml.Node) *Check {
	f, good := d.fields(n, "check", "from", "throughput", "expect")
	c := &Check{Pos: pos(n), Kind: "throughput"}
	if v := f.val("from"); v == nil {
		d.errorf(n, "check: missing from: (the namespace that sends)")
		good = false
	} else if s, ok := d.str(v, "check: from"); ok && s != HostName && !namespaceRE.MatchString(s) {
		d.errorf(v, "check: from: invalid namespace name %q", s)
		good = false
	} else {
		c.From, good = s, good && ok
	}
	if s, ok := d.str(f.val("throughput"), "check: throughput"); !ok {
		good = false
	} else if s != HostName && !namespaceRE.MatchString(s) {
		d.errorf(f.val("throughput"), "check: throughput: want the name of the namespace that receives, got %q", s)
		good = false
	} else {
		c.Target = s
	}
	if e := f.val("expect"); e != nil {
		ef, ok := d.fields(e, "check: expect", "min", "max")
		good = good && ok
		read := func(key string, dst *uint64) {
			if v := ef.val(key); v != nil {
				r, ok := value(d, v, "check: expect: "+key, parseRateAny)
				*dst, good = r, good && ok
			}
		}
		read("min", &c.MinRate)
		read("max", &c.MaxRate)
		if c.MinRate > 0 && c.MaxRate > 0 && c.MinRate > c.MaxRate {
			d.errorf(e, "check: expect: min %s is more than max %s", FormatRate(c.MinRate), FormatRate(c.MaxRate))
			good = false
		}
	}
	if !good {
		return nil
	}
	return c
}

// extraCheck checks what a mesh or throughput check names, and fills in the
// namespaces of `mesh: all`; false for the other kinds.
func (v *validator) extraCheck(c *Check) bool {
	unsure := v.notes.badSections["namespaces"]
	switch c.Kind {
	case "mesh":
		if c.Target == MeshAll {
			c.Mesh = nil
			for _, ns := range v.lab.Namespaces {
				if _, ok := FirstAddress(v.lab, ns.Name); ok {
					c.Mesh = append(c.Mesh, ns.Name)
				}
			}
		}
		for _, name := range c.Mesh {
			switch _, addr := FirstAddress(v.lab, name); {
			case v.namespaces[name] == nil:
				if !unsure {
					v.errorAt(c.Pos, "check: mesh: unknown namespace %q", name)
				}
			case !addr && !v.notes.badAddrs[name]:
				v.errorAt(c.Pos, "check: mesh: %s has no address to ping", name)
			}
		}
		if len(c.Mesh) < 2 && !unsure && len(v.notes.badAddrs) == 0 {
			v.errorAt(c.Pos, "check: mesh: want at least two namespaces with addresses, got %d", len(c.Mesh))
		}
	case "throughput":
		switch _, addr := FirstAddress(v.lab, c.Target); {
		case unsure:
		case v.namespaces[c.From] == nil:
			v.errorAt(c.Pos, "check: from: unknown namespace %q", c.From)
		case v.namespaces[c.Target] == nil:
			v.errorAt(c.Pos, "check: throughput: unknown namespace %q", c.Target)
		case c.Target == c.From:
			v.errorAt(c.Pos, "check: throughput: %s sends to itself; want another namespace", c.From)
		case !addr && !v.notes.badAddrs[c.Target]:
			v.errorAt(c.Pos, "check: throughput: %s has no address to send to", c.Target)
		}
	default:
		return false
	}
	return true
}

// FirstAddress is the address a mesh or throughput check reaches a namespace
// at: the first address of its interfaces in file order (lo last), else of a
// bridge in it.
func FirstAddress(lab *Lab, ns string) (netip.Addr, bool) {
	var n *Namespace
	if ns == HostName {
		n = lab.Host
	} else if i := slices.IndexFunc(lab.Namespaces, func(x *Namespace) bool { return x.Name == ns }); i >= 0 {
		n = lab.Namespaces[i]
	}
	if n == nil {
		return netip.Addr{}, false
	}
	var lo []Address
	for _, ifc := range n.Interfaces {
		if ifc.Name == "lo" {
			lo = ifc.Addresses
			continue
		}
		if len(ifc.Addresses) > 0 {
			return ifc.Addresses[0].Prefix.Addr(), true
		}
	}
	if len(lo) > 0 {
		return lo[0].Prefix.Addr(), true
	}
	for _, b := range lab.Bridges {
		if b.Namespace == ns && len(b.Addresses) > 0 {
			return b.Addresses[0].Prefix.Addr(), true
		}
	}
	return netip.Addr{}, false
}
