package reconcile

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"netlab/topology"
)

// Docker's userland proxy (`userland-proxy: true` on a bridge; dockerd's
// default): each published port of the bridge gets a proxy process, netlab's
// own (`netlab serve --proxy`), in the namespace that owns the bridge. It
// listens where docker-proxy does, on 0.0.0.0:PORT and [::]:PORT (or on the
// -p address given), and relays each connection to the container's address
// and port, connecting from the host as docker-proxy does: the container sees
// the bridge's own address (172.17.0.1) as the client.
//
// The NAT then follows Docker's proxy mode: the host's own connections to
// 127.0.0.0/8 (and ::1) are not translated in nat output (the proxy answers
// them), packets that come in by the bridge return before the published ports'
// DNAT (a container reaching a published port goes through the proxy), and
// there is no route_localnet, no masquerade of the host's own source addresses
// and no hairpin mode on the containers' bridge ports. Other machines reaching
// host:PORT are still translated in prerouting and keep their own address.

// ProxyServer is what a proxy process listens on and relays to.
type ProxyServer struct {
	Proto  string     // "tcp" or "udp"
	HostIP netip.Addr // invalid: every address, IPv4 and IPv6 (0.0.0.0 and [::])
	Target netip.AddrPort
}

// Listen is where the proxy listens, as `-p` writes it: "8000/tcp",
// "127.0.0.1:8000/tcp", "[::1]:8000/udp"; port is the host port.
func (p *ProxyServer) Listen(port int) string {
	s := strconv.Itoa(port)
	if p.HostIP.IsValid() {
		s = netip.AddrPortFrom(p.HostIP, uint16(port)).String()
	}
	return s + "/" + p.Proto
}

// proxyArgs: serve --proxy [IP:]PORT/PROTO --to ADDR:PORT.
func (s *Service) proxyArgs() []string {
	return []string{"serve", "--proxy", s.Proxy.Listen(s.Port), "--to", s.Proxy.Target.String()}
}

// ParseProxyListen reads [IP:]PORT/PROTO.
func ParseProxyListen(s string) (hostIP netip.Addr, port int, proto string, err error) {
	where, proto, ok := strings.Cut(s, "/")
	if !ok || (proto != "tcp" && proto != "udp") {
		return netip.Addr{}, 0, "", fmt.Errorf("proxy %q: want [IP:]PORT/tcp or [IP:]PORT/udp", s)
	}
	if ap, err := netip.ParseAddrPort(where); err == nil {
		if ap.Port() == 0 {
			return netip.Addr{}, 0, "", fmt.Errorf("proxy %q: port 0", s)
		}
		return ap.Addr(), int(ap.Port()), proto, nil
	}
	p, err := strconv.Atoi(where)
	if err != nil || p < 1 || p > 65535 {
		return netip.Addr{}, 0, "", fmt.Errorf("proxy %q: want [IP:]PORT/PROTO", s)
	}
	return netip.Addr{}, p, proto, nil
}

func proxyFromArgs(args []string, bad error) (*Service, error) {
	if len(args) != 5 || args[3] != "--to" {
		return nil, bad
	}
	ip, port, proto, err := ParseProxyListen(args[2])
	if err != nil {
		return nil, err
	}
	to, err := netip.ParseAddrPort(args[4])
	if err != nil || to.Port() == 0 {
		return nil, bad
	}
	return &Service{Kind: "proxy", Port: port, Proxy: &ProxyServer{Proto: proto, HostIP: ip, Target: to}}, nil
}

// proxyReturns writes, in nat prerouting before every published port's DNAT,
// Docker's `-i BR -j RETURN` for each proxied bridge: what comes in by the
// bridge reaches the host's ports, where the proxy listens.
func (c *rulesCompiler) proxyReturns(pubs []published) {
	for _, b := range c.lab.Bridges {
		if b.UserlandProxy && !b.Internal && nativeFirewall(b) && dockerBridge(b, pubs) {
			c.add(b.Namespace, "nat-prerouting", &Rule{Match: []Match{IIFName{Name: b.Name}}, Verdict: VerdictReturn,
				Comment: b.Name + ": containers reach published ports through the userland proxy"})
		}
	}
}

// notLoopback is the match that keeps the host's connections to loopback
// addresses away from a published port's DNAT in nat output: the proxy answers
// them (Docker's `! -d 127.0.0.0/8`).
func notLoopback(to netip.Addr) Match {
	if to.Is6() {
		return AddrMatch{Dir: Dst, Prefix: netip.PrefixFrom(netip.IPv6Loopback(), 128), Neg: true}
	}
	return AddrMatch{Dir: Dst, Prefix: netip.MustParsePrefix("127.0.0.0/8"), Neg: true}
}

// proxyProcesses gives each published port of a proxied bridge its proxy
// process, in the bridge's namespace.
func (c *rulesCompiler) proxyProcesses() {
	for _, ns := range c.lab.Namespaces {
		end := bridgedEnd(ns)
		if end == nil || end.Config == nil || !end.Peer.OnBridge.UserlandProxy {
			continue
		}
		b, ifc := end.Peer.OnBridge, end.Config
		var v4, v6 netip.Addr
		for _, a := range ifc.Addresses {
			switch addr := a.Prefix.Addr(); {
			case addr.Is4() && !v4.IsValid():
				v4 = addr
			case addr.Is6() && !v6.IsValid():
				v6 = addr
			}
		}
		for _, p := range ns.Publish {
			to := proxyTarget(p, v4, v6)
			if !to.IsValid() {
				continue
			}
			svc := &Service{Kind: "proxy", Port: int(p.HostPort),
				Proxy: &ProxyServer{Proto: p.Proto, HostIP: p.HostIP, Target: netip.AddrPortFrom(to, p.Port)}}
			k := ProcKey{c.lab.KernelName(b.Namespace), svc.CommandLine()}
			c.s.Processes[k] = &Process{ProcKey: k, Serve: svc,
				Ready: &Ready{Kind: p.Proto, Port: int(p.HostPort), Timeout: topology.DefaultReadyTimeout}}
		}
	}
}

// proxyTarget is the container address a proxy relays to: of the family of
// the -p address, else IPv4 (docker-proxy on [::] relays to the container's
// IPv4 address on a network without IPv6), else IPv6.
func proxyTarget(p *topology.Publish, v4, v6 netip.Addr) netip.Addr {
	if p.HostIP.Is6() && v6.IsValid() {
		return v6
	}
	if v4.IsValid() {
		return v4
	}
	return v6
}

// outputDNAT is a published port's DNAT for the host's own connections (nat
// output): the prerouting rule, except that with the userland proxy the
// host's connections to loopback addresses are left to the proxy.
func (c *rulesCompiler) outputDNAT(b *topology.Bridge, dnat *Rule, to netip.Addr) *Rule {
	if !b.UserlandProxy {
		return dnat
	}
	out := *dnat
	out.Match = append([]Match{notLoopback(to)}, dnat.Match...)
	return &out
}
