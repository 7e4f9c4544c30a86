package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestLabIsManagedFromItsOwnNamespace: a netlab run from inside one of the
// lab's namespaces (netlab exec c2 -- netlab down) would take c2 for the host:
// it refuses, changes nothing, and the lab stays intact; from the namespace
// the lab was brought up from, down works.
func TestLabIsManagedFromItsOwnNamespace(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := "../../labs/docker-bridge-lowlevel.yaml"
	sb.OK("netlab", "up", lab)
	before := kernelState(sb)
	for _, args := range [][]string{
		{"netlab", "down", "--lab", "docker-bridge"},
		{"netlab", "down", lab},
		{"netlab", "up", lab},
		{"netlab", "plan", lab},
	} {
		res := sb.Fails(append([]string{"netlab", "exec", "c2", "--"}, args...)...)
		if !strings.Contains(res.Stderr, "lab docker-bridge was brought up from network namespace net:[") ||
			!strings.Contains(res.Stderr, "; this netlab runs in net:[") || !strings.Contains(res.Stderr, "; run it from there") {
			t.Errorf("%s inside c2: exit %d\n%s%s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
		}
	}
	if after := kernelState(sb); after != before {
		t.Errorf("runs from inside c2 changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("the lab after the refused runs:\n%s", got)
	}
	sb.OK("netlab", "down", lab)
	if got := sb.OK("ip", "netns", "list"); got != "" {
		t.Errorf("namespaces after down: %q", got)
	}
}
