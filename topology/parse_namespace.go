package topology

// The `namespaces:` section and what a namespace (or `host:`) holds:
// interfaces, addresses, routes, sysctls, publish; its rules and processes are
// read by parse_rules.go and parse_process.go.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

func (d *decoder) namespaces(n *yaml.Node) []*Namespace {
	ps, ok := d.mapping(n, "namespaces")
	if !ok {
		d.notes.badSections["namespaces"] = true
	}
	var out []*Namespace
	for _, p := range ps {
		name := p.key.Value
		if name == HostName {
			d.errorf(p.key, "namespace %q is reserved for the namespace netlab runs in; configure it under the top-level `host:` key", name)
			continue
		}
		if !namespaceRE.MatchString(name) {
			d.errorf(p.key, "invalid namespace name %q: %s", name, namespaceWant)
		}
		ns := &Namespace{Pos: pos(p.key), Name: name}
		out = append(out, ns)
		d.namespace(ns, p.value, "interfaces", "routes", "sysctls", "nat", "filter", "publish", "run", "serve", "exec", "hostname", "hosts", "resolv")
	}
	return out
}

// namespace reads the body of a namespace or of `host:`; known is the keys allowed.
func (d *decoder) namespace(ns *Namespace, n *yaml.Node, known ...string) {
	label := nsLabel(ns.Name)
	f, _ := d.fields(n, label, known...)
	if v := f.val("interfaces"); v != nil {
		d.interfaces(ns, v)
	}
	if v := f.val("routes"); v != nil {
		items, _ := d.list(v, label+": routes")
		for _, item := range items {
			if r := d.route(item, label); r != nil {
				ns.Routes = append(ns.Routes, r)
			}
		}
	}
	if v := f.val("sysctls"); v != nil {
		d.sysctls(ns, v)
	}
	if v := f.val("nat"); v != nil {
		items, _ := d.list(v, label+": nat")
		for _, item := range items {
			if r := d.natRule(item, label); r != nil {
				ns.NAT = append(ns.NAT, r)
			}
		}
	}
	if v := f.val("filter"); v != nil {
		items, _ := d.list(v, label+": filter")
		for _, item := range items {
			if r := d.filterRule(item, label); r != nil {
				ns.Filter = append(ns.Filter, r)
			}
		}
	}
	if v := f.val("publish"); v != nil {
		items, _ := d.list(v, label+": publish")
		for _, item := range items {
			s, ok := d.str(item, label+": publish")
			if !ok {
				continue
			}
			p, err := parsePublish(s)
			if err != nil {
				d.errorf(item, "publish %q in %s: %v", s, label, err)
				continue
			}
			p.Pos = pos(item)
			ns.Publish = append(ns.Publish, p)
		}
	}
	d.namespaceUTS(ns, f, label)
	d.processes(ns, f, label)
}

func (d *decoder) interfaces(ns *Namespace, n *yaml.Node) {
	ps, ok := d.mapping(n, nsLabel(ns.Name)+": interfaces")
	if !ok {
		// The addresses are unknown, so gateway checks in this namespace would guess.
		d.notes.badAddrs[ns.Name] = true
	}
	for _, p := range ps {
		// The interface is kept even when its name or body is bad, so that the
		// link naming it is not reported as well.
		ifc := &Interface{Pos: pos(p.key), Name: p.key.Value}
		ns.Interfaces = append(ns.Interfaces, ifc)
		if err := checkIfname(ifc.Name); err != nil && ifc.Name != "lo" { // lo: see loopbacks
			d.errorf(p.key, "%s: %v", nsLabel(ns.Name), err)
		}
		label := "interface " + ns.Name + ":" + ifc.Name
		f, ok := d.fields(p.value, label, "addresses", "mac", "mtu")
		if !ok {
			d.notes.badAddrs[ns.Name] = true
		}
		if v := f.val("addresses"); v != nil {
			if ifc.Addresses, ok = d.addresses(v, label); !ok {
				d.notes.badAddrs[ns.Name] = true
			}
		}
		if v := f.val("mac"); v != nil {
			ifc.MAC, _ = value(d, v, label, parseMAC)
		}
		if v := f.val("mtu"); v != nil {
			mtu, _ := d.integer(v, label+": mtu", 68, 65535)
			ifc.MTU = int(mtu)
		}
	}
}

