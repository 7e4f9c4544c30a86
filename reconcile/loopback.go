package reconcile

import "netlab/topology"

// compileLoopbacks adds the addresses the file puts on lo of the lab's
// namespaces (a router id, an anycast address). lo is no link of the lab's:
// it exists with its namespace, and netlab owns only what the file adds to it
// (127.0.0.1/8 and ::1 are the kernel's).
func compileLoopbacks(lab *topology.Lab, s *State, kname func(string) string) {
	for _, ns := range lab.Namespaces {
		for _, ifc := range ns.Interfaces {
			if ifc.Name != "lo" {
				continue
			}
			for _, a := range ifc.Addresses {
				s.Addrs[AddrKey{InterfaceKey{kname(ns.Name), "lo"}, a.Prefix}] = true
			}
		}
	}
}
