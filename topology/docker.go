package topology

// The Docker level: `docker:`, `networks:` and `containers:` describe a lab as
// `docker network create` and `docker run` would, and compile to the low-level
// sections (bridges, namespaces, links, the host's sysctls) before anything else
// reads the file. The compilation works on the YAML tree itself: every node it
// writes carries the line and column of the Docker-level entry it comes from, so
// a problem the low-level checks find in it is reported where the user wrote the
// container or network; and `netlab expand` prints the low-level tree as it is.
//
// What dockerd gives, by version, is in docs/topology.md ("Docker level") and
// shared/design/docker-facts.md. The compilation is pure: names, addresses and
// MACs Docker picks at random are derived from the lab's name instead, so that
// every `up` asks for the same kernel objects.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DockerVersions are the dockerd releases whose kernel details the Docker level
// reproduces.
var DockerVersions = []string{"20.10", "26.1", "28", "29"}

// DefaultDockerVersion is the release a lab gets when `docker: version:` is not given.
const DefaultDockerVersion = "26.1"

// dockerKeys are the top-level keys of the Docker level.
var dockerKeys = []string{"docker", "networks", "containers"}

// DefaultBridgeNetwork is Docker's default network, and DefaultBridge its bridge.
const (
	DefaultBridgeNetwork = "bridge"
	DefaultBridge        = "docker0"
	// EmbeddedDNS is the address of Docker's embedded DNS server in a container
	// on a user-defined network.
	EmbeddedDNS = "127.0.0.11"
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

var dockerNetworkRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

type dockerConfig struct {
	version  string
	proxy    bool
	firewall string
	pos      Pos
}

type dockerNet struct {
	name     string
	key      *yaml.Node
	bridge   string
	subnet   netip.Prefix
	gateway  netip.Addr
	internal bool
	icc      *yaml.Node // as written, or nil
	masq     bool
	isolated bool
	mtu      *yaml.Node
	user     bool // a user-defined network (names and DNS), not the default bridge
	bad      bool // reported: neither it nor its containers are emitted
	taken    map[netip.Addr]bool
	next     netip.Addr
	members  []*dockerEndpoint
}

type dockerEndpoint struct {
	c       *dockerContainer
	net     *dockerNet
	ifname  string
	pos     Pos
	ip      netip.Addr
	ipNode  *yaml.Node
	mac     net.HardwareAddr
	aliases []string
}

type dockerContainer struct {
	name      string
	key       *yaml.Node
	f         fields
	mode      string // "" (networks), "host" or "none"
	endpoints []*dockerEndpoint
	hostname  string
	aliases   []string
	bad       bool // reported: not emitted, so that its mistakes are not reported again as others
}

// hexOf is n hex digits of a hash of the parts: the stable stand-in for what
// Docker draws at random (network and container ids, MACs).
func hexOf(n int, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])[:n]
}

// DockerHostname is the hostname of a container: 12 hex digits, as the prefix
// of a container id, stable per lab and container.
func DockerHostname(lab, container string) string { return hexOf(12, "container", lab, container) }

// DockerBridgeName is the bridge of a user-defined network: br- and 12 hex
// digits, stable per lab and network.
func DockerBridgeName(lab, network string) string { return "br-" + hexOf(12, "network", lab, network) }

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
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: p.Line, Column: p.Col, Content: kv}
	if flow {
		n.Style = yaml.FlowStyle
	}
	return n
}

func gSeq(p Pos, flow bool, items ...*yaml.Node) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: p.Line, Column: p.Col, Content: items}
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

// --- The compilation ------------------------------------------------------------

