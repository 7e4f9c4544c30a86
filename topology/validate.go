package topology

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Validate checks how the values of a parsed lab fit together (names, links,
// subnets, gateways, duplicates) and reports every problem at once as sorted Errors.
// It also resolves what the file leaves implicit: each link end's namespace,
// interface and bridge, generated bridge-port names, and the Dev of a route
// written without one. Values are assumed to come from Parse, which checked each
// of them on its own.
func (l *Lab) Validate() error {
	if errs := validate(l, parseNotes{}); len(errs) > 0 {
		return collapseRanges(errs, l).sorted()
	}
	return nil
}

// GeneratedPortName is the name of the bridge port of a link end written as just
// BRIDGE: "veth" and 7 hex digits, like Docker's host-side names, derived from the
// lab and the other end of the link so that it is the same at every run.
//
// Seven hex digits are 28 bits: in a lab of thousands of ports, two may hash
// alike. generatePortName then probes on, deterministically.
func GeneratedPortName(lab, namespace, iface string) string {
	return portName(lab, namespace, iface, 0)
}

// generatePortName is GeneratedPortName unless a port of an earlier link in the
// same namespace got that name; then the first free name of the sequence
// portName(..., 1), portName(..., 2), ... Links are named in file order, so a
// name moves only when it collides, and a link added at the end renames no
// other. A name generated from the same other end (the same link twice, or a
// link from a bridge to itself), or written in the file, stays an error: the file
// asks for one interface twice.
func generatePortName(lab, namespace, iface string, taken map[string]string) string {
	for n := 0; ; n++ {
		name := portName(lab, namespace, iface, n)
		if from, ok := taken[name]; !ok || from == namespace+":"+iface {
			return name
		}
	}
}

func portName(lab, namespace, iface string, n int) string {
	in := lab + "\x00" + namespace + ":" + iface
	if n > 0 {
		in += "\x00" + strconv.Itoa(n)
	}
	sum := sha256.Sum256([]byte(in))
	return "veth" + hex.EncodeToString(sum[:])[:7]
}

type validator struct {
	lab        *Lab
	notes      parseNotes
	errs       Errors
	namespaces map[string]*Namespace         // the host included
	bridges    map[string]*Bridge            //
	devices    map[string]map[string]*device // namespace, then interface name
	unresolved map[string]bool               // link ends (as written) that did not resolve
}

// device is a network interface the lab puts in a namespace: a bridge, or one end
// of a link (with its `interfaces:` entry if it has one).
type device struct {
	name   string
	bridge *Bridge    // set when the device is this bridge
	link   *Link      // set when the device is an end of this link
	end    *End       //
	iface  *Interface // its `interfaces:` entry, if declared
}

// label names the device in messages: "bridge docker0" or "web:eth0".
func (dv *device) label(ns string) string {
	if dv.bridge != nil {
		return "bridge " + dv.bridge.Name
	}
	return ns + ":" + dv.name
}

func (dv *device) addresses() []Address {
	switch {
	case dv.bridge != nil:
		return dv.bridge.Addresses
	case dv.iface != nil:
		return dv.iface.Addresses
	}
	return nil
}

func validate(l *Lab, notes parseNotes) Errors {
	v := &validator{
		lab:        l,
		notes:      notes,
		namespaces: map[string]*Namespace{},
		bridges:    map[string]*Bridge{},
		devices:    map[string]map[string]*device{},
		unresolved: map[string]bool{},
	}
	v.reset()
	v.names()
	v.links()
	v.loopbacks()
	v.interfaces()
	v.linkSettings()
	v.hosts()
	v.addresses()
	v.routes()
	v.rules()
	v.iptablesDaemons()
	v.publish()
	v.checks()
	return v.errs
}

// reset clears what an earlier Validate of the same lab resolved.
func (v *validator) reset() {
	for _, ns := range v.allNamespaces() {
		ns.Ends, ns.Hosts = nil, nil
	}
	for _, b := range v.lab.Bridges {
		b.Ports = nil
	}
	for _, l := range v.lab.Links {
		for _, e := range l.Ends {
			e.OnBridge, e.Peer, e.Config = nil, nil, nil
		}
	}
	for _, c := range v.lab.Checks {
		c.FromNamespace = nil
	}
}

func (v *validator) errorAt(p Pos, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.lab.File, Pos: p, Msg: fmt.Sprintf(format, args...)})
}

