package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestRefusalIsNotCalledConvergent: when the kernel refuses what the file asks
// (a TTL over 255), up names the step and says that running it again would
// fail the same way, instead of promising that it converges; down cleans up.
func TestRefusalIsNotCalledConvergent(t *testing.T) {
	sb := harness.NewSandbox(t)
	before := sb.KernelState()
	lab := writeLab(t, "ttl.yaml", `name: ttl
namespaces:
  a:
    sysctls: {net.ipv4.ip_default_ttl: 300}
`)
	res := sb.Fails("netlab", "up", lab)
	if !strings.Contains(res.Stderr, "apply step") || !strings.Contains(res.Stderr, "sysctl") ||
		!strings.Contains(res.Stderr, "running up again would fail the same way") || strings.Contains(res.Stderr, "again to converge") {
		t.Errorf("up of a value the kernel refuses:\n%s", res.Stderr)
	}
	sb.OK("netlab", "down", lab)
	if after := sb.KernelState(); after != before {
		t.Errorf("down left a trace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
