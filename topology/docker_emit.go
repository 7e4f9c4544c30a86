package topology

import (
	"encoding/hex"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// dockerHostsLines are the lines Docker writes at the top of every container's
// /etc/hosts.
var dockerHostsLines = []string{
	"127.0.0.1 localhost",
	"::1 localhost ip6-localhost ip6-loopback",
	"fe00::0 ip6-localnet",
	"ff00::0 ip6-mcastprefix",
	"ff02::1 ip6-allnodes",
	"ff02::2 ip6-allrouters",
}

// --- Node builders: every generated node has the position of its source. ---------

func gScalar(p Pos, tag, v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: v, Line: p.Line, Column: p.Col}
}
func gStr(p Pos, v string) *yaml.Node { return gScalar(p, "!!str", v) }
func gInt(p Pos, v int) *yaml.Node    { return gScalar(p, "!!int", strconv.Itoa(v)) }
func gBool(p Pos, v bool) *yaml.Node  { return gScalar(p, "!!bool", strconv.FormatBool(v)) }
func gQuoted(p Pos, v string) *yaml.Node {
	n := gStr(p, v)
	n.Style = yaml.DoubleQuotedStyle
	return n
}

func gMap(p Pos, flow bool, kv ...*yaml.Node) *yaml.Node {
	return gCollection(p, yaml.MappingNode, "!!map", flow, kv)
}

func gSeq(p Pos, flow bool, items ...*yaml.Node) *yaml.Node {
	return gCollection(p, yaml.SequenceNode, "!!seq", flow, items)
}

// gCollection is a mapping or sequence node holding content, in flow style
// ([...], {...}) when flow.
func gCollection(p Pos, kind yaml.Kind, tag string, flow bool, content []*yaml.Node) *yaml.Node {
	n := &yaml.Node{Kind: kind, Tag: tag, Line: p.Line, Column: p.Col, Content: content}
	if flow {
		n.Style = yaml.FlowStyle
	}
	return n
}

// setKey sets key in the mapping m to v, replacing an earlier value.
func setKey(m *yaml.Node, p Pos, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, gStr(p, key), v)
}