// allNamespaces is the host then the lab's namespaces, in file order.
func (v *validator) allNamespaces() []*Namespace {
	if v.lab.Host == nil {
		return v.lab.Namespaces
	}
	return append([]*Namespace{v.lab.Host}, v.lab.Namespaces...)
}

// refsUnsure is true when a section that names could point into was unreadable,
// so that "unknown namespace" would only repeat the error already reported.
func (v *validator) refsUnsure() bool {
	return v.notes.badSections["namespaces"] || v.notes.badSections["bridges"]
}

// names indexes namespaces and bridges, and checks their names against each other.
func (v *validator) names() {
	for _, ns := range v.allNamespaces() {
		if v.namespaces[ns.Name] != nil {
			v.errorAt(ns.Pos, "namespace %s is declared twice", ns.Name)
			continue
		}
		v.namespaces[ns.Name] = ns
		v.devices[ns.Name] = map[string]*device{}
		// Parse has reported a bad name already; the length would follow from it.
		if k := v.lab.KernelName(ns.Name); len(k) > maxKernelName && namespaceRE.MatchString(ns.Name) {
			v.errorAt(ns.Pos, "namespace %s: its kernel name %q (netns-prefix and name) is %d bytes; the limit is %d", ns.Name, k, len(k), maxKernelName)
		} else if ns.Name != HostName && k == HostName {
			// Plans, state and the driver name the machine's own namespace "host":
			// a lab namespace of that kernel name would be taken for it.
			v.errorAt(ns.Pos, "namespace %s: its kernel name %q (netns-prefix and name) is the name netlab keeps for the namespace it runs in; change the prefix or the name", ns.Name, k)
		}
	}
	for _, b := range v.lab.Bridges {
		if v.bridges[b.Name] != nil {
			v.errorAt(b.Pos, "bridge %s is declared twice", b.Name)
			continue
		}
		v.bridges[b.Name] = b
		switch {
		case b.Name == HostName:
			v.errorAt(b.Pos, "bridge host: %q is the name of the namespace netlab runs in; rename the bridge", HostName)
		case v.namespaces[b.Name] != nil:
			v.errorAt(b.Pos, "bridge %s: %q is also a namespace, so a link end %q would be ambiguous; rename one", b.Name, b.Name, b.Name)
		}
		devs := v.devices[b.Namespace]
		if devs == nil {
			if !v.refsUnsure() {
				v.errorAt(b.Pos, "bridge %s: unknown namespace %q", b.Name, b.Namespace)
			}
			continue
		}
		devs[b.Name] = &device{name: b.Name, bridge: b}
	}
}