// dockerLevel compiles the Docker-level sections of root into low-level ones
// and returns the new root (root itself when it has none). Errors in the
// Docker-level sections are reported at their positions.
func (d *decoder) dockerLevel(root *yaml.Node) *yaml.Node {
	if root == nil || root.Kind != yaml.MappingNode {
		return root
	}
	var found bool
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: root.Line, Column: root.Column, Style: root.Style,
		HeadComment: root.HeadComment, FootComment: root.FootComment}
	dk := map[string]pair{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i]
		if slices.Contains(dockerKeys, k.Value) {
			if _, dup := dk[k.Value]; dup {
				d.errorf(k, "lab file: duplicate key %q (first at line %d)", k.Value, dk[k.Value].key.Line)
				continue
			}
			dk[k.Value] = pair{k, root.Content[i+1]}
			found = true
			continue
		}
		out.Content = append(out.Content, k, root.Content[i+1])
	}
	if !found {
		return root
	}
	lab := ""
	if n := getKey(root, "name"); n != nil && resolve(n).Kind == yaml.ScalarNode {
		lab = resolve(n).Value
	}
	first := Pos{1, 1}
	for _, k := range dockerKeys {
		if p, ok := dk[k]; ok {
			first = pos(p.key)
			break
		}
	}
	cfg := d.dockerConfig(dk["docker"], first)
	nets, byName := d.dockerNetworks(dk["networks"], lab, first)
	containers := d.dockerContainers(dk["containers"], byName)
	d.allocate(nets, containers, lab, cfg)
	d.emitDocker(out, lab, cfg, nets, containers, first)
	return canonicalOrder(out)
}

// canonicalOrder puts the top-level keys in the order of the low-level format.
func canonicalOrder(root *yaml.Node) *yaml.Node {
	rank := func(k string) int {
		if i := slices.Index(topKeys, k); i >= 0 {
			return i
		}
		return len(topKeys)
	}
	type kv struct{ k, v *yaml.Node }
	var pairs []kv
	for i := 0; i+1 < len(root.Content); i += 2 {
		pairs = append(pairs, kv{root.Content[i], root.Content[i+1]})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return rank(pairs[i].k.Value) < rank(pairs[j].k.Value) })
	root.Content = root.Content[:0]
	for _, p := range pairs {
		root.Content = append(root.Content, p.k, p.v)
	}
	return root
}

func (d *decoder) dockerConfig(p pair, first Pos) dockerConfig {
	cfg := dockerConfig{version: DefaultDockerVersion, proxy: true, firewall: "native", pos: first}
	if p.key == nil {
		return cfg
	}
	cfg.pos = pos(p.key)
	f, _ := d.fields(p.value, "docker", "version", "userland-proxy", "firewall")
	if v := f.val("version"); v != nil {
		// `version: 26.1` is a number to YAML; the text written is what counts.
		if s, ok := d.str(v, "docker: version"); ok {
			if !slices.Contains(DockerVersions, s) {
				d.errorf(v, "docker: version: %q is not a release netlab knows (want %s)", s, strings.Join(DockerVersions, ", "))
			} else {
				cfg.version = s
			}
		}
	}
	if v := f.val("userland-proxy"); v != nil {
		cfg.proxy, _ = d.boolean(v, "docker: userland-proxy")
	}
	if v := f.val("firewall"); v != nil {
		if s, ok := d.oneOf(v, "docker: firewall", "native", "iptables", "nftables"); ok {
			if s != "native" {
				d.errorf(v, "docker: firewall: %s (Docker's own %s layout) is not built yet (issue 18); use firewall: native, netlab's table with Docker's behaviour", s, s)
			} else {
				cfg.firewall = s
			}
		}
	}
	return cfg
}

