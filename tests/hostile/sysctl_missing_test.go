package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestMissingSysctlRefusedAtPlan: a sysctl the kernel does not have passes
// validate (which never reads the kernel), and plan and up refuse it before
// the first change, naming it, its namespace and the name it probably meant;
// the kernel is left as it was. It is looked up where it will be written: in a
// namespace the plan creates, and for an interface the plan creates.
func TestMissingSysctlRefusedAtPlan(t *testing.T) {
	sb := harness.NewSandbox(t)
	// The lab's lock file, which up takes before it plans, is the one trace.
	kernelState := func() string { return strings.Replace(sb.KernelState(), "typo.lock\n", "", 1) }
	before := kernelState()
	lab := writeLab(t, "typo.yaml", `name: typo
host: {sysctls: {net.ipv4.ip_forward: 1}}
namespaces:
  web:
    interfaces: {eth0: {addresses: [10.9.0.2/24]}}
    sysctls:
      net.ipv4.ip_forwarding: 1
      net.ipv4.conf.eth0.forwarding: 1
      net.ipv4.conf.eth0.rp_filtre: 2
      net.ipv6.conf.eth0.disable_ipv6: 1
  c2:
    interfaces: {eth0: {addresses: [10.9.0.3/24]}}
links:
  - [web:eth0, c2:eth0]
`)
	sb.OK("netlab", "validate", lab)
	for _, cmd := range []string{"plan", "up"} {
		res := sb.Fails("netlab", cmd, lab)
		for _, want := range []string{
			"sysctl net.ipv4.ip_forwarding does not exist in namespace web (did you mean net.ipv4.ip_forward?)",
			"sysctl net.ipv4.conf.eth0.rp_filtre does not exist in namespace web (did you mean net.ipv4.conf.eth0.rp_filter?)",
			"nothing was changed",
		} {
			if !strings.Contains(res.Stderr, want) {
				t.Errorf("%s: want %q in:\n%s", cmd, want, res.Stderr)
			}
		}
		if strings.Contains(res.Stderr, "eth0.forwarding") || strings.Contains(res.Stderr, "disable_ipv6") {
			t.Errorf("%s refuses a sysctl that exists:\n%s", cmd, res.Stderr)
		}
		if after := kernelState(); after != before {
			t.Errorf("%s with a missing sysctl changed the kernel:\nbefore:\n%s\nafter:\n%s", cmd, before, after)
		}
	}

	// In a namespace that exists: the same refusal, the lab left as it is.
	good := writeLab(t, "good.yaml", `name: typo
namespaces:
  web:
    interfaces: {eth0: {addresses: [10.9.0.2/24]}}
  c2:
    interfaces: {eth0: {addresses: [10.9.0.3/24]}}
links:
  - [web:eth0, c2:eth0]
`)
	sb.OK("netlab", "up", good)
	up := kernelState()
	res := sb.Fails("netlab", "up", lab)
	if !strings.Contains(res.Stderr, "sysctl net.ipv4.ip_forwarding does not exist in namespace web (did you mean net.ipv4.ip_forward?)") {
		t.Errorf("up over a running lab: %s", res.Stderr)
	}
	if after := kernelState(); after != up {
		t.Errorf("up with a missing sysctl changed a running lab:\nbefore:\n%s\nafter:\n%s", up, after)
	}
	sb.OK("netlab", "down", good)
}
