package kernel

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	r "netlab/reconcile"
)

// bridgeState reads a bridge's up state and multicast snooping through netlink.
func bridgeState(t *testing.T, h *netlink.Handle, name string) (up, snooping bool) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	br, ok := l.(*netlink.Bridge)
	if !ok || br.MulticastSnooping == nil {
		t.Fatalf("%s: a %T without multicast snooping state", name, l)
	}
	return l.Attrs().Flags&net.FlagUp != 0, *br.MulticastSnooping
}

// TestBridgeComesUpWithMulticastSnoopingOn: netlab brings a bridge up with
// snooping off for that moment (see Driver.bringBridgeUp); the bridge ends up
// as the kernel and Docker make it, snooping on. A bridge found with it off (a
// run stopped in that moment, or a hand) gets it back, with the plan saying so.
func TestBridgeComesUpWithMulticastSnoopingOn(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := twoContainers().s
	up(t, d, desired)
	host := sb.netlinkAt("host")
	if up, snooping := bridgeState(t, host, "br0"); !up || !snooping {
		t.Fatalf("after up: br0 up=%v snooping=%v, want both", up, snooping)
	}
	sb.mustRun("c1", "ping", "-c1", "-W2", "10.10.0.3")

	sb.mustRun("host", "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	want := []string{"~ link    host:br0 multicast snooping off -> on"}
	if diff := cmp.Diff(want, planLines(t, d, desired)); diff != "" {
		t.Errorf("plan with snooping off (-want +got):\n%s", diff)
	}
	up(t, d, desired)
	if _, snooping := bridgeState(t, host, "br0"); !snooping {
		t.Errorf("after the second up: br0 snooping off")
	}

	// Down and snooping off: both are put right.
	sb.mustRun("host", "ip", "link", "set", "br0", "down", "type", "bridge", "mcast_snooping", "0")
	want = []string{"~ link    host:br0 multicast snooping off -> on", "~ link    host:br0 down -> up"}
	if diff := cmp.Diff(want, planLines(t, d, desired)); diff != "" {
		t.Errorf("plan with br0 down and snooping off (-want +got):\n%s", diff)
	}
	up(t, d, desired)
	if up, snooping := bridgeState(t, host, "br0"); !up || !snooping {
		t.Errorf("after the third up: br0 up=%v snooping=%v, want both", up, snooping)
	}
	sb.mustRun("c1", "ping", "-c1", "-W2", "10.10.0.3")
}

// TestBridgeKeepsMulticastSnoopingOffWhenTheFileSaysSo: `multicast-snooping:
// false` makes the bridge with snooping off and brings it up so; turned on by
// hand, the next up turns it off again.
func TestBridgeKeepsMulticastSnoopingOffWhenTheFileSaysSo(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := twoContainers().s
	desired.Interfaces[r.InterfaceKey{NS: r.Host, Name: "br0"}].SnoopingOff = true
	if got := planLines(t, d, desired); !slices.Contains(got, "+ bridge  host:br0 (multicast snooping off)") {
		t.Errorf("plan: want the bridge made with snooping off:\n%s", strings.Join(got, "\n"))
	}
	up(t, d, desired)
	host := sb.netlinkAt("host")
	if up, snooping := bridgeState(t, host, "br0"); !up || snooping {
		t.Fatalf("after up: br0 up=%v snooping=%v, want up with snooping off", up, snooping)
	}
	sb.mustRun("c1", "ping", "-c1", "-W2", "10.10.0.3")

	sb.mustRun("host", "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "1")
	want := []string{"~ link    host:br0 multicast snooping on -> off"}
	if diff := cmp.Diff(want, planLines(t, d, desired)); diff != "" {
		t.Errorf("plan with snooping turned on by hand (-want +got):\n%s", diff)
	}
	up(t, d, desired)
	if _, snooping := bridgeState(t, host, "br0"); snooping {
		t.Errorf("after the second up: br0 snooping on")
	}
}

// TestBridgeReplacedBeforeItComesUpIsNotARefusal: a bridge replaced by another
// kind of interface between plan and apply fails the step with what happened,
// not as a value the kernel refuses (which up would tell to fix in the file).
func TestBridgeReplacedBeforeItComesUpIsNotARefusal(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	sb.mustRun("host", "ip", "link", "add", "br9", "type", "veth", "peer", "name", "br9p")
	err := d.Apply(context.Background(), r.SetUp{InterfaceKey: r.InterfaceKey{NS: r.Host, Name: "br9"}, Bridge: true})
	if err == nil || Refused(err) || !strings.Contains(err.Error(), "br9 is no longer a bridge") {
		t.Errorf("bringing up a bridge that is a veth now: %v (refused: %v)", err, Refused(err))
	}
}
