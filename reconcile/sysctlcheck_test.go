package reconcile_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
	"netlab/tests/harness"
)

// TestMissingSysctlRefusedBeforeAnyChange: a sysctl the kernel does not have is
// refused at plan time, with the name it probably meant, and nothing is applied.
func TestMissingSysctlRefusedBeforeAnyChange(t *testing.T) {
	desired := harness.DesiredFromText(t, `name: typo
host: {sysctls: {net.ipv4.ip_forward: 1}}
namespaces:
  web: {sysctls: {net.ipv4.ip_forwarding: 1, net.bridge.bridge-nf-call-iptables: 1}}
`)
	d := fake.New()
	d.NoSysctl = map[string]string{"net/ipv4/ip_forwarding": "net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables": ""}
	_, err := r.MakePlan(context.Background(), d, desired)
	var missing *r.MissingSysctlError
	if !errors.As(err, &missing) {
		t.Fatalf("MakePlan = %v, want a MissingSysctlError", err)
	}
	want := []string{
		"sysctl net.bridge.bridge-nf-call-iptables does not exist in namespace web (the br_netfilter module is not loaded: modprobe br_netfilter)",
		"sysctl net.ipv4.ip_forwarding does not exist in namespace web (did you mean net.ipv4.ip_forward?)",
	}
	if diff := cmp.Diff(want, missing.Missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	if d.Writes != 0 {
		t.Errorf("%d writes, want none", d.Writes)
	}
}