// addresses reads a list of interface addresses; ok is false if any was unreadable.
func (d *decoder) addresses(n *yaml.Node, label string) ([]Address, bool) {
	items, ok := d.list(n, label+": addresses")
	var out []Address
	for _, item := range items {
		p, good := value(d, item, label, parseAddress)
		if !good {
			ok = false
			continue
		}
		if i := slices.IndexFunc(out, func(a Address) bool { return a.Prefix.Addr() == p.Addr() }); i >= 0 {
			d.errorf(item, "%s: address %s is listed twice", label, p.Addr())
			continue
		}
		out = append(out, Address{Pos: pos(item), Prefix: p})
	}
	return out, ok
}

// route reads a route in either form: the iproute2 string or {to, via, dev, metric}.
func (d *decoder) route(n *yaml.Node, nsl string) *Route {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		r, err := parseRoute(n.Value)
		if err != nil {
			d.errorf(n, "route %q in %s: %v", n.Value, nsl, err)
			return nil
		}
		r.Pos = pos(n)
		return r
	}
	label := "route in " + nsl
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: want a string such as \"default via 172.17.0.1\" or a mapping {to, via, dev, metric}, got %s", label, describe(n))
		return nil
	}
	f, _ := d.fields(n, label, "to", "via", "dev", "metric")
	r := &Route{Pos: pos(n)}
	good := true
	if v := f.val("via"); v != nil {
		r.Via, good = value(d, v, label+": via", parseAddr)
	}
	if v := f.val("dev"); v != nil {
		var ok bool
		r.Dev, ok = d.str(v, label+": dev")
		good = good && ok
	}
	if v := f.val("metric"); v != nil {
		m, ok := d.integer(v, label+": metric", 0, 4294967295)
		r.Metric, good = int(m), good && ok
	}
	v := f.val("to")
	if v == nil {
		d.errorf(n, "%s: missing to: (the destination: default, a CIDR or an address)", label)
		return nil
	}
	s, ok := d.str(v, label+": to")
	if !ok || !good {
		return nil
	}
	to, err := parseRouteDest(s, r.Via)
	if err == nil {
		r.To = to
		err = checkRoute(r)
	}
	if err != nil {
		d.errorf(n, "%s: %v", label, err)
		return nil
	}
	return r
}

func (d *decoder) sysctls(ns *Namespace, n *yaml.Node) {
	nsl := nsLabel(ns.Name)
	ps, _ := d.mapping(n, nsl+": sysctls")
	for _, p := range ps {
		key := p.key.Value
		if err := checkSysctlKey(key); err != nil {
			d.errorf(p.key, "sysctl %q in %s: %v", key, nsl, err)
			continue
		}
		v := p.value
		label := fmt.Sprintf("sysctl %s in %s", key, nsl)
		if v.Kind != yaml.ScalarNode || isNull(v) || v.ShortTag() == "!!bool" {
			// A boolean is refused: YAML would turn `on` into true, and the kernel wants 1.
			d.errorf(v, "%s: want a number or a string such as 1, got %s", label, describe(v))
			continue
		}
		if strings.ContainsAny(v.Value, "\x00\n") {
			d.errorf(v, "%s: the value must be one line", label)
			continue
		}
		value, err := canonicalSysctlValue(v.Value)
		if err != nil {
			d.errorf(v, "%s: %v", label, err)
			continue
		}
		ns.Sysctls = append(ns.Sysctls, &Sysctl{Pos: pos(p.key), Key: key, Value: value})
	}
}

// checkSysctlKey allows only net.* sysctls: the others are shared by the whole
// machine, so setting them would reach beyond the lab.
func checkSysctlKey(key string) error {
	sep := "."
	if strings.HasPrefix(key, "net/") {
		sep = "/"
	} else if !strings.HasPrefix(key, "net.") {
		return errors.New("only net.* sysctls belong to a network namespace; this one would change the whole machine")
	}
	if !sysctlKeyRE.MatchString(key) || strings.Contains(key, "..") || slices.Contains(strings.Split(key, sep), "") {
		return errors.New(`want a key such as net.ipv4.ip_forward (letters, digits, "_", "-", "." or "/")`)
	}
	return nil
}