func (d *decoder) dockerNetworks(p pair, lab string, first Pos) ([]*dockerNet, map[string]*dockerNet) {
	byName := map[string]*dockerNet{}
	def := &dockerNet{name: DefaultBridgeNetwork, bridge: DefaultBridge, masq: true, isolated: true,
		subnet: netip.MustParsePrefix("172.17.0.0/16"), key: gStr(first, DefaultBridgeNetwork)}
	nets := []*dockerNet{def}
	byName[def.name] = def
	var ps []pair
	if p.key != nil {
		ps, _ = d.mapping(p.value, "networks")
	}
	for _, e := range ps {
		name := e.key.Value
		label := "network " + name
		n := def
		if name != DefaultBridgeNetwork {
			switch {
			case name == "host" || name == "none":
				d.errorf(e.key, "network %q is Docker's own (a container without a namespace of its own, or with only lo); use network: %s in a container", name, name)
				continue
			case !dockerNetworkRE.MatchString(name):
				d.errorf(e.key, "invalid network name %q: want letters, digits, \"_\", \".\" or \"-\", starting with a letter or digit", name)
				continue
			}
			n = &dockerNet{name: name, bridge: DockerBridgeName(lab, name), masq: true, isolated: true, user: true}
			nets = append(nets, n)
			byName[name] = n
		}
		n.key = e.key
		f, _ := d.fields(e.value, label, "subnet", "gateway", "internal", "icc", "masquerade", "isolated", "mtu")
		if v := f.val("subnet"); v != nil {
			if s, ok := value(d, v, label+": subnet", parseMatchPrefix); ok {
				if !s.Addr().Is4() || s.Bits() > 30 {
					d.errorf(v, "%s: subnet: want an IPv4 subnet of at most /30 such as 172.18.0.0/16, got %s", label, s)
				} else {
					n.subnet = s
				}
			}
		}
		if v := f.val("gateway"); v != nil {
			n.gateway, _ = value(d, v, label+": gateway", parseAddr)
			if n.gateway.IsValid() && n.subnet.IsValid() && !n.subnet.Contains(n.gateway) {
				d.errorf(v, "%s: gateway %s is not in the subnet %s", label, n.gateway, n.subnet)
				n.gateway = netip.Addr{}
			} else if n.gateway.IsValid() && !n.subnet.IsValid() && f.val("subnet") == nil {
				d.errorf(v, "%s: a gateway needs the subnet it belongs to (subnet:)", label)
				n.gateway = netip.Addr{}
			}
		}
		if v := f.val("internal"); v != nil {
			n.internal, _ = d.boolean(v, label+": internal")
		}
		if v := f.val("icc"); v != nil {
			if _, ok := d.boolean(v, label+": icc"); ok {
				n.icc = v
			}
		}
		if v := f.val("masquerade"); v != nil {
			n.masq, _ = d.boolean(v, label+": masquerade")
		}
		if v := f.val("isolated"); v != nil {
			n.isolated, _ = d.boolean(v, label+": isolated")
		}
		if v := f.val("mtu"); v != nil {
			if _, ok := d.integer(v, label+": mtu", 68, 65535); ok {
				n.mtu = v
			}
		}
		if n.internal {
			n.masq = false
		}
	}
	// Subnets not given come from Docker's default pools in creation order:
	// 172.18.0.0/16, 172.19.0.0/16, ... skipping those in use.
	used := func(s netip.Prefix) bool {
		for _, o := range nets {
			if o.subnet.IsValid() && o.subnet.Overlaps(s) {
				return true
			}
		}
		return false
	}
	for _, n := range nets {
		for _, o := range nets {
			if o != n && o.subnet.IsValid() && n.subnet.IsValid() && o.subnet.Overlaps(n.subnet) && slices.Index(nets, o) < slices.Index(nets, n) {
				d.errorf(n.key, "network %s: subnet %s overlaps %s of network %s", n.name, n.subnet, o.subnet, o.name)
				n.bad = true
			}
		}
	}
	for _, n := range nets {
		if n.subnet.IsValid() {
			continue
		}
		for i := 18; i < 32 && !n.subnet.IsValid(); i++ {
			s := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16)
			if !used(s) {
				n.subnet = s
			}
		}
		if !n.subnet.IsValid() {
			d.errorf(n.key, "network %s: Docker's default pools (172.17.0.0/16 to 172.31.0.0/16) are used up; give it a subnet:", n.name)
		}
	}
	for _, n := range nets {
		if n.subnet.IsValid() && !n.gateway.IsValid() {
			n.gateway = n.subnet.Addr().Next()
		}
		n.taken = map[netip.Addr]bool{n.gateway: true}
		n.next = n.subnet.Addr().Next()
	}
	return nets, byName
}

var containerKeys = []string{"network", "networks", "ip", "mac", "hostname", "aliases", "publish", "run", "serve", "exec", "sysctls"}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

