package reconcile

import (
	"net"

	"netlab/topology"
)

// Desired compiles a validated lab into the kernel objects it stands for. Everything
// the file leaves to the kernel (a MAC, an MTU) is left at zero, which Diff reads
// as "whatever the kernel chose".
func Desired(lab *topology.Lab) (*State, error) {
	if err := notYetSupported(lab); err != nil {
		return nil, err
	}
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

	for _, b := range lab.Bridges {
		k := LinkKey{kname(b.Namespace), b.Name}
		s.Links[k] = &Link{LinkKey: k, Kind: KindBridge, MTU: b.MTU, MAC: macString(b.MAC), Up: true}
		for _, a := range b.Addresses {
			s.Addrs[AddrKey{k, a.Prefix}] = true
		}
	}

	for _, l := range lab.Links {
		for i, end := range l.Ends {
			other := l.Ends[1-i]
			k := LinkKey{kname(end.Namespace), end.Interface}
			link := &Link{LinkKey: k, Kind: KindVeth, Peer: LinkKey{kname(other.Namespace), other.Interface}, Master: end.Bridge, Up: true}
			if ifc := findInterface(lab, end); ifc != nil {
				link.MTU, link.MAC = ifc.MTU, macString(ifc.MAC)
				for _, a := range ifc.Addresses {
					s.Addrs[AddrKey{k, a.Prefix}] = true
				}
			} else if ifc := findInterface(lab, other); ifc != nil && end.Bridge != "" {
				// A bridge port nobody configured follows its container end's MTU,
				// as a veth pair should.
				link.MTU = ifc.MTU
			}
			s.Links[k] = link
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
	return s, nil
}

func allNamespaces(lab *topology.Lab) []*topology.Namespace {
	return append([]*topology.Namespace{lab.Host}, lab.Namespaces...)
}

// findInterface returns the `interfaces:` entry of a plain link end, if any.
func findInterface(lab *topology.Lab, end *topology.End) *topology.Interface {
	if end.Bridge != "" {
		return nil
	}
	for _, ns := range allNamespaces(lab) {
		if ns.Name != end.Namespace {
			continue
		}
		for _, ifc := range ns.Interfaces {
			if ifc.Name == end.Interface {
				return ifc
			}
		}
	}
	return nil
}

// macString is the MAC as the kernel prints it (lower case), "" when the file leaves it to the kernel.
func macString(mac net.HardwareAddr) string {
	if mac == nil {
		return ""
	}
	return mac.String()
}

// notYetSupported refuses keys of the file format that this version parses but
// cannot build yet, rather than silently ignoring them.
func notYetSupported(lab *topology.Lab) error {
	var errs topology.Errors
	refuse := func(pos topology.Pos, what string) {
		errs = append(errs, &topology.Error{File: lab.File, Pos: pos, Msg: what + " is not implemented yet in this version of netlab"})
	}
	for _, ns := range allNamespaces(lab) {
		for _, c := range ns.Run {
			refuse(c.Pos, "run")
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}
