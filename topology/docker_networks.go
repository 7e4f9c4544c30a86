package topology

import (
	"net/netip"
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"
)

var dockerNetworkRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// dockerNetworks reads networks: after Docker's default network, and gives
// every network its subnet, gateway and first free address.
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
		n := def
		if name != DefaultBridgeNetwork {
			if !d.dockerNetworkName(e.key) {
				continue
			}
			n = &dockerNet{name: name, bridge: DockerBridgeName(lab, name), masq: true, isolated: true, user: true}
			nets = append(nets, n)
			byName[name] = n
		}
		n.key = e.key
		d.dockerNetworkFields(n, e.value)
	}
	d.dockerSubnets(nets)
	for _, n := range nets {
		if n.subnet.IsValid() && !n.gateway.IsValid() {
			n.gateway = n.subnet.Addr().Next()
		}
		n.taken = map[netip.Addr]bool{n.gateway: true}
		n.next = n.subnet.Addr().Next()
	}
	return nets, byName
}

// dockerNetworkName reports whether key names a network the lab may declare
// (other than the default bridge), and reports it when not.
func (d *decoder) dockerNetworkName(key *yaml.Node) bool {
	switch name := key.Value; {
	case name == "host" || name == "none":
		d.errorf(key, "network %q is Docker's own (a container without a namespace of its own, or with only lo); use network: %s in a container", name, name)
		return false
	case !dockerNetworkRE.MatchString(name):
		d.errorf(key, "invalid network name %q: want letters, digits, \"_\", \".\" or \"-\", starting with a letter or digit", name)
		return false
	}
	return true
}

// dockerNetworkFields reads the keys of network n's entry v.
func (d *decoder) dockerNetworkFields(n *dockerNet, v *yaml.Node) {
	label := "network " + n.name
	f, _ := d.fields(v, label, "subnet", "gateway", "internal", "icc", "masquerade", "isolated", "mtu")
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

// dockerSubnets reports subnets that overlap an earlier network's and gives
// the networks without one theirs.
func (d *decoder) dockerSubnets(nets []*dockerNet) {
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
}