const hostnameWant = "want letters, digits and \"-\" (dot-separated labels of at most 63), such as web or web.example"

func (d *decoder) dockerContainers(p pair, byName map[string]*dockerNet) []*dockerContainer {
	if p.key == nil {
		return nil
	}
	ps, _ := d.mapping(p.value, "containers")
	var out []*dockerContainer
	for _, e := range ps {
		c := &dockerContainer{name: e.key.Value, key: e.key}
		label := "container " + c.name
		errsBefore := len(d.errs)
		if c.name == HostName {
			d.errorf(e.key, "container %q: the name is reserved for the namespace netlab runs in; for Docker's --network host write network: host in a container of another name", c.name)
			continue
		}
		if !namespaceRE.MatchString(c.name) {
			d.errorf(e.key, "invalid container name %q: %s", c.name, namespaceWant)
			continue
		}
		c.f, _ = d.fields(e.value, label, containerKeys...)
		f := c.f
		if v := f.val("hostname"); v != nil {
			if s, ok := d.str(v, label+": hostname"); ok {
				if len(s) > 64 || !hostnameRE.MatchString(s) {
					d.errorf(v, "%s: invalid hostname %q: %s", label, s, hostnameWant)
				} else {
					c.hostname = s
				}
			}
		}
		if v := f.val("aliases"); v != nil {
			c.aliases = d.names(v, label+": aliases")
		}
		type want struct {
			name    string
			node    *yaml.Node
			ip, mac *yaml.Node
			aliases []string
		}
		var wants []want
		switch nv, nsv := f.val("network"), f.val("networks"); {
		case nv != nil && nsv != nil:
			d.errorf(f["networks"].key, "%s: give network: or networks:, not both", label)
		case nsv != nil && resolve(nsv).Kind == yaml.MappingNode:
			nps, _ := d.mapping(nsv, label+": networks")
			for _, np := range nps {
				nf, _ := d.fields(np.value, label+": networks: "+np.key.Value, "ip", "mac", "aliases")
				w := want{name: np.key.Value, node: np.key, ip: nf.val("ip"), mac: nf.val("mac")}
				if v := nf.val("aliases"); v != nil {
					w.aliases = d.names(v, label+": networks: "+np.key.Value+": aliases")
				}
				wants = append(wants, w)
			}
		case nsv != nil:
			items, _ := d.list(nsv, label+": networks")
			for _, item := range items {
				if s, ok := d.str(item, label+": networks"); ok {
					wants = append(wants, want{name: s, node: item})
				}
			}
			if len(items) == 0 {
				d.errorf(nsv, "%s: networks: want at least one network (or network: none)", label)
			}
		case nv != nil:
			if s, ok := d.str(nv, label+": network"); ok {
				wants = append(wants, want{name: s, node: nv})
			}
		default:
			wants = append(wants, want{name: DefaultBridgeNetwork, node: e.key})
		}
		for _, k := range []string{"ip", "mac"} {
			if v := f.val(k); v != nil {
				if len(wants) != 1 {
					d.errorf(f[k].key, "%s: %s: is for a container on one network; with several, give it per network (networks: {NAME: {%s: ...}})", label, k, k)
					continue
				}
				if k == "ip" {
					wants[0].ip = v
				} else {
					wants[0].mac = v
				}
			}
		}
		for i, w := range wants {
			if w.name == "host" || w.name == "none" {
				if len(wants) > 1 {
					d.errorf(w.node, "%s: network %s cannot be combined with other networks", label, w.name)
					continue
				}
				c.mode = w.name
				for _, k := range []string{"ip", "mac", "aliases", "hostname"} {
					if fk, ok := f[k]; ok && (w.name == "host" || k != "hostname") {
						d.errorf(fk.key, "%s: %s: has no meaning with network: %s", label, k, w.name)
					}
				}
				if fk, ok := f["publish"]; ok {
					d.errorf(fk.key, "%s: publish: has no effect with network: %s (Docker ignores it); with network: host the container's ports are the host's", label, w.name)
				}
				continue
			}
			n := byName[w.name]
			if n == nil {
				d.errorf(w.node, "%s: unknown network %q (declare it under networks:, or use bridge, host or none)", label, w.name)
				continue
			}
			if slices.ContainsFunc(c.endpoints, func(o *dockerEndpoint) bool { return o.net == n }) {
				d.errorf(w.node, "%s: network %s is listed twice", label, w.name)
				continue
			}
			ep := &dockerEndpoint{c: c, net: n, ifname: "eth" + strconv.Itoa(i), pos: pos(w.node), aliases: w.aliases}
			if w.ip != nil {
				if a, ok := value(d, w.ip, label+": ip", parseAddr); ok {
					switch {
					case !n.subnet.IsValid():
					case !n.subnet.Contains(a):
						d.errorf(w.ip, "%s: ip %s is not in the subnet %s of network %s", label, a, n.subnet, n.name)
					case a == n.gateway:
						d.errorf(w.ip, "%s: ip %s is the gateway of network %s", label, a, n.name)
					case a == n.subnet.Addr() || a == broadcast(n.subnet):
						d.errorf(w.ip, "%s: ip %s is the network or broadcast address of %s", label, a, n.subnet)
					case n.taken[a]:
						d.errorf(w.ip, "%s: ip %s is already given to another container of network %s", label, a, n.name)
					default:
						ep.ip, ep.ipNode = a, w.ip
						n.taken[a] = true
					}
				}
			}
			if w.mac != nil {
				ep.mac, _ = value(d, w.mac, label+": mac", parseMAC)
			}
			c.endpoints = append(c.endpoints, ep)
			n.members = append(n.members, ep)
			c.bad = c.bad || n.bad
		}
		c.bad = c.bad || len(d.errs) > errsBefore
		out = append(out, c)
	}
	return out
}