// getKey returns the value of key in the mapping m, or nil.
func getKey(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// section returns the mapping (or list, when list) of a top-level key of root,
// making it when absent or empty. It returns nil when the key holds something
// else: the low-level decoder reports that.
func section(root *yaml.Node, p Pos, key string, list bool) *yaml.Node {
	v := getKey(root, key)
	if v != nil {
		v = resolve(v)
	}
	switch {
	case v == nil || isNull(v):
		n := gMap(p, false)
		if list {
			n = gSeq(p, false)
		}
		setKey(root, p, key, n)
		return n
	case list && v.Kind == yaml.SequenceNode, !list && v.Kind == yaml.MappingNode:
		return v
	}
	return nil
}

// bridgeMAC is the bridge's own MAC: 02:42 and four bytes Docker draws at random.
func bridgeMAC(lab, network string) net.HardwareAddr {
	h, _ := hex.DecodeString(hexOf(8, "bridge-mac", lab, network))
	return append(net.HardwareAddr{0x02, 0x42}, h...)
}

// emitDocker writes the low-level sections into root.
func (d *decoder) emitDocker(root *yaml.Node, lab string, cfg dockerConfig, nets []*dockerNet, containers []*dockerContainer, first Pos) {
	host := section(root, cfg.pos, "host", false)
	if host != nil {
		if sc := hostSection(host, cfg.pos, "sysctls", false); sc != nil {
			addDefault(sc, cfg.pos, "net.ipv4.ip_forward", gInt(cfg.pos, 1))
		}
	}
	// Bridges: one per network, in creation order (docker0 first).
	if bridges := section(root, first, "bridges", false); bridges != nil {
		for _, n := range nets {
			if !n.bad {
				emitBridge(bridges, host, lab, cfg, n)
			}
		}
	}
	namespaces := section(root, first, "namespaces", false)
	links := section(root, first, "links", true)
	for _, c := range containers {
		p := pos(c.key)
		if c.bad {
			continue
		}
		if c.mode == "host" {
			d.emitHostContainer(host, c)
			continue
		}
		if namespaces == nil {
			continue
		}
		ns := d.containerNamespace(c, links)
		k := gStr(p, c.name)
		k.HeadComment = "docker run --name " + c.name + dockerRunFlags(c)
		namespaces.Content = append(namespaces.Content, k, ns)
	}
}

// emitBridge writes network n's bridge into bridges, and what it needs of the
// host into host (nil when the file's host: is not a mapping).
func emitBridge(bridges, host *yaml.Node, lab string, cfg dockerConfig, n *dockerNet) {
	p := pos(n.key)
	b := gMap(p, false)
	b.Content = append(b.Content,
		gStr(p, "addresses"), gSeq(p, true, gStr(p, netip.PrefixFrom(n.gateway, n.subnet.Bits()).String())),
		gStr(p, "mac"), gQuoted(p, bridgeMAC(lab, n.name).String()),
		gStr(p, "masquerade"), gBool(p, n.masq),
		gStr(p, "isolated"), gBool(p, n.isolated))
	if n.internal {
		b.Content = append(b.Content, gStr(p, "internal"), gBool(p, true))
	}
	if n.icc != nil {
		b.Content = append(b.Content, gStr(p, "icc"), n.icc)
	}
	if n.mtu != nil {
		b.Content = append(b.Content, gStr(p, "mtu"), n.mtu)
	}
	if cfg.proxy {
		b.Content = append(b.Content, gStr(p, "userland-proxy"), gBool(p, true))
	}
	if cfg.firewall != "native" {
		b.Content = append(b.Content, gStr(p, "firewall"), gStr(p, cfg.firewall))
	}
	if cfg.firewall == "iptables" {
		b.Content = append(b.Content, gStr(p, "docker-version"), gQuoted(p, cfg.version))
	}
	k := gStr(p, n.bridge)
	what := "docker network create " + n.name
	if n.internal {
		what = "docker network create --internal " + n.name
	}
	if !n.user {
		what = "Docker's default network, " + n.name
	}
	k.HeadComment = what + " (" + n.subnet.String() + ")"
	bridges.Content = append(bridges.Content, k, b)
	if host != nil {
		if sc := hostSection(host, p, "sysctls", false); sc != nil {
			addDefault(sc, p, "net.ipv6.conf."+n.bridge+".accept_ra", gInt(p, 0))
		}
	}
}

// emitHostContainer moves the processes of container c, on --network host,
// into host: they run in the host.
func (d *decoder) emitHostContainer(host *yaml.Node, c *dockerContainer) {
	if host == nil {
		return
	}
	p := pos(c.key)
	for _, k := range []string{"run", "serve", "exec"} {
		if v := c.f.val(k); v != nil && resolve(v).Kind == yaml.SequenceNode {
			if l := hostSection(host, p, k, true); l != nil {
				l.Content = append(l.Content, resolve(v).Content...)
			}
		}
	}
	if v, ok := c.f["sysctls"]; ok {
		d.errorf(v.key, "container %s: sysctls: with network: host would change the host's; write them under host:", c.name)
	}
}

// containerNamespace is the namespace of container c; its links to the
// bridges go into links.
func (d *decoder) containerNamespace(c *dockerContainer, links *yaml.Node) *yaml.Node {
	p := pos(c.key)
	ns := gMap(p, false)
	ns.Content = append(ns.Content, gStr(p, "hostname"), gStr(p, c.hostname))
	ifaces := gMap(p, false)
	var routes []*yaml.Node
	for _, ep := range c.endpoints {
		if !ep.ip.IsValid() {
			continue
		}
		ifc := gMap(ep.pos, true,
			gStr(ep.pos, "addresses"), gSeq(ep.pos, true, gStr(ep.pos, netip.PrefixFrom(ep.ip, ep.net.subnet.Bits()).String())),
			gStr(ep.pos, "mac"), gQuoted(ep.pos, ep.mac.String()))
		ifaces.Content = append(ifaces.Content, gStr(ep.pos, ep.ifname), ifc)
		if len(routes) == 0 && !ep.net.internal {
			routes = append(routes, gStr(ep.pos, "default via "+ep.net.gateway.String()))
		}
		links.Content = append(links.Content, gSeq(ep.pos, true, gStr(ep.pos, c.name+":"+ep.ifname), gStr(ep.pos, ep.net.bridge)))
	}
	if len(ifaces.Content) > 0 {
		ns.Content = append(ns.Content, gStr(p, "interfaces"), ifaces)
	}
	if len(routes) > 0 {
		ns.Content = append(ns.Content, gStr(p, "routes"), gSeq(p, true, routes...))
	}
	ns.Content = append(ns.Content, gStr(p, "sysctls"), d.containerSysctls(c))
	ns.Content = append(ns.Content, gStr(p, "hosts"), containerHosts(c))
	// resolv.conf: the embedded DNS on a user-defined network, the host's
	// resolvers otherwise.
	dns := dnsNames(c)
	if dns != nil {
		ns.Content = append(ns.Content, gStr(p, "resolv"), gMap(p, true,
			gStr(p, "nameservers"), gSeq(p, true, gStr(p, EmbeddedDNS)),
			gStr(p, "options"), gSeq(p, true, gStr(p, "ndots:0"))))
	} else {
		ns.Content = append(ns.Content, gStr(p, "resolv"), gStr(p, "host"))
	}
	for _, k := range []string{"publish", "run", "exec"} {
		if v := c.f.val(k); v != nil {
			ns.Content = append(ns.Content, gStr(pos(c.f[k].key), k), v)
		}
	}
	serve := c.f.val("serve")
	if dns != nil {
		entries := gSeq(p, false)
		if serve != nil && resolve(serve).Kind == yaml.SequenceNode {
			entries.Content = append(entries.Content, resolve(serve).Content...)
		}
		entries.Content = append(entries.Content, dns)
		serve = entries
	}
	if serve != nil {
		ns.Content = append(ns.Content, gStr(p, "serve"), serve)
	}
	return ns
}

// containerSysctls are what Docker sets in every container, then the
// container's own.
func (d *decoder) containerSysctls(c *dockerContainer) *yaml.Node {
	p := pos(c.key)
	sc := gMap(p, false,
		gStr(p, "net.ipv4.ip_unprivileged_port_start"), gInt(p, 0),
		gStr(p, "net.ipv4.ping_group_range"), gQuoted(p, "0 2147483647"))
	if v := c.f.val("sysctls"); v != nil {
		if own, ok := d.mapping(v, "container "+c.name+": sysctls"); ok {
			for _, o := range own {
				setKey(sc, pos(o.key), o.key.Value, o.value)
			}
		}
	}
	return sc
}

// containerHosts is the container's /etc/hosts: localhost, then the
// container's own address and hostname.
func containerHosts(c *dockerContainer) *yaml.Node {
	p := pos(c.key)
	hosts := gSeq(p, false)
	for _, l := range dockerHostsLines {
		hosts.Content = append(hosts.Content, gStr(p, l))
	}
	for _, ep := range c.endpoints {
		if ep.ip.IsValid() {
			hosts.Content = append(hosts.Content, gStr(ep.pos, ep.ip.String()+" "+c.hostname))
		}
	}
	return hosts
}

// dockerRunFlags is the network part of the container's `docker run`, for the
// comment on its namespace.
func dockerRunFlags(c *dockerContainer) string {
	if c.mode != "" {
		return " --network " + c.mode
	}
	var s string
	for i, ep := range c.endpoints {
		if i == 0 {
			if ep.net.name != DefaultBridgeNetwork {
				s += " --network " + ep.net.name
			}
		} else {
			s += " (then docker network connect " + ep.net.name + ")"
		}
	}
	return s
}

// dnsNames is the `serve:` entry of the embedded DNS server of a container on
// user-defined networks: the names (container names, aliases and, for a
// container whose hostname is its id, the hostname) of every container on its
// networks, with their addresses there. Nil when the container is on no
// user-defined network.
func dnsNames(c *dockerContainer) *yaml.Node {
	p := pos(c.key)
	names := map[string]netip.Addr{}
	var order []string
	add := func(name string, a netip.Addr) {
		if _, ok := names[name]; !ok && a.IsValid() {
			names[name] = a
			order = append(order, name)
		}
	}
	user := false
	for _, ep := range c.endpoints {
		if !ep.net.user {
			continue
		}
		user = true
		for _, m := range ep.net.members {
			if m.c.bad {
				continue
			}
			add(m.c.name, m.ip)
			for _, a := range append(slices.Clone(m.c.aliases), m.aliases...) {
				add(a, m.ip)
			}
			add(m.c.hostname, m.ip)
		}
	}
	if !user {
		return nil
	}
	slices.Sort(order)
	m := gMap(p, false)
	for _, n := range order {
		m.Content = append(m.Content, gStr(p, n), gStr(p, names[n].String()))
	}
	return gMap(p, false, gStr(p, "dns"), gMap(p, false, gStr(p, "names"), m, gStr(p, "forward"), gBool(p, true)))
}

// hostSection is section() for a key of the host's mapping.
func hostSection(host *yaml.Node, p Pos, key string, list bool) *yaml.Node {
	return section(host, p, key, list)
}

// addDefault sets key in the mapping m unless the file gives it already.
func addDefault(m *yaml.Node, p Pos, key string, v *yaml.Node) {
	if getKey(m, key) == nil {
		m.Content = append(m.Content, gStr(p, key), v)
	}
}
