package topology_test

import (
	"net/netip"
	"testing"

	"netlab/topology"
)

// A check's target name is replaced by its address where the name is the
// host, and there only: a name also in a URL's user part, left there, would
// be looked up by Go's resolver with the machine's own DNS servers.
func TestCheckTargetsGetTheAddressAsTheirHostOnly(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5")
	for _, tc := range []struct {
		kind, target string
		addr         netip.Addr
		want         string
	}{
		{"http", "http://admin:pw@admin/x", v4, "http://admin:pw@10.0.0.5/x"},
		{"http", "http://web:8080/admin", v4, "http://10.0.0.5:8080/admin"},
		{"http", "http://web/", v6, "http://[fd00::5]/"},
		{"tcp", "web:80", v6, "[fd00::5]:80"},
		{"ping", "web", v4, "10.0.0.5"},
	} {
		if got := topology.CheckTargetAt(&topology.Check{Kind: tc.kind, Target: tc.target}, tc.addr); got != tc.want {
			t.Errorf("%s %s -> %s, want %s", tc.kind, tc.target, got, tc.want)
		}
	}
}