// links resolves each link end and registers it as a device of its namespace.
func (v *validator) links() {
	// The names generated so far, per namespace: a later port that hashes to
	// one of them probes on (see generatePortName).
	generated := map[string]map[string]string{} // namespace -> name -> what it was generated from
	for _, l := range v.lab.Links {
		label := fmt.Sprintf("link %q", l.Ends[0].Text+" -- "+l.Ends[1].Text)
		l.Ends[0].Peer, l.Ends[1].Peer = l.Ends[1], l.Ends[0]
		ok0, ok1 := v.resolveEnd(label, l.Ends[0]), v.resolveEnd(label, l.Ends[1])
		if ok0 && ok1 {
			// Names are generated from the other end as written before generation, so
			// that a link between two bridges gets two stable names.
			var names [2]string
			for i, e := range l.Ends {
				names[i] = e.Interface
				if e.Bridge != "" && e.Interface == "" {
					other := l.Ends[1-i]
					names[i] = generatePortName(v.lab.Name, other.Namespace, cmp.Or(other.Interface, other.Text), generated[e.Namespace])
				}
			}
			// Both ends first: a link from a bridge to itself gets one name twice,
			// and is reported below.
			for i, e := range l.Ends {
				if e.Bridge != "" && e.Interface == "" {
					if generated[e.Namespace] == nil {
						generated[e.Namespace] = map[string]string{}
					}
					other := l.Ends[1-i]
					generated[e.Namespace][names[i]] = other.Namespace + ":" + cmp.Or(other.Interface, other.Text)
				}
			}
			l.Ends[0].Interface, l.Ends[1].Interface = names[0], names[1]
			if a, b := l.Ends[0], l.Ends[1]; a.Namespace == b.Namespace && a.Interface == b.Interface {
				same := a.Text
				if a.Text != b.Text {
					same = a.Namespace + ":" + a.Interface
				}
				v.errorAt(l.Pos, "%s: both ends are %s", label, same)
				continue
			}
		}
		// An end that resolved is registered even when the other did not, so that
		// its `interfaces:` entry is not reported as unlinked on top.
		for _, e := range l.Ends {
			if e.Namespace == "" || e.Interface == "" {
				continue
			}
			devs := v.devices[e.Namespace]
			if old := devs[e.Interface]; old != nil {
				if old.bridge != nil {
					v.errorAt(e.Pos, "%s: %s:%s is already the name of bridge %s", label, e.Namespace, e.Interface, old.bridge.Name)
				} else {
					v.errorAt(e.Pos, "%s: %s:%s is already an end of link %q", label, e.Namespace, e.Interface, old.link.Ends[0].Text+" -- "+old.link.Ends[1].Text)
				}
				continue
			}
			devs[e.Interface] = &device{name: e.Interface, link: l, end: e}
			if e.OnBridge != nil {
				e.OnBridge.Ports = append(e.OnBridge.Ports, e)
			} else if ns := v.namespaces[e.Namespace]; ns != nil {
				ns.Ends = append(ns.Ends, e)
			}
		}
	}
}

// resolveEnd fills in the namespace, interface and bridge of a link end.
func (v *validator) resolveEnd(label string, e *End) bool {
	name, ifname, hasIf := strings.Cut(e.Text, ":")
	if v.bridges[name] != nil && v.namespaces[name] != nil {
		v.unresolved[e.Text] = true
		return false // ambiguous, reported with the bridge
	}
	if b := v.bridges[name]; b != nil {
		if v.devices[b.Namespace] == nil {
			return false // the bridge's unknown namespace is reported already
		}
		e.Bridge, e.OnBridge, e.Namespace, e.Interface = b.Name, b, b.Namespace, ifname
		return true
	}
	if v.namespaces[name] != nil {
		if !hasIf {
			v.errorAt(e.Pos, "%s: end %q is a namespace; want %s:IFNAME (e.g. %s:eth0)", label, e.Text, name, name)
			return false
		}
		e.Namespace, e.Interface = name, ifname
		return true
	}
	v.unresolved[e.Text] = true
	if !v.refsUnsure() {
		if hasIf {
			v.errorAt(e.Pos, "%s: unknown namespace %q", label, name)
		} else {
			v.errorAt(e.Pos, "%s: unknown bridge %q", label, name)
		}
	}
	return false
}

// interfaces checks that each `interfaces:` entry configures a plain link end.
func (v *validator) interfaces() {
	for _, ns := range v.allNamespaces() {
		devs := v.devices[ns.Name]
		if devs == nil {
			continue // declared twice, reported
		}
		for _, ifc := range ns.Interfaces {
			if ifc.Name == "lo" {
				continue // see loopbacks
			}
			dv := devs[ifc.Name]
			switch {
			case dv == nil:
				// Not when the cause is reported already: a bad name, a link that
				// could not be read, or a link whose end names it but did not resolve.
				if !v.notes.badLinks && !v.unresolved[ns.Name+":"+ifc.Name] && ifnameProblem(ifc.Name) == "" {
					v.errorAt(ifc.Pos, "interface %s:%s is declared but no link has the end %s:%s", ns.Name, ifc.Name, ns.Name, ifc.Name)
				}
				// Known from here on, so that routes through it are not reported too.
				devs[ifc.Name] = &device{name: ifc.Name, iface: ifc}
			case dv.bridge != nil:
				v.errorAt(ifc.Pos, "interface %s:%s is bridge %s; configure it under bridges:", ns.Name, ifc.Name, dv.bridge.Name)
			case dv.end.Bridge != "":
				v.errorAt(ifc.Pos, "interface %s:%s is a port of bridge %s; only plain link ends (NAMESPACE:IFNAME) are configured under interfaces:", ns.Name, ifc.Name, dv.end.Bridge)
			default:
				dv.iface = ifc
				dv.end.Config = ifc
			}
		}
	}
}

