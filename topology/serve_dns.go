package topology

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Docker's embedded DNS server as a `serve:` entry of a namespace:
//
//	serve:
//	  - dns:
//	      names: {web: 172.18.0.2, db: [172.18.0.3, "fd00::3"]}
//	      forward: false      # true: other names go to the host's resolvers
//	      port: 53053         # optional: where 127.0.0.11:53 is translated to
//	      resolv-conf: true   # optional: write /etc/netns/NS/resolv.conf
//
// netlab runs its DNS server on 127.0.0.11:PORT in the namespace, and the
// namespace's table translates 127.0.0.11:53 to it, as dockerd does in each
// container on a user-defined network.

// ResolverAddr is the address the embedded DNS server answers at, Docker's.
var ResolverAddr = netip.MustParseAddr("127.0.0.11")

// DefaultDNSPort is the port on 127.0.0.11 the DNS server listens on when the
// entry gives none (dockerd takes a random one; a lab's stays the same).
const DefaultDNSPort = 53053

// DNSService is the `dns:` of a serve entry.
type DNSService struct {
	Names      []DNSName // sorted by lower-case name
	Forward    bool      // names it does not know go to the host's resolvers
	ResolvConf bool      // write /etc/netns/NS/resolv.conf: nameserver 127.0.0.11, options ndots:0
}

// DNSName is a name the server answers for, with its addresses (A and AAAA).
type DNSName struct {
	Pos   Pos
	Name  string // lower case, without a trailing dot
	Addrs []netip.Addr
}

// dnsEntry reads {dns: {names, forward, port, resolv-conf}} into svc.
func (d *decoder) dnsEntry(svc *Service, entry fields, v *yaml.Node, nsl string) *Service {
	label := nsl + ": serve: dns"
	for _, other := range []string{"http", "tcp-echo", "body"} {
		if p, ok := entry[other]; ok {
			d.errorf(p.key, "%s: %s does not go with dns", label, other)
			return nil
		}
	}
	if nsl == HostName {
		d.errorf(v, "%s: Docker's embedded DNS server belongs in a container's namespace, not in the host", label)
		return nil
	}
	f, ok := d.fields(v, label, "names", "forward", "port", "resolv-conf")
	if !ok {
		return nil
	}
	dns := &DNSService{}
	svc.Kind, svc.Port, svc.DNS = "dns", DefaultDNSPort, dns
	good := true
	if n := f.val("names"); n != nil {
		dns.Names, ok = d.dnsNames(n, label+": names")
		good = good && ok
	}
	if n := f.val("forward"); n != nil {
		dns.Forward, ok = d.boolean(n, label+": forward")
		good = good && ok
	}
	if n := f.val("resolv-conf"); n != nil {
		dns.ResolvConf, ok = d.boolean(n, label+": resolv-conf")
		good = good && ok
	}
	if n := f.val("port"); n != nil {
		port, ok := d.integer(n, label+": port", 1, 65535)
		switch {
		case !ok:
			good = false
		case port == 53:
			d.errorf(n, "%s: port: 53 is the port clients ask; the server listens on another one, which 127.0.0.11:53 is translated to", label)
			good = false
		default:
			svc.Port = uint16(port)
		}
	}
	if !good {
		return nil
	}
	return svc
}

// dnsNames reads {NAME: ADDR | [ADDR, ...], ...}.
func (d *decoder) dnsNames(n *yaml.Node, label string) ([]DNSName, bool) {
	ps, ok := d.mapping(n, label)
	if !ok {
		return nil, false
	}
	var out []DNSName
	good := true
	for _, p := range ps {
		name := strings.ToLower(strings.TrimSuffix(p.key.Value, "."))
		if err := checkDNSName(name); err != nil {
			d.errorf(p.key, "%s: %q: %v", label, p.key.Value, err)
			good = false
			continue
		}
		if i := slices.IndexFunc(out, func(o DNSName) bool { return o.Name == name }); i >= 0 {
			d.errorf(p.key, "%s: %q is the name of line %d (names are not case-sensitive)", label, p.key.Value, out[i].Pos.Line)
			good = false
			continue
		}
		e := DNSName{Pos: pos(p.key), Name: name}
		items := []*yaml.Node{p.value}
		if resolve(p.value).Kind == yaml.SequenceNode {
			items, _ = d.list(p.value, label+": "+name)
		}
		for _, item := range items {
			a, ok := value(d, item, label+": "+name, parseAddr)
			if !ok {
				good = false
				continue
			}
			if !slices.Contains(e.Addrs, a) {
				e.Addrs = append(e.Addrs, a)
			}
		}
		if len(e.Addrs) == 0 && len(items) == 0 {
			d.errorf(p.value, "%s: %s: want an address or a list of addresses", label, name)
			good = false
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b DNSName) int { return strings.Compare(a.Name, b.Name) })
	return out, good
}

// checkDNSName accepts a host name as Docker does for containers and aliases:
// labels of letters, digits, '-' and '_', separated by dots.
func checkDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("want a host name of 1 to 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("want dot-separated labels of 1 to 63 characters")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("a host name has letters, digits, '-', '_' and dots only")
			}
		}
	}
	return nil
}
