package reconcile

import (
	"cmp"
	"net"
	"strings"

	"netlab/topology"
)

// ipv6Where turns IPv6 on in the namespaces where the lab has an IPv6 address
// or route; it stays off in the others. An IPv6 route without an IPv6 address
// (through lo, say) needs it on too: the kernel refuses one through an
// interface where it is off, and observation reads no IPv6 routes where it is
// off on every interface.
func ipv6Where(s *State) {
	for k := range s.Addrs {
		if n := s.Namespaces[k.NS]; n != nil && k.Prefix.Addr().Is6() {
			n.IPv6 = true
		}
	}
	for k := range s.Routes {
		if n := s.Namespaces[k.NS]; n != nil && k.To.Addr().Is6() {
			n.IPv6 = true
		}
	}
}

// Desired compiles a validated lab into the kernel objects it stands for. Everything
// the file leaves to the kernel (a MAC, an MTU) is left at zero, which Diff reads
// as "whatever the kernel chose". It reads what validation resolved (each link
// end's interface, peer and bridge; lab.KernelName for every namespace's name)
// and searches the lab for nothing. What the machine gives (the host's
// resolvers) is env's (see Desired for none).
func DesiredOn(lab *topology.Lab, env Env) (*State, error) {
	s := NewState(lab.Name)
	kname := lab.KernelName

	for _, ns := range lab.Namespaces {
		s.Namespaces[kname(ns.Name)] = &Netns{Name: kname(ns.Name), LoUp: true}
	}
	defer ipv6Where(s) // once addresses and routes are known

	for _, b := range lab.Bridges {
		k := InterfaceKey{kname(b.Namespace), b.Name}
		s.Interfaces[k] = &Interface{InterfaceKey: k, Kind: KindBridge, MTU: b.MTU, MAC: macString(b.MAC), Up: true, SnoopingOff: b.SnoopingOff}
		for _, a := range b.Addresses {
			s.Addrs[AddrKey{k, a.Prefix}] = true
		}
	}

	for _, l := range lab.Links {
		for _, end := range l.Ends {
			veth(s, lab, end)
		}
	}

	for _, ns := range allNamespaces(lab) {
		for _, r := range ns.Routes {
			metric := r.Metric
			if metric == 0 && r.To.Addr().Is6() {
				metric = 1024 // the kernel's default for IPv6; observed routes show it
			}
			k := RouteKey{kname(ns.Name), r.To, metric}
			s.Routes[k] = &Route{RouteKey: k, Via: r.Via, Dev: r.Dev}
		}
		for _, sc := range ns.Sysctls {
			s.Sysctls[SysctlKey{kname(ns.Name), SysctlPath(sc.Key)}] = sc.Value
		}
	}
	compileRules(lab, s)

	for _, ns := range allNamespaces(lab) {
		for _, c := range ns.Run {
			k := ProcKey{kname(ns.Name), c.Line}
			p := &Process{ProcKey: k}
			if c.Ready != nil {
				p.Ready = &Ready{Kind: c.Ready.Kind, Port: int(c.Ready.Port), URL: c.Ready.URL, Path: c.Ready.Path,
					Timeout: cmp.Or(c.Timeout, topology.DefaultReadyTimeout)}
			}
			s.Processes[k] = p
		}
		for _, svc := range ns.Serve {
			service := serviceOf(svc)
			k := ProcKey{kname(ns.Name), service.CommandLine()}
			// A service is ready once its port listens.
			ready := &Ready{Kind: "tcp", Port: int(svc.Port), Timeout: topology.DefaultReadyTimeout}
			s.Processes[k] = &Process{ProcKey: k, Serve: service, Ready: ready}
		}
		if len(ns.Exec) > 0 {
			lines := make([]string, len(ns.Exec))
			for i, e := range ns.Exec {
				lines[i] = e.Line
			}
			s.Execs[kname(ns.Name)] = ExecList(lines)
		}
	}
	compileShaping(lab, s, kname)   // qdisc.go
	compileLoopbacks(lab, s, kname) // loopback.go
	hostsFiles(lab, s)
	containerFiles(lab, s, env)
	return s, nil
}

// veth adds one end of a link: the interface, its peer, its bridge, its own
// `interfaces:` entry's MTU, MAC and addresses.
//
// A bridge with an MTU gives it to the veths on it, both ends (as Docker does
// with a network's MTU): the kernel keeps a bridge at most at its smallest
// port's MTU, so a bridge of 1400 with ports of 1500 would never settle.
func veth(s *State, lab *topology.Lab, end *topology.End) {
	other := end.Peer
	k := InterfaceKey{lab.KernelName(end.Namespace), end.Interface}
	ifc := &Interface{InterfaceKey: k, Kind: KindVeth, Peer: InterfaceKey{lab.KernelName(other.Namespace), other.Interface}, Master: end.Bridge, Up: true}
	if c := end.Config; c != nil {
		ifc.MTU, ifc.MAC = c.MTU, macString(c.MAC)
		for _, a := range c.Addresses {
			s.Addrs[AddrKey{k, a.Prefix}] = true
		}
	}
	switch {
	case end.OnBridge != nil && end.OnBridge.MTU != 0:
		ifc.MTU = end.OnBridge.MTU
	case ifc.MTU != 0:
		// The end's own `mtu:`.
	case other.OnBridge != nil && other.OnBridge.MTU != 0:
		ifc.MTU = other.OnBridge.MTU
	case end.OnBridge != nil && other.Config != nil:
		// A bridge port nobody configured follows its container end's MTU,
		// as a veth pair should.
		ifc.MTU = other.Config.MTU
	}
	s.Interfaces[k] = ifc
}

func allNamespaces(lab *topology.Lab) []*topology.Namespace {
	return append([]*topology.Namespace{lab.Host}, lab.Namespaces...)
}

// macString is the MAC as the kernel prints it (lower case), "" when the file leaves it to the kernel.
func macString(mac net.HardwareAddr) string {
	if mac == nil {
		return ""
	}
	return mac.String()
}

// hostsFiles writes the /etc/hosts validation resolved for each namespace on a
// resolving bridge (topology.Namespace.Hosts).
func hostsFiles(lab *topology.Lab, s *State) {
	for _, ns := range lab.Namespaces {
		if len(ns.Hosts) == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString(FileMarker(lab.Name) + "\n")
		for _, e := range ns.Hosts {
			b.WriteString(e.Addr.String() + "\t" + strings.Join(e.Names, " ") + "\n")
		}
		s.Files[FileKey{NS: lab.KernelName(ns.Name), Name: "hosts"}] = b.String()
	}
}
