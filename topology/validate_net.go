package topology

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// How the lab's networks fit together: addresses unique per namespace and per
// network (devices joined by links and bridges), bridge subnets apart, and
// routes whose gateway a device reaches (which also resolves a route's Dev).

// addresses checks that an address is used once per namespace and once per
// network (devices joined by veth pairs and bridges), and that the bridges of a
// namespace have subnets apart: the host could not route to two at once.
func (v *validator) addresses() {
	// Union-find over devices: a network is a set of devices joined by links and bridges.
	parent := map[string]string{}
	var find func(string) string
	find = func(k string) string {
		if p, ok := parent[k]; ok && p != k {
			root := find(p)
			parent[k] = root
			return root
		}
		return k
	}
	union := func(a, b string) { parent[find(a)] = find(b) }
	key := func(ns, dev string) string { return ns + "\x00" + dev }
	for _, l := range v.lab.Links {
		a, b := l.Ends[0], l.Ends[1]
		if a.Namespace == "" || b.Namespace == "" {
			continue // unresolved
		}
		union(key(a.Namespace, a.Interface), key(b.Namespace, b.Interface))
		for _, e := range l.Ends {
			if e.Bridge != "" {
				union(key(e.Namespace, e.Interface), key(e.Namespace, e.Bridge))
			}
		}
	}

	type use struct {
		ns   string
		dv   *device
		addr Address
	}
	var uses []use
	for ns, devs := range v.devices {
		for _, dv := range devs {
			for _, a := range dv.addresses() {
				uses = append(uses, use{ns, dv, a})
			}
		}
	}
	// File order; an address reused through a YAML alias has one position for
	// several devices, so names break the tie.
	slices.SortFunc(uses, func(a, b use) int {
		return cmp.Or(cmpPos(a.addr.Pos, b.addr.Pos), cmp.Compare(a.ns, b.ns), cmp.Compare(a.dv.name, b.dv.name))
	})
	inNS := map[string]map[netip.Addr]use{}
	inNet := map[string]map[netip.Addr]use{}
	for _, u := range uses {
		addr := u.addr.Prefix.Addr()
		network := find(key(u.ns, u.dv.name))
		if inNS[u.ns] == nil {
			inNS[u.ns] = map[netip.Addr]use{}
		}
		if inNet[network] == nil {
			inNet[network] = map[netip.Addr]use{}
		}
		if old, dup := inNS[u.ns][addr]; dup && old.dv != u.dv {
			v.errorAt(u.addr.Pos, "%s: address %s is already used by %s in the same namespace", ifaceLabel(u.ns, u.dv), addr, old.dv.label(old.ns))
		} else if old, dup := inNet[network][addr]; dup && old.dv != u.dv {
			v.errorAt(u.addr.Pos, "%s: address %s is already used by %s on the same network", ifaceLabel(u.ns, u.dv), addr, old.dv.label(old.ns))
		}
		// The first user of an address stays its owner in messages.
		if _, ok := inNS[u.ns][addr]; !ok {
			inNS[u.ns][addr] = u
		}
		if _, ok := inNet[network][addr]; !ok {
			inNet[network][addr] = u
		}
	}
	v.bridgeSubnets()
}

// bridgeSubnets checks that the bridges of a namespace have subnets apart.
func (v *validator) bridgeSubnets() {
	for i, b := range v.lab.Bridges {
		for _, a := range b.Addresses {
			for _, earlier := range v.lab.Bridges[:i] {
				if earlier.Namespace != b.Namespace {
					continue
				}
				if j := slices.IndexFunc(earlier.Addresses, func(e Address) bool { return e.Prefix.Masked().Overlaps(a.Prefix.Masked()) }); j >= 0 {
					v.errorAt(a.Pos, "bridge %s: subnet %s overlaps subnet %s of bridge %s in %s", b.Name, a.Prefix.Masked(), earlier.Addresses[j].Prefix.Masked(), earlier.Name, nsLabel(b.Namespace))
					break
				}
			}
		}
	}
}

// ifaceLabel names a device as the subject of a message: "interface web:eth0" or "bridge docker0".
func ifaceLabel(ns string, dv *device) string {
	if dv.bridge != nil {
		return "bridge " + dv.bridge.Name
	}
	return "interface " + ns + ":" + dv.name
}

func cmpPos(a, b Pos) int {
	return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
}