// loopbackHosts are the first lines of every generated /etc/hosts.
var loopbackHosts = []HostsEntry{
	{netip.MustParseAddr("127.0.0.1"), []string{"localhost"}},
	{netip.MustParseAddr("::1"), []string{"localhost", "ip6-localhost", "ip6-loopback"}},
}

// hosts resolves who finds whom by name: each namespace linked to a bridge with
// `resolve: true` gets Hosts, the loopback lines then the name and address of
// each namespace on the same resolving bridges (itself included), bridges in
// file order and their members in link order.
func (v *validator) hosts() {
	type member struct {
		ns   *Namespace
		addr netip.Addr
	}
	seen := map[*Namespace]map[member]bool{}
	for _, b := range v.lab.Bridges {
		if !b.Resolve {
			continue
		}
		var members []member
		for _, port := range b.Ports {
			end := port.Peer
			if end.Bridge != "" || end.Namespace == HostName || end.Config == nil {
				continue
			}
			for _, a := range end.Config.Addresses {
				members = append(members, member{v.namespaces[end.Namespace], a.Prefix.Addr()})
			}
		}
		for _, m := range members {
			if seen[m.ns] == nil {
				seen[m.ns] = map[member]bool{}
				m.ns.Hosts = slices.Clone(loopbackHosts)
			}
			for _, e := range members {
				if !seen[m.ns][e] {
					seen[m.ns][e] = true
					m.ns.Hosts = append(m.ns.Hosts, HostsEntry{e.addr, []string{e.ns.Name}})
				}
			}
		}
	}
}

// rules checks that the interfaces NAT and filter rules match on exist. The host
// is left out: its rules may name the machine's own interfaces (eth0), which the
// lab does not know about.
func (v *validator) rules() {
	for _, ns := range v.lab.Namespaces {
		devs := v.devices[ns.Name]
		if devs == nil {
			continue
		}
		check := func(p Pos, label string, in, out Iface) {
			for _, m := range []struct {
				key   string
				iface Iface
			}{{"in", in}, {"out", out}} {
				if m.iface.Name != "" && devs[m.iface.Name] == nil {
					v.errorAt(p, "%s: %s: unknown device %q (%s)", label, m.key, m.iface.Name, v.deviceList(ns.Name))
				}
			}
		}
		for _, r := range ns.NAT {
			check(r.Pos, r.Action+" rule in "+nsLabel(ns.Name), r.In, r.Out)
		}
		for _, r := range ns.Filter {
			check(r.Pos, "filter rule in "+nsLabel(ns.Name), r.In, r.Out)
		}
	}
}

// iptablesDaemons checks that the bridges of a namespace written in Docker's
// iptables layout agree on the release: they are one dockerd's networks, and
// one dockerd writes one layout.
func (v *validator) iptablesDaemons() {
	first := map[string]*Bridge{}
	release := func(b *Bridge) string { return cmp.Or(b.DockerVersion, DefaultDockerVersion) }
	for _, b := range v.lab.Bridges {
		if b.Nftables && b.DockerVersion != "" && b.DockerVersion != "29" {
			v.errorAt(b.Pos, "bridge %s: firewall: nftables is Docker 29's layout, but docker-version is %s; drop docker-version or make it \"29\"", b.Name, b.DockerVersion)
		}
		if !b.Iptables {
			continue
		}
		f := first[b.Namespace]
		if f == nil {
			first[b.Namespace] = b
			continue
		}
		if release(f) != release(b) {
			v.errorAt(b.Pos, "bridge %s: docker-version %s, but bridge %s in the same namespace has %s: one dockerd writes one iptables layout; give both the same docker-version",
				b.Name, release(b), f.Name, release(f))
		}
		if f.UserlandProxy != b.UserlandProxy {
			v.errorAt(b.Pos, "bridge %s: userland-proxy: %t, but bridge %s in the same namespace has %t: the userland proxy is a setting of the whole dockerd, whose one iptables layout these bridges share; give both the same",
				b.Name, b.UserlandProxy, f.Name, f.UserlandProxy)
		}
	}
}

