package reconcile

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"netlab/topology"
)

// Docker's embedded DNS server, a `serve: [{dns: ...}]` entry of a namespace:
// netlab's own DNS server (`netlab serve --dns PORT`) listening on
// 127.0.0.11:PORT, UDP and TCP, inside the namespace, and the rules dockerd
// writes in each container on a user-defined network (libnetwork's resolver):
// what the namespace sends to 127.0.0.11:53 is translated to the server's port,
// and what the server sends from its port goes out as from port 53.

// DNSServer is what the embedded DNS server answers.
type DNSServer struct {
	Names   []DNSName // sorted by name, then address
	Forward bool      // other names go to the host's resolvers
}

// DNSName is one name and one of its addresses (an A or AAAA record).
type DNSName struct {
	Name string // lower case, no trailing dot
	Addr netip.Addr
}

func (n DNSName) compare(o DNSName) int {
	return cmp.Or(strings.Compare(n.Name, o.Name), n.Addr.Compare(o.Addr))
}

// dnsArgs: serve --dns PORT [--name NAME=ADDR]... [--forward].
func (s *Service) dnsArgs() []string {
	args := []string{"serve", "--dns", fmt.Sprint(s.Port)}
	for _, n := range s.DNS.Names {
		args = append(args, "--name", n.Name+"="+n.Addr.String())
	}
	if s.DNS.Forward {
		args = append(args, "--forward")
	}
	return args
}

func dnsFromArgs(args []string, bad error) (*Service, error) {
	s := &Service{Kind: "dns", DNS: &DNSServer{}}
	if _, err := fmt.Sscan(args[2], &s.Port); err != nil {
		return nil, bad
	}
	for i := 3; i < len(args); i++ {
		switch {
		case args[i] == "--forward":
			s.DNS.Forward = true
		case args[i] == "--name" && i+1 < len(args):
			name, addr, ok := strings.Cut(args[i+1], "=")
			a, err := netip.ParseAddr(addr)
			if !ok || err != nil || name == "" {
				return nil, bad
			}
			s.DNS.Names = append(s.DNS.Names, DNSName{Name: strings.ToLower(strings.TrimSuffix(name, ".")), Addr: a})
			i++
		default:
			return nil, bad
		}
	}
	slices.SortFunc(s.DNS.Names, DNSName.compare)
	s.DNS.Names = slices.Compact(s.DNS.Names)
	return s, nil
}

// serviceOf is the service a `serve:` entry runs.
func serviceOf(svc *topology.Service) *Service {
	s := &Service{Kind: svc.Kind, Port: int(svc.Port), Body: svc.Body}
	if svc.DNS != nil {
		s.DNS = &DNSServer{Forward: svc.DNS.Forward}
		for _, n := range svc.DNS.Names {
			for _, a := range n.Addrs {
				s.DNS.Names = append(s.DNS.Names, DNSName{Name: n.Name, Addr: a})
			}
		}
		slices.SortFunc(s.DNS.Names, DNSName.compare)
	}
	return s
}

// DNSPort is the port clients ask the embedded DNS server at, on 127.0.0.11.
const DNSPort = 53

// dnsRules writes, in each namespace that serves dns, dockerd's translation
// of 127.0.0.11:53 to the server's port (nat output) and back (nat
// postrouting), for UDP and TCP; and the namespace's resolv.conf when the
// entry asks for it.
func (c *rulesCompiler) dnsRules() {
	resolver := topology.ResolverAddr
	for _, ns := range c.lab.Namespaces {
		for _, svc := range ns.Serve {
			if svc.DNS == nil {
				continue
			}
			for _, proto := range []string{"udp", "tcp"} {
				comment := fmt.Sprintf("%s: dns: %s %s:%d to the embedded DNS server", ns.Name, proto, resolver, DNSPort)
				c.add(ns.Name, "nat-output", &Rule{
					Match:   []Match{addrMatch(Dst, resolver), portMatch(proto, Dst, uint16Range(DNSPort))},
					Verdict: VerdictDNAT, NAT: natTarget(resolver, uint16Range(svc.Port)), Comment: comment})
				c.add(ns.Name, "nat-postrouting", &Rule{
					Match:   []Match{addrMatch(Src, resolver), portMatch(proto, Src, uint16Range(svc.Port))},
					Verdict: VerdictSNAT, NAT: natTarget(resolver, uint16Range(DNSPort)),
					Comment: fmt.Sprintf("%s: dns: %s answers from %s:%d", ns.Name, proto, resolver, DNSPort)})
			}
			if svc.DNS.ResolvConf {
				c.s.Files[FileKey{NS: c.lab.KernelName(ns.Name), Name: "resolv.conf"}] = ResolvConf(c.lab.Name)
			}
		}
	}
}

// ResolvConf is the resolv.conf of a namespace with the embedded DNS server,
// as Docker writes a container's on a user-defined network (without the host's
// search line, which a lab does not know).
func ResolvConf(lab string) string {
	return FileMarker(lab) + "\nnameserver " + topology.ResolverAddr.String() + "\noptions ndots:0\n"
}