// names reads a list of DNS names (aliases).
func (d *decoder) names(n *yaml.Node, label string) []string {
	items, _ := d.list(n, label)
	var out []string
	for _, item := range items {
		s, ok := d.str(item, label)
		if !ok {
			continue
		}
		if len(s) > 253 || !hostnameRE.MatchString(s) {
			d.errorf(item, "%s: invalid name %q: %s", label, s, hostnameWant)
			continue
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// allocate gives every endpoint without an ip: the next free address of its
// network, in container order (Docker's IPAM: .2, .3, ...), a MAC, and every
// container its hostname.
func (d *decoder) allocate(nets []*dockerNet, containers []*dockerContainer, lab string, cfg dockerConfig) {
	for _, c := range containers {
		if c.hostname == "" && c.mode != "host" {
			c.hostname = DockerHostname(lab, c.name)
		}
		for _, ep := range c.endpoints {
			n := ep.net
			if !ep.ip.IsValid() && n.subnet.IsValid() {
				for a := n.next; n.subnet.Contains(a); a = a.Next() {
					if !n.taken[a] && a != broadcast(n.subnet) {
						ep.ip, n.next = a, a.Next()
						n.taken[a] = true
						break
					}
				}
				if !ep.ip.IsValid() {
					d.errorAt(ep.pos, "container %s: network %s (%s) has no free address left", c.name, n.name, n.subnet)
					continue
				}
			}
			if ep.mac == nil && ep.ip.IsValid() {
				ep.mac = dockerMAC(cfg.version, lab, c.name, n.name, ep.ip)
			}
		}
	}
}

// dockerMAC is the MAC Docker gives a container's interface: up to Docker 27,
// 02:42 and the IPv4 address; from 28, random (here: derived from the lab,
// container and network, locally administered and unicast).
func dockerMAC(version, lab, container, network string, ip netip.Addr) net.HardwareAddr {
	if version == "20.10" || version == "26.1" {
		a := ip.As4()
		return net.HardwareAddr{0x02, 0x42, a[0], a[1], a[2], a[3]}
	}
	h, _ := hex.DecodeString(hexOf(10, "mac", lab, container, network))
	return append(net.HardwareAddr{0x02}, h...)
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
			if n.bad {
				continue
			}
			p := pos(n.key)
			b := gMap(p, false)
			b.Content = append(b.Content,
				gStr(p, "addresses"), gSeq(p, true, gStr(p, netip.PrefixFrom(n.gateway, n.subnet.Bits()).String())),
				gStr(p, "mac"), gQuoted(p, bridgeMAC(lab, n.name).String()),
				gStr(p, "masquerade"), gBool(p, n.masq),
				gStr(p, "isolated"), gBool(p, n.isolated))
			if n.icc != nil {
				b.Content = append(b.Content, gStr(p, "icc"), n.icc)
			}
			if n.mtu != nil {
				b.Content = append(b.Content, gStr(p, "mtu"), n.mtu)
			}
			if cfg.proxy && !n.internal {
				b.Content = append(b.Content, gStr(p, "userland-proxy"), gBool(p, true))
			}
			k := gStr(p, n.bridge)
			what := "docker network create " + n.name
			if !n.user {
				what = "Docker's default network, " + n.name
			}
			k.HeadComment = what + " (" + n.subnet.String() + ")"
			bridges.Content = append(bridges.Content, k, b)
			if host != nil {
				if sc := hostSection(host, p, "sysctls", false); sc != nil {
					addDefault(sc, p, "net.ipv6.conf."+n.bridge+".accept_ra", gInt(p, 0))
				}
				if n.internal {
					if fl := hostSection(host, p, "filter", true); fl != nil {
						for _, r := range [][2]string{{n.bridge, "!" + n.bridge}, {"!" + n.bridge, n.bridge}} {
							fl.Content = append(fl.Content, gMap(p, true,
								gStr(p, "chain"), gStr(p, "forward"), gStr(p, "in"), gStr(p, r[0]),
								gStr(p, "out"), gStr(p, r[1]), gStr(p, "action"), gStr(p, "drop")))
						}
					}
				}
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
			// --network host: the container's processes run in the host.
			if host != nil {
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
			continue
		}
		if namespaces == nil {
			continue
		}
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
		// What Docker sets in every container, then the container's own.
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
		ns.Content = append(ns.Content, gStr(p, "sysctls"), sc)
		// /etc/hosts: localhost, then the container's own address and hostname.
		hosts := gSeq(p, false)
		for _, l := range dockerHostsLines {
			hosts.Content = append(hosts.Content, gStr(p, l))
		}
		for _, ep := range c.endpoints {
			if ep.ip.IsValid() {
				hosts.Content = append(hosts.Content, gStr(ep.pos, ep.ip.String()+" "+c.hostname))
			}
		}
		ns.Content = append(ns.Content, gStr(p, "hosts"), hosts)
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
		k := gStr(p, c.name)
		k.HeadComment = "docker run --name " + c.name + dockerRunFlags(c)
		namespaces.Content = append(namespaces.Content, k, ns)
	}
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

// Expand reads a lab file and returns the equivalent low-level lab: the
// Docker-level sections compiled to bridges, namespaces and links, as YAML that
// `netlab up` accepts. The file must be valid; its problems are returned as
// Errors, positioned in the file as written.
func Expand(data []byte, filename string) ([]byte, error) {
	d := &decoder{file: filename, notes: parseNotes{badAddrs: map[string]bool{}, badSections: map[string]bool{}}}
	if len(data) > maxFileSize {
		d.errorAt(Pos{1, 1}, "lab file is larger than 4 MiB; a lab is a few kilobytes")
		return nil, d.errs.sorted()
	}
	root := d.document(data)
	if root == nil {
		return nil, d.errs.sorted()
	}
	expanded := d.dockerLevel(root)
	lab := d.lab(expanded)
	errs := d.errs
	if lab != nil {
		errs = append(errs, validate(lab, d.notes)...)
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	out, err := encodeYAML(expanded)
	if err != nil {
		return nil, fmt.Errorf("%s: write the expanded lab: %w", filename, err)
	}
	return out, nil
}

// encodeYAML writes a tree as a lab file is written: two-space indents.
func encodeYAML(root *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
