package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestHiddenStepsOnlyInTheLabsNamespaces: the hidden steps of a plan's script
// (netlab __save-sysctl, __create-table, __save-iptables, ...) act on the
// namespace they are given. Given another lab's namespace, or one that is no
// lab's, they refuse and change nothing: a table marked as lab a's in lab b's
// namespace would block b and never be seen by a's down.
func TestHiddenStepsOnlyInTheLabsNamespaces(t *testing.T) {
	sb := harness.NewSandbox(t)
	a := writeLab(t, "a.yaml", "name: a\nnamespaces:\n  x: {}\n")
	b := writeLab(t, "b.yaml", "name: b\nnamespaces:\n  y: {}\n")
	sb.OK("netlab", "up", a)
	sb.OK("netlab", "up", b)
	sb.OK("ip", "netns", "add", "plain")
	before := sb.KernelState()
	for _, ns := range []string{"y", "plain"} {
		for _, step := range [][]string{
			{"netlab", "__create-table", "a", ns, "ip"},
			{"netlab", "__save-sysctl", "a", ns, "net.ipv4.ip_forward=0"},
			{"netlab", "__save-iptables", "a", ns},
		} {
			res := sb.Fails(step...)
			if !strings.Contains(res.Stderr, "is not lab a's") {
				t.Errorf("%s: %s", strings.Join(step, " "), res.Stderr)
			}
		}
	}
	if after := sb.KernelState(); after != before {
		t.Errorf("a refused step changed the kernel:\n%s\nwas:\n%s", after, before)
	}
	if got := sb.OK("netlab", "up", b); got != "No changes.\n" {
		t.Errorf("lab b after the refused steps: %q", got)
	}
	// In its own namespace, a step still works.
	sb.OK("netlab", "__save-sysctl", "a", "x", "net.ipv4.ip_forward=0")
	sb.OK("netlab", "down", a)
	sb.OK("netlab", "down", b)
}
