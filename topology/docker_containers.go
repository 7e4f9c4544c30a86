package topology

import (
	"encoding/hex"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

var containerKeys = []string{"network", "networks", "ip", "mac", "hostname", "aliases", "publish", "run", "serve", "exec", "sysctls"}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

const hostnameWant = "want letters, digits and \"-\" (dot-separated labels of at most 63), such as web or web.example"

// dockerContainers reads containers:, each joined to the networks of byName
// it asks for.
func (d *decoder) dockerContainers(p pair, byName map[string]*dockerNet) []*dockerContainer {
	if p.key == nil {
		return nil
	}
	ps, _ := d.mapping(p.value, "containers")
	var out []*dockerContainer
	for _, e := range ps {
		if c := d.dockerContainer(e, byName); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// dockerContainer reads the entry of one container; nil when its name is
// refused.
func (d *decoder) dockerContainer(e pair, byName map[string]*dockerNet) *dockerContainer {
	c := &dockerContainer{name: e.key.Value, key: e.key}
	label := "container " + c.name
	errsBefore := len(d.errs)
	if c.name == HostName {
		d.errorf(e.key, "container %q: the name is reserved for the namespace netlab runs in; for Docker's --network host write network: host in a container of another name", c.name)
		return nil
	}
	if !namespaceRE.MatchString(c.name) {
		d.errorf(e.key, "invalid container name %q: %s", c.name, namespaceWant)
		return nil
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
	wants := d.dockerWants(f, e.key, label)
	for i, w := range wants {
		if w.name == "host" || w.name == "none" {
			d.dockerNoNetwork(c, w, len(wants), label)
			continue
		}
		d.dockerAttach(c, w, i, byName, label)
	}
	d.dockerInternalPublish(c, label)
	c.bad = c.bad || len(d.errs) > errsBefore
	return c
}

// dockerWant is a network a container asks for, with what it asks of it.
type dockerWant struct {
	name    string
	node    *yaml.Node
	ip, mac *yaml.Node
	aliases []string
}

// dockerWants reads the networks a container asks for (network:, networks:
// as a list or a mapping, or Docker's default bridge) and its ip: and mac:.
func (d *decoder) dockerWants(f fields, key *yaml.Node, label string) []dockerWant {
	var wants []dockerWant
	switch nv, nsv := f.val("network"), f.val("networks"); {
	case nv != nil && nsv != nil:
		d.errorf(f["networks"].key, "%s: give network: or networks:, not both", label)
	case nsv != nil && resolve(nsv).Kind == yaml.MappingNode:
		nps, _ := d.mapping(nsv, label+": networks")
		for _, np := range nps {
			nf, _ := d.fields(np.value, label+": networks: "+np.key.Value, "ip", "mac", "aliases")
			w := dockerWant{name: np.key.Value, node: np.key, ip: nf.val("ip"), mac: nf.val("mac")}
			if v := nf.val("aliases"); v != nil {
				w.aliases = d.names(v, label+": networks: "+np.key.Value+": aliases")
			}
			wants = append(wants, w)
		}
	case nsv != nil:
		items, _ := d.list(nsv, label+": networks")
		for _, item := range items {
			if s, ok := d.str(item, label+": networks"); ok {
				wants = append(wants, dockerWant{name: s, node: item})
			}
		}
		if len(items) == 0 {
			d.errorf(nsv, "%s: networks: want at least one network (or network: none)", label)
		}
	case nv != nil:
		if s, ok := d.str(nv, label+": network"); ok {
			wants = append(wants, dockerWant{name: s, node: nv})
		}
	default:
		wants = append(wants, dockerWant{name: DefaultBridgeNetwork, node: key})
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
	return wants
}

// dockerNoNetwork puts container c on Docker's network host or none (w), of
// the n it asks for, and reports the keys that have no meaning there.
func (d *decoder) dockerNoNetwork(c *dockerContainer, w dockerWant, n int, label string) {
	if n > 1 {
		d.errorf(w.node, "%s: network %s cannot be combined with other networks", label, w.name)
		return
	}
	c.mode = w.name
	for _, k := range []string{"ip", "mac", "aliases", "hostname"} {
		if fk, ok := c.f[k]; ok && (w.name == "host" || k != "hostname") {
			d.errorf(fk.key, "%s: %s: has no meaning with network: %s", label, k, w.name)
		}
	}
	if fk, ok := c.f["publish"]; ok {
		d.errorf(fk.key, "%s: publish: has no effect with network: %s (Docker ignores it); with network: host the container's ports are the host's", label, w.name)
	}
}

// dockerInternalPublish reports publish: on a container whose networks are
// all internal: Docker maps ports on the container's gateway network, and an
// internal network is none (nothing enters it), so it publishes nothing.
func (d *decoder) dockerInternalPublish(c *dockerContainer, label string) {
	fk, ok := c.f["publish"]
	if !ok || len(c.endpoints) == 0 || slices.ContainsFunc(c.endpoints, func(ep *dockerEndpoint) bool { return !ep.net.internal }) {
		return
	}
	d.errorf(fk.key, "%s: publish: has no effect on internal network %s (Docker publishes nothing: nothing enters an internal network); put the container on another network too", label, c.endpoints[0].net.name)
}

// dockerAttach connects container c to the network w names, as its i-th
// interface, with the address and MAC it asks for.
func (d *decoder) dockerAttach(c *dockerContainer, w dockerWant, i int, byName map[string]*dockerNet, label string) {
	n := byName[w.name]
	if n == nil {
		d.errorf(w.node, "%s: unknown network %q (declare it under networks:, or use bridge, host or none)", label, w.name)
		return
	}
	if slices.ContainsFunc(c.endpoints, func(o *dockerEndpoint) bool { return o.net == n }) {
		d.errorf(w.node, "%s: network %s is listed twice", label, w.name)
		return
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
