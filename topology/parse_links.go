package topology

// The `bridges:` and `links:` sections.

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

func (d *decoder) bridges(n *yaml.Node) []*Bridge {
	ps, ok := d.mapping(n, "bridges")
	if !ok {
		d.notes.badSections["bridges"] = true
	}
	var out []*Bridge
	for _, p := range ps {
		b := &Bridge{Pos: pos(p.key), Name: p.key.Value, Namespace: HostName}
		out = append(out, b)
		label := "bridge " + b.Name
		if err := checkIfname(b.Name); err != nil {
			d.errorf(p.key, "bridge %q: %v", b.Name, err)
		}
		f, _ := d.fields(p.value, label, "namespace", "addresses", "mtu", "mac", "multicast-snooping", "masquerade", "icc", "isolated", "internal", "resolve", "userland-proxy", "firewall", "docker-version")
		if v := f.val("namespace"); v != nil {
			if s, ok := d.str(v, label+": namespace"); ok {
				b.Namespace = s
			}
		}
		if v := f.val("addresses"); v != nil {
			var ok bool
			if b.Addresses, ok = d.addresses(v, label); !ok {
				d.notes.badAddrs[label] = true
			}
		}
		if v := f.val("mtu"); v != nil {
			mtu, _ := d.integer(v, label+": mtu", 68, 65535)
			b.MTU = int(mtu)
		}
		if v := f.val("mac"); v != nil {
			b.MAC, _ = value(d, v, label, parseMAC)
		}
		if v := f.val("multicast-snooping"); v != nil {
			if on, ok := d.boolean(v, label+": multicast-snooping"); ok {
				b.SnoopingOff = !on
			}
		}
		if v := f.val("masquerade"); v != nil {
			b.Masquerade, _ = d.boolean(v, label+": masquerade")
			if b.Masquerade && len(b.Addresses) == 0 && !d.notes.badAddrs[label] {
				d.errorf(v, "%s: masquerade needs an address on the bridge (its subnet is what gets masqueraded)", label)
			}
		}
		if v := f.val("icc"); v != nil {
			if icc, ok := d.boolean(v, label+": icc"); ok {
				b.ICC = &icc
			}
		}
		if v := f.val("isolated"); v != nil {
			b.Isolated, _ = d.boolean(v, label+": isolated")
		}
		if v := f.val("internal"); v != nil {
			b.Internal, _ = d.boolean(v, label+": internal")
			if b.Internal && b.Masquerade {
				d.errorf(v, "%s: internal and masquerade: an internal bridge's traffic does not leave it, so there is nothing to masquerade; drop one of them", label)
			}
		}
		if v := f.val("resolve"); v != nil {
			b.Resolve, _ = d.boolean(v, label+": resolve")
		}
		if v := f.val("userland-proxy"); v != nil {
			b.UserlandProxy, _ = d.boolean(v, label+": userland-proxy")
		}
		if v := f.val("firewall"); v != nil {
			if s, ok := d.oneOf(v, label+": firewall", "native", "iptables", "nftables"); ok {
				b.Iptables, b.Nftables = s == "iptables", s == "nftables"
			}
		}
		if v := f.val("docker-version"); v != nil {
			if s, ok := d.oneOf(v, label+": docker-version", DockerVersions...); ok {
				b.DockerVersion = s
			}
		}
	}
	return out
}

func (d *decoder) links(n *yaml.Node) []*Link {
	items, ok := d.list(n, "links")
	if !ok {
		d.notes.badSections["links"] = true
		d.notes.badLinks = true
	}
	var out []*Link
	for _, item := range items {
		if item.Kind == yaml.MappingNode { // the map form (links_map.go)
			if l := d.linkMap(item); l != nil {
				out = append(out, l)
			} else {
				d.notes.badLinks = true
			}
			continue
		}
		if item.Kind != yaml.SequenceNode || len(item.Content) != 2 {
			got := describe(item)
			if item.Kind == yaml.SequenceNode {
				got = fmt.Sprintf("a list of %d", len(item.Content))
			}
			d.errorf(item, "link: want two ends [END, END], such as [web:eth0, docker0], or a mapping {ends: [END, END], rate: ...}, got %s", got)
			d.notes.badLinks = true
			continue
		}
		l := &Link{Pos: pos(item)}
		good := d.linkEnds(l, item) // a list of two, checked above
		if !good {
			d.notes.badLinks = true
			continue
		}
		out = append(out, l)
	}
	return out
}
