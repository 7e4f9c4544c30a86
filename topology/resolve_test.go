package topology

import (
	"net/netip"
	"slices"
	"testing"
)

// TestValidateResolvesOnce: after Load, every link end knows its peer, its
// bridge and its `interfaces:` entry, every namespace its link ends and every
// bridge its ports, each check its namespace, and a namespace on a resolving
// bridge its hosts entries; a second Validate resolves the same, not twice.
func TestValidateResolvesOnce(t *testing.T) {
	lab, err := Load("../labs/docker-user-network.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		if round == 1 {
			if err := lab.Validate(); err != nil {
				t.Fatal(err)
			}
		}
		ns := map[string]*Namespace{HostName: lab.Host}
		for _, n := range lab.Namespaces {
			ns[n.Name] = n
		}
		br := map[string]*Bridge{}
		for _, b := range lab.Bridges {
			br[b.Name] = b
		}
		var ends, ports int
		for _, l := range lab.Links {
			for i, e := range l.Ends {
				if e.Peer != l.Ends[1-i] {
					t.Errorf("%s: Peer is not the other end", e.Text)
				}
				if e.OnBridge != br[e.Bridge] {
					t.Errorf("%s: OnBridge = %v, want bridge %q", e.Text, e.OnBridge, e.Bridge)
				}
				var want *Interface
				if e.Bridge == "" {
					for _, ifc := range ns[e.Namespace].Interfaces {
						if ifc.Name == e.Interface {
							want = ifc
						}
					}
					ends++
					if !slices.Contains(ns[e.Namespace].Ends, e) {
						t.Errorf("%s: not in its namespace's Ends", e.Text)
					}
				} else {
					ports++
					if !slices.Contains(e.OnBridge.Ports, e) {
						t.Errorf("%s: not in its bridge's Ports", e.Text)
					}
				}
				if e.Config != want {
					t.Errorf("%s: Config = %v, want %v", e.Text, e.Config, want)
				}
			}
		}
		var gotEnds, gotPorts int
		for _, n := range ns {
			gotEnds += len(n.Ends)
		}
		for _, b := range br {
			gotPorts += len(b.Ports)
		}
		if gotEnds != ends || gotPorts != ports {
			t.Errorf("round %d: %d ends and %d ports listed, want %d and %d", round, gotEnds, gotPorts, ends, ports)
		}
		for _, c := range lab.Checks {
			if c.FromNamespace != ns[c.From] {
				t.Errorf("check from %s: FromNamespace = %v", c.From, c.FromNamespace)
			}
		}
		// c3 and c4 are on the resolving bridge; web is not.
		if a, ok := ns["c3"].Resolve("c4"); !ok || a != netip.MustParseAddr("172.18.0.3") {
			t.Errorf("c3 resolves c4 to %v, %v", a, ok)
		}
		if a, ok := ns["c4"].Resolve("localhost"); !ok || a != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("c4 resolves localhost to %v, %v", a, ok)
		}
		if _, ok := ns["c2"].Resolve("web"); ok || ns["web"].Hosts != nil {
			t.Errorf("the default bridge resolves names")
		}
		if n := len(ns["c3"].Hosts); n != 4 {
			t.Errorf("round %d: c3 has %d hosts entries, want 4 (two loopback, c3, c4)", round, n)
		}
	}
	if k := lab.KernelName(HostName); k != HostName {
		t.Errorf("KernelName(host) = %q, want %q", k, HostName)
	}
}
