package kernel

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"netlab/reconcile"
)

// TestMissingSysctlsAreLookedUpWhereTheyWillBeWritten: Observe reports the
// wanted sysctls the kernel lacks, in an existing namespace, in one the plan
// will create (a throwaway namespace stands in for it) and for an interface
// the plan will create (its conf/default entry), with the nearest name.
func TestMissingSysctlsAreLookedUpWhereTheyWillBeWritten(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	l := newLab("miss").bridge("br0", "10.20.0.1/24").container("a", "va", "br0", "10.20.0.2/24")
	up(t, d, l.s)

	key := func(ns, path string) reconcile.SysctlKey { return reconcile.SysctlKey{NS: ns, Path: path} }
	wanted := []reconcile.SysctlKey{
		key("a", "net/ipv4/ip_forward"),               // exists, read
		key("a", "net/ipv4/ip_forwarding"),            // misspelt, in an existing namespace
		key("a", "net/ipv4/conf/eth9/forwarding"),     // an interface not made yet
		key("a", "net/ipv4/conf/eth9/rp_filtre"),      // misspelt, for it
		key("new", "net/ipv4/ip_forward"),             // a namespace not made yet
		key("new", "net/core/somaxconn"),              // per namespace
		key("new", "net/ipv6/conf/eth0/disable_ipv6"), // both
		key("new", "net/ipv4/tcp_rmme"),               // misspelt, there
		key("host", "net/nosuch/thing"),               // nothing near
	}
	s, err := d.Observe(t.Context(), reconcile.Query{Lab: "miss", Sysctls: wanted})
	if err != nil {
		t.Fatal(err)
	}
	want := map[reconcile.SysctlKey]string{
		key("a", "net/ipv4/ip_forwarding"):       "net/ipv4/ip_forward",
		key("a", "net/ipv4/conf/eth9/rp_filtre"): "net/ipv4/conf/eth9/rp_filter",
		key("new", "net/ipv4/tcp_rmme"):          "net/ipv4/tcp_rmem",
		key("host", "net/nosuch/thing"):          "",
	}
	if diff := cmp.Diff(want, s.MissingSysctls); diff != "" {
		t.Errorf("MissingSysctls (-want +got):\n%s", diff)
	}

	// The throwaway namespace costs about a millisecond: it is made once per
	// plan, and only for a plan that creates namespaces with sysctls.
	start := time.Now()
	const n = 20
	for range n {
		if err := inThrowawayNetns(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("a throwaway namespace: %v", time.Since(start)/n)
}

func TestNearest(t *testing.T) {
	names := []string{"ip_forward", "ip_forward_use_pmtu", "ip_default_ttl", "tcp_rmem", "tcp_wmem"}
	for want, near := range map[string]string{
		"ip_forwarding": "ip_forward",
		"ip_froward":    "ip_forward",
		"tcp_rmme":      "tcp_rmem",
		"somaxconn":     "",
		"ip":            "",
	} {
		if got := nearest(want, names); got != near {
			t.Errorf("nearest(%q) = %q, want %q", want, got, near)
		}
	}
}
