package topology

// Addresses on lo: a lab namespace's loopback may carry addresses of its own
// (a router id, an anycast address), written as an `interfaces:` entry named lo
// that has no link, and routes may name dev lo. The host's lo is the machine's:
// netlab leaves it alone.

// loopbacks registers lo as a device of every lab namespace, with its
// `interfaces:` entry when the file has one, and refuses lo in the host and
// settings lo cannot take.
func (v *validator) loopbacks() {
	for _, ns := range v.allNamespaces() {
		devs := v.devices[ns.Name]
		if devs == nil {
			continue // declared twice, reported
		}
		var lo *Interface
		for _, ifc := range ns.Interfaces {
			if ifc.Name == "lo" {
				lo = ifc
			}
		}
		if ns.Name == HostName {
			if lo != nil {
				v.errorAt(lo.Pos, "host: lo is the machine's own loopback, which netlab leaves alone; put addresses on lo in a lab namespace")
			}
			continue
		}
		if lo != nil && (lo.MAC != nil || lo.MTU != 0) {
			v.errorAt(lo.Pos, "interface %s:lo: lo takes only addresses: (it has no MAC, and netlab leaves its mtu alone)", ns.Name)
		}
		devs["lo"] = &device{name: "lo", iface: lo}
	}
}
