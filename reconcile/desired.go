package reconcile

import (
	"cmp"
	"net"
	"slices"
	"strings"

	"netlab/topology"
)

// Desired compiles a validated lab into the kernel objects it stands for. Everything
// the file leaves to the kernel (a MAC, an MTU) is left at zero, which Diff reads
// as "whatever the kernel chose".
func Desired(lab *topology.Lab) (*State, error) {
	s := NewState(lab.Name)
	kname := func(ns string) string {
		if ns == topology.HostName {
			return Host
		}
		return lab.KernelName(ns)
	}

	for _, ns := range lab.Namespaces {
		s.Namespaces[kname(ns.Name)] = &Netns{Name: kname(ns.Name), LoUp: true}
	}
	defer func() { // once the addresses are known: IPv6 is on where the lab uses it
		for k := range s.Addrs {
			if n := s.Namespaces[k.NS]; n != nil && k.Prefix.Addr().Is6() {
				n.IPv6 = true
			}
		}
	}()

	for _, b := range lab.Bridges {
		k := InterfaceKey{kname(b.Namespace), b.Name}
		s.Interfaces[k] = &Interface{InterfaceKey: k, Kind: KindBridge, MTU: b.MTU, MAC: macString(b.MAC), Up: true}
		for _, a := range b.Addresses {
			s.Addrs[AddrKey{k, a.Prefix}] = true
		}
	}

	// A bridge with an MTU gives it to the veths on it, both ends (as Docker does
	// with a network's MTU): the kernel keeps a bridge at most at its smallest
	// port's MTU, so a bridge of 1400 with ports of 1500 would never settle.
	bridgeMTU := map[string]int{}
	for _, b := range lab.Bridges {
		bridgeMTU[b.Name] = b.MTU
	}
	findInterface := interfaceFinder(lab)
	for _, l := range lab.Links {
		for i, end := range l.Ends {
			other := l.Ends[1-i]
			k := InterfaceKey{kname(end.Namespace), end.Interface}
			link := &Interface{InterfaceKey: k, Kind: KindVeth, Peer: InterfaceKey{kname(other.Namespace), other.Interface}, Master: end.Bridge, Up: !l.Down}
			if ifc := findInterface(end); ifc != nil {
				link.MTU, link.MAC = ifc.MTU, macString(ifc.MAC)
				for _, a := range ifc.Addresses {
					s.Addrs[AddrKey{k, a.Prefix}] = true
				}
			}
			switch {
			case end.Bridge != "" && bridgeMTU[end.Bridge] != 0:
				link.MTU = bridgeMTU[end.Bridge]
			case link.MTU != 0:
				// The end's own `mtu:`.
			case l.MTU != 0:
				link.MTU = l.MTU // the link's, in map form (validated against the above)
			case other.Bridge != "" && bridgeMTU[other.Bridge] != 0:
				link.MTU = bridgeMTU[other.Bridge]
			case end.Bridge != "":
				// A bridge port nobody configured follows its container end's MTU,
				// as a veth pair should.
				if ifc := findInterface(other); ifc != nil {
					link.MTU = ifc.MTU
				}
			}
			s.Interfaces[k] = link
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
	compileRules(lab, s, kname)

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
	hostsFiles(lab, s, kname)
	return s, nil
}

func allNamespaces(lab *topology.Lab) []*topology.Namespace {
	return append([]*topology.Namespace{lab.Host}, lab.Namespaces...)
}

// interfaceFinder returns a function that finds the `interfaces:` entry of a
// plain link end, if any. It indexes the namespaces once: a lab of a thousand
// namespaces has two thousand link ends to look up.
func interfaceFinder(lab *topology.Lab) func(end *topology.End) *topology.Interface {
	byName := map[string]*topology.Namespace{}
	for _, ns := range allNamespaces(lab) {
		byName[ns.Name] = ns
	}
	return func(end *topology.End) *topology.Interface {
		ns := byName[end.Namespace]
		if end.Bridge != "" || ns == nil {
			return nil
		}
		for _, ifc := range ns.Interfaces {
			if ifc.Name == end.Interface {
				return ifc
			}
		}
		return nil
	}
}

// macString is the MAC as the kernel prints it (lower case), "" when the file leaves it to the kernel.
func macString(mac net.HardwareAddr) string {
	if mac == nil {
		return ""
	}
	return mac.String()
}

// hostsFiles gives every namespace linked to a resolving bridge an /etc/hosts of
// its own: localhost, and the name and address of each namespace on the same
// resolving bridges (itself included), as Docker does on a user-defined network.
func hostsFiles(lab *topology.Lab, s *State, kname func(string) string) {
	type entry struct{ addr, name string }
	members := map[string][]entry{} // bridge -> namespaces on it, in file order
	findInterface := interfaceFinder(lab)
	var bridges []string
	for _, b := range lab.Bridges {
		if !b.Resolve {
			continue
		}
		bridges = append(bridges, b.Name)
		for _, l := range lab.Links {
			for i, end := range l.Ends {
				other := l.Ends[1-i]
				if other.Bridge != b.Name || end.Bridge != "" || end.Namespace == topology.HostName {
					continue
				}
				if ifc := findInterface(end); ifc != nil {
					for _, a := range ifc.Addresses {
						members[b.Name] = append(members[b.Name], entry{a.Prefix.Addr().String(), end.Namespace})
					}
				}
			}
		}
	}
	files := map[string][]entry{} // namespace -> its entries
	for _, b := range bridges {
		for _, m := range members[b] {
			for _, e := range members[b] {
				if !slices.Contains(files[m.name], e) {
					files[m.name] = append(files[m.name], e)
				}
			}
		}
	}
	for ns, entries := range files {
		var b strings.Builder
		b.WriteString(FileMarker(lab.Name) + "\n")
		b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
		for _, e := range entries {
			b.WriteString(e.addr + "\t" + e.name + "\n")
		}
		s.Files[FileKey{NS: kname(ns), Name: "hosts"}] = b.String()
	}
}
