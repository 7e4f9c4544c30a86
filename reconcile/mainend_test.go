package reconcile_test

import (
	"strings"
	"testing"

	r "netlab/reconcile"
)

// TestVethMainEnd holds the one rule for the main end of a veth pair (see
// reconcile.IsMainEnd): the plan's CreateVeth carries it as Main, `ip link add`
// creates the pair from it, and the plan line still names the container side
// first.
func TestVethMainEnd(t *testing.T) {
	web := r.InterfaceKey{NS: "lab-web", Name: "eth0"}
	port := r.InterfaceKey{NS: r.Host, Name: "veth1234567"}
	a := r.InterfaceKey{NS: "lab-a", Name: "eth0"}
	b := r.InterfaceKey{NS: "lab-b", Name: "eth0"}
	p1 := r.InterfaceKey{NS: r.Host, Name: "vethaaaaaaa"}
	p2 := r.InterfaceKey{NS: r.Host, Name: "vethbbbbbbb"}
	for _, tc := range []struct {
		name        string
		x, y        r.InterfaceKey
		xBr, yBr    string
		main, first r.InterfaceKey
	}{
		// Only one end is a port: it is the main end; the plan line starts at the container.
		{"container-port", web, port, "", "docker0", port, web},
		{"port-container", port, web, "docker0", "", port, web},
		// Neither or both: the end that sorts first, both as main end and on the plan line.
		{"plain", b, a, "", "", a, a},
		{"two-ports", p2, p1, "br1", "br0", p1, p1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			desired := r.NewState("lab")
			for _, ns := range []string{tc.x.NS, tc.y.NS} {
				if ns != r.Host {
					desired.Namespaces[ns] = &r.Netns{Name: ns}
				}
			}
			desired.Interfaces[tc.x] = &r.Interface{InterfaceKey: tc.x, Kind: r.KindVeth, Peer: tc.y, Master: tc.xBr, Up: true}
			desired.Interfaces[tc.y] = &r.Interface{InterfaceKey: tc.y, Kind: r.KindVeth, Peer: tc.x, Master: tc.yBr, Up: true}
			for _, br := range []string{tc.xBr, tc.yBr} {
				if br != "" {
					k := r.InterfaceKey{NS: r.Host, Name: br}
					desired.Interfaces[k] = &r.Interface{InterfaceKey: k, Kind: r.KindBridge, Up: true}
				}
			}
			observed := r.NewState("lab")
			observed.Namespaces[r.Host] = &r.Netns{Name: r.Host}
			plan, err := r.Diff(desired, observed)
			if err != nil {
				t.Fatal(err)
			}
			var veths []r.CreateVeth
			for _, act := range plan.Actions {
				if v, ok := act.(r.CreateVeth); ok {
					veths = append(veths, v)
				}
			}
			if len(veths) != 1 {
				t.Fatalf("want one CreateVeth, got %d: %v", len(veths), plan.Actions)
			}
			v := veths[0]
			if v.Main.InterfaceKey != tc.main {
				t.Errorf("Main = %s, want %s", v.Main.InterfaceKey, tc.main)
			}
			mx, my := desired.Interfaces[tc.main], desired.Interfaces[desired.Interfaces[tc.main].Peer]
			if !r.IsMainEnd(mx, my) || r.IsMainEnd(my, mx) {
				t.Errorf("IsMainEnd is not the rule the plan followed for %s", tc.main)
			}
			if add := v.Commands()[0]; !strings.Contains(add, " link add "+tc.main.Name+" ") {
				t.Errorf("ip link add does not create the pair from the main end %s: %s", tc.main, add)
			}
			if obj := v.Object(); !strings.HasPrefix(obj, tc.first.String()+" ") {
				t.Errorf("plan line %q does not start with %s", obj, tc.first)
			}
		})
	}
}
