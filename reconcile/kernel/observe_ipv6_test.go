package kernel

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestIPv6OnOneInterfaceOfAnIPv6OffNamespaceIsRead: a namespace without IPv6
// addresses has IPv6 off, and its IPv6 addresses and routes are not dumped
// (anyIPv6). IPv6 turned on by hand for one interface, with an address put on
// it, must still be seen: the namespace's lo says off, the interface says on.
func TestIPv6OnOneInterfaceOfAnIPv6OffNamespaceIsRead(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := twoContainers().s
	up(t, d, desired)

	sb.mustRun("c1", "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0")
	sb.mustRun("c1", "ip", "addr", "add", "2001:db8:9::5/64", "dev", "eth0", "nodad")
	want := []string{"- addr    c1:eth0 2001:db8:9::5/64"}
	if diff := cmp.Diff(want, planLines(t, d, desired)); diff != "" {
		t.Errorf("plan with an IPv6 address on c1:eth0 (-want +got):\n%s", diff)
	}
	up(t, d, desired)
}
