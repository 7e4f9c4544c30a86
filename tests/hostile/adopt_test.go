package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

const adoptLab = `name: adopt
bridges:
  br0: {addresses: [10.9.0.1/24]}
namespaces:
  a:
    interfaces:
      eth0: {addresses: [10.9.0.2/24]}
links:
  - [a:eth0, br0]
`

// TestLeftoverIntentDoesNotAdoptAHandMadeBridge: the record of an interrupted
// creation of br0 (as an earlier netlab left it: an empty file, or one with
// another index) and a br0 made by hand. up is a conflict that names br0 and
// changes nothing, and down leaves the bridge.
func TestLeftoverIntentDoesNotAdoptAHandMadeBridge(t *testing.T) {
	for _, content := range []string{"", "123456789\n"} {
		sb := harness.NewSandbox(t)
		lab := writeLab(t, "adopt.yaml", adoptLab)
		sb.OK("sh", "-c", "mkdir -p /run/netlab/adopt/creating && chmod 700 /run/netlab /run/netlab/adopt && : > /run/netlab/adopt.lock")
		sb.WriteFile("/run/netlab/adopt/creating/host:br0", content)
		sb.OK("ip", "link", "add", "br0", "type", "bridge")
		before := sb.KernelState()
		res := sb.Fails("netlab", "up", lab)
		if !strings.Contains(res.Stderr, "interface host:br0 already exists and was not created by netlab") {
			t.Errorf("intent %q: up did not report br0 as a conflict:\n%s%s", content, res.Stdout, res.Stderr)
		}
		if after := sb.KernelState(); after != before {
			t.Errorf("intent %q: up changed the kernel:\nbefore:\n%s\nafter:\n%s", content, before, after)
		}
		sb.OK("netlab", "down", lab)
		if got := sb.OK("ip", "-d", "link", "show", "br0"); strings.Contains(got, "alias") {
			t.Errorf("intent %q: br0 after down: %s", content, got)
		}
	}
}