// publish checks that a namespace that publishes a port sits on a bridge (the
// DNAT happens where the bridge lives), and that no host port is published twice.
func (v *validator) publish() {
	var taken []*Publish
	owner := map[*Publish]string{}
	for _, ns := range v.lab.Namespaces {
		if len(ns.Publish) == 0 {
			continue
		}
		// A port is published through the namespace's first bridge that is
		// not internal: Docker maps ports on a container's gateway network.
		onBridge, internal := false, ""
		for _, e := range ns.Ends {
			switch b := e.Peer.OnBridge; {
			case b == nil:
			case b.Internal:
				internal = cmp.Or(internal, b.Name)
			default:
				onBridge = true
			}
		}
		for _, p := range ns.Publish {
			label := fmt.Sprintf("publish %q in %s", p.Text, nsLabel(ns.Name))
			switch {
			case onBridge || v.notes.badLinks:
			case internal != "":
				v.errorAt(p.Pos, "%s: %s is only on internal bridges (%s): nothing enters an internal network, so Docker publishes no port there (link %s to another bridge too)", label, ns.Name, internal, ns.Name)
			default:
				v.errorAt(p.Pos, "%s: %s is not linked to any bridge, so the host has nowhere to forward the port (add a link such as [%s:eth0, docker0])", label, ns.Name, ns.Name)
			}
			i := slices.IndexFunc(taken, func(o *Publish) bool {
				return o.HostPort == p.HostPort && o.Proto == p.Proto && (!o.HostIP.IsValid() || !p.HostIP.IsValid() || o.HostIP == p.HostIP)
			})
			if i >= 0 {
				v.errorAt(p.Pos, "%s: host port %d/%s is already published by %s (%q)", label, p.HostPort, p.Proto, nsLabel(owner[taken[i]]), taken[i].Text)
				continue
			}
			taken = append(taken, p)
			owner[p] = ns.Name
		}
	}
}

func (v *validator) checks() {
	for _, c := range v.lab.Checks {
		c.FromNamespace = v.namespaces[c.From]
		if v.extraCheck(c) { // mesh and throughput (checks_extra.go)
			continue
		}
		if v.namespaces[c.From] == nil && !v.notes.badSections["namespaces"] {
			v.errorAt(c.Pos, "check: from: unknown namespace %q", c.From)
		}
		// A target given by name must name a namespace of the lab.
		if host := CheckHost(c); host != "" && !v.notes.badSections["namespaces"] {
			if _, err := netip.ParseAddr(host); err != nil && v.namespaces[host] == nil {
				v.errorAt(c.Pos, "check: %s: unknown namespace %q (a target is an address or a namespace's name)", c.Kind, host)
			}
		}
	}
}

// CheckHost is the host part of a check's target: an address or a namespace name.
func CheckHost(c *Check) string {
	switch c.Kind {
	case "tcp":
		host, _, _ := net.SplitHostPort(c.Target)
		return host
	case "http":
		u, err := url.Parse(c.Target)
		if err != nil {
			return ""
		}
		return u.Hostname()
	}
	return c.Target
}

// CheckTargetAt is a check's target with its host name replaced by the address
// it resolves to: in a URL, its host only (the name may also be in its user
// part, `http://admin:pw@admin/`, and left there it would be looked up by Go's
// resolver, in the host's namespace, with the machine's own DNS servers).
func CheckTargetAt(c *Check, addr netip.Addr) string {
	switch c.Kind {
	case "http":
		u, err := url.Parse(c.Target)
		if err != nil {
			return c.Target
		}
		if port := u.Port(); port != "" {
			u.Host = net.JoinHostPort(addr.String(), port)
		} else if addr.Is6() {
			u.Host = "[" + addr.String() + "]"
		} else {
			u.Host = addr.String()
		}
		return u.String()
	case "tcp":
		if _, port, err := net.SplitHostPort(c.Target); err == nil {
			return net.JoinHostPort(addr.String(), port)
		}
	}
	return addr.String()
}