// routes checks each route's device and gateway, and resolves Dev from the gateway
// when the file does not give it: the device whose subnet holds the gateway,
// first in file order, as the kernel itself would pick.
func (v *validator) routes() {
	for _, ns := range v.allNamespaces() {
		devs := v.devices[ns.Name]
		if devs == nil {
			continue
		}
		// Devices with addresses, in the order their first address is written.
		var withAddrs []*device
		for _, dv := range devs {
			if len(dv.addresses()) > 0 {
				withAddrs = append(withAddrs, dv)
			}
		}
		slices.SortFunc(withAddrs, func(a, b *device) int {
			return cmp.Or(cmpPos(a.addresses()[0].Pos, b.addresses()[0].Pos), cmp.Compare(a.name, b.name))
		})
		unsure := v.notes.badAddrs[ns.Name]
		for _, b := range v.lab.Bridges {
			unsure = unsure || (b.Namespace == ns.Name && v.notes.badAddrs["bridge "+b.Name])
		}

		type routeKey struct {
			to     netip.Prefix
			metric int
		}
		seen := map[routeKey]*Route{}
		for _, r := range ns.Routes {
			label := fmt.Sprintf("route %q in %s", routeText(r), nsLabel(ns.Name))
			k := routeKey{r.To, r.Metric}
			if r.To.Addr().Is6() && k.metric == 0 {
				k.metric = 1024 // the kernel's default metric for IPv6 routes
			}
			if old := seen[k]; old != nil {
				v.errorAt(r.Pos, "%s: same destination and metric as the route at line %d", label, old.Pos.Line)
				continue
			}
			seen[k] = r

			var dev *device
			if r.Dev != "" {
				if dev = devs[r.Dev]; dev == nil {
					v.errorAt(r.Pos, "%s: unknown device %q (%s)", label, r.Dev, v.deviceList(ns.Name))
					continue
				}
			}
			if !r.Via.IsValid() {
				continue
			}
			if r.Via.Is6() && r.Via.IsLinkLocalUnicast() {
				// fe80::/64 is on every link: only the device says which.
				if dev == nil {
					v.errorAt(r.Pos, "%s: a link-local gateway needs dev", label)
				}
				continue
			}
			if owner := ownerOf(withAddrs, r.Via, false); owner != nil {
				v.errorAt(r.Pos, "%s: gateway %s is an address of %s itself", label, r.Via, owner.label(ns.Name))
				continue
			}
			if dev != nil {
				if len(dev.addresses()) > 0 && ownerOf([]*device{dev}, r.Via, true) == nil && !unsure {
					v.errorAt(r.Pos, "%s: gateway %s is outside the subnets of %s (%s)", label, r.Via, r.Dev, subnets([]*device{dev}))
				}
				continue
			}
			if owner := ownerOf(withAddrs, r.Via, true); owner != nil {
				r.Dev = owner.name
				continue
			}
			switch {
			case unsure:
			case len(withAddrs) == 0:
				v.errorAt(r.Pos, "%s: gateway %s is unreachable: %s has no addresses", label, r.Via, nsLabel(ns.Name))
			default:
				v.errorAt(r.Pos, "%s: gateway %s is outside every subnet of %s (%s)", label, r.Via, nsLabel(ns.Name), subnets(withAddrs))
			}
		}
	}
}

// ownerOf returns the first device with an address equal to a (inSubnet false) or
// with a subnet holding a (inSubnet true).
func ownerOf(devs []*device, a netip.Addr, inSubnet bool) *device {
	for _, dv := range devs {
		for _, addr := range dv.addresses() {
			if inSubnet && addr.Prefix.Masked().Contains(a) || !inSubnet && addr.Prefix.Addr() == a {
				return dv
			}
		}
	}
	return nil
}

// subnets lists the subnets of devices, for messages.
func subnets(devs []*device) string {
	var out []string
	for _, dv := range devs {
		for _, a := range dv.addresses() {
			if s := a.Prefix.Masked().String(); !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return strings.Join(out, ", ")
}

// deviceList lists the devices of a namespace, for "unknown device" messages.
func (v *validator) deviceList(ns string) string {
	names := make([]string, 0, len(v.devices[ns]))
	for name, dv := range v.devices[ns] {
		if name == "lo" && dv.iface == nil {
			continue // every namespace's; named when the file configures it
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nsLabel(ns) + " has no interfaces"
	}
	slices.Sort(names)
	return "devices in " + ns + ": " + strings.Join(names, ", ")
}
