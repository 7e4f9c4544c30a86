package kernel

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	r "netlab/reconcile"
	"netlab/reconcile/probe"
	"netlab/tests/harness"
)

const shapingLab = `name: shaping
namespaces:
  client:
    interfaces:
      slow: {addresses: [10.0.1.1/24]}
      backup: {addresses: [10.0.2.1/24]}
    routes: [10.9.0.0/16 via 10.0.2.2]
  server:
    interfaces:
      slow: {addresses: [10.0.1.2/24]}
      backup: {addresses: [10.0.2.2/24]}
links:
  - {ends: [client:slow, server:slow], rate: RATE, burst: 32kb}
  - {ends: [client:backup, server:backup], state: STATE}
`

func shaping(t *testing.T, rate, state string) *r.State {
	return harness.DesiredFromText(t, strings.NewReplacer("RATE", rate, "STATE", state).Replace(shapingLab))
}

// rootQdisc reads the root qdisc of an interface through netlink.
func rootQdisc(t *testing.T, h *netlink.Handle, name string) netlink.Qdisc {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := h.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_ROOT {
			return q
		}
	}
	return nil
}

// TestShapingRateEditDriftAndDown: a rate puts a tbf on each end of the link;
// editing the rate is one ~ action and both interfaces keep their index; a
// qdisc deleted by hand is drift that up repairs; down removes it all.
func TestShapingRateEditDriftAndDown(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	up(t, d, shaping(t, "10mbit", "up"))
	hc, hs := sb.netlinkAt("client"), sb.netlinkAt("server")
	for _, h := range []*netlink.Handle{hc, hs} {
		tbf, ok := rootQdisc(t, h, "slow").(*netlink.Tbf)
		if !ok || tbf.Rate != 1_250_000 || tbf.Attrs().Handle != netlink.MakeHandle(r.QdiscHandle, 0) {
			t.Fatalf("root qdisc of slow = %+v, want netlab's tbf at 1250000 bytes/s", rootQdisc(t, h, "slow"))
		}
	}
	if got := planLines(t, d, shaping(t, "10mbit", "up")); len(got) != 0 {
		t.Fatalf("second plan: %v", got)
	}

	client, server := ifindex(t, hc, "slow"), ifindex(t, hs, "slow")
	got := up(t, d, shaping(t, "20mbit", "up"))
	if diff := cmp.Diff([]string{"~ qdisc   client:slow, server:slow rate 10mbit -> 20mbit"}, got); diff != "" {
		t.Errorf("rate edit (-want +got):\n%s", diff)
	}
	if c, s := ifindex(t, hc, "slow"), ifindex(t, hs, "slow"); c != client || s != server {
		t.Errorf("the rate edit changed the interfaces: index %d -> %d, %d -> %d", client, c, server, s)
	}
	if tbf := rootQdisc(t, hc, "slow").(*netlink.Tbf); tbf.Rate != 2_500_000 {
		t.Errorf("rate after the edit: %d bytes/s, want 2500000", tbf.Rate)
	}

	if err := hc.QdiscDel(rootQdisc(t, hc, "slow")); err != nil {
		t.Fatal(err)
	}
	got = up(t, d, shaping(t, "20mbit", "up"))
	if diff := cmp.Diff([]string{"+ qdisc   client:slow tbf rate 20mbit burst 32kb"}, got); diff != "" {
		t.Errorf("qdisc deleted by hand (-want +got):\n%s", diff)
	}
	if _, ok := rootQdisc(t, hc, "slow").(*netlink.Tbf); !ok {
		t.Error("the deleted qdisc was not put back")
	}

	up(t, d, r.NewState("shaping"))
	if got := planLines(t, d, r.NewState("shaping")); len(got) != 0 {
		t.Errorf("plan after down: %v", got)
	}
}

// TestStateDownBlocksAndComesBack: state: down sets both ends down, so a ping
// over the link fails; removing it brings them up (and the route through
// them back) in one up, and the ping answers.
func TestStateDownBlocksAndComesBack(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	ping := []probe.Check{{Name: "over backup", From: "client", Kind: "ping", Target: "10.0.2.2"}}
	up(t, d, shaping(t, "10mbit", "down"))
	if res := probe.Run(context.Background(), ping, d.RunIn); res[0].Pass {
		t.Errorf("ping over a link that is down: %+v", res[0])
	}
	if out := sb.mustRun("client", "ip", "-o", "link", "show", "backup"); strings.Contains(out, ",UP") {
		t.Errorf("backup is up: %s", out)
	}
	got := up(t, d, shaping(t, "10mbit", "up"))
	want := []string{
		"~ link    client:backup down -> up",
		"~ link    server:backup down -> up",
		"+ route   client: 10.9.0.0/16 via 10.0.2.2 dev backup",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state back up (-want +got):\n%s", diff)
	}
	// The kernel passes packets once it has seen the carrier come up, which
	// its link watcher does under the rtnl lock: a moment later on a busy
	// machine (another namespace being torn down holds that lock).
	deadline := time.Now().Add(3 * time.Second)
	for res := probe.Run(context.Background(), ping, d.RunIn); !res[0].Pass; res = probe.Run(context.Background(), ping, d.RunIn) {
		if time.Now().After(deadline) {
			t.Errorf("ping after the link came up: %+v", res[0])
			break
		}
	}
	got = up(t, d, shaping(t, "10mbit", "down"))
	want = []string{
		"- route   client: 10.9.0.0/16 via 10.0.2.2 dev backup",
		"~ link    client:backup up -> down",
		"~ link    server:backup up -> down",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state down again (-want +got):\n%s", diff)
	}
}

// kernelHasNetem asks the kernel, as tc would, in a namespace of its own.
func kernelHasNetem(t *testing.T) bool {
	t.Helper()
	err := inNewNetns(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.QdiscAdd(netlink.NewNetem(netlink.QdiscAttrs{LinkIndex: lo.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
			netlink.NetemQdiscAttrs{Latency: 1000}))
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		t.Fatalf("ask the kernel for netem: %v", err)
	}
	return err == nil
}

// TestDelayRefusedOrApplied: delay and loss need netem. On a kernel without
// it (this one), plan refuses the lab before any change, naming the keys and
// the module; on a kernel with it, up puts netem on each end. Whichever the
// kernel offers is tested: it never skips.
func TestDelayRefusedOrApplied(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	lab := strings.Replace(shapingLab, "rate: RATE, burst: 32kb", "delay: 20ms, loss: 1%", 1)
	desired := harness.DesiredFromText(t, strings.Replace(lab, "STATE", "up", 1))
	if !kernelHasNetem(t) {
		t.Log("this kernel has no netem: checking the refusal")
		_, err := r.MakePlan(context.Background(), d, desired)
		want := "delay and loss need the sch_netem kernel module, which this kernel lacks (on client:slow, server:slow); nothing was changed"
		if err == nil || err.Error() != want {
			t.Fatalf("plan: %v\nwant: %s", err, want)
		}
		if out := sb.mustRun("host", "ip", "-o", "link"); strings.Count(out, "\n") != 1 {
			t.Errorf("the refused plan changed the host:\n%s", out)
		}
		if names, _, err := d.listNetns(); err != nil || len(names) != 0 {
			t.Errorf("the refused plan made namespaces: %v %v", names, err)
		}
		return
	}
	t.Log("this kernel has netem: checking it is applied")
	up(t, d, desired)
	n, ok := rootQdisc(t, sb.netlinkAt("client"), "slow").(*netlink.Netem)
	if !ok || n.Loss == 0 || n.Latency == 0 {
		t.Fatalf("root qdisc of client:slow = %+v, want netem", n)
	}
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("second plan: %v", got)
	}
}

// TestLoopbackAddressesKernel: addresses on a namespace's lo are added, routed
// to from the other namespace, and kept by a second up.
func TestLoopbackAddressesKernel(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, `name: loopbacks
namespaces:
  r1:
    interfaces:
      lo: {addresses: [10.255.0.1/32]}
      eth0: {addresses: [10.0.0.1/30]}
    routes: [10.255.0.2 via 10.0.0.2]
  r2:
    interfaces:
      lo: {addresses: [10.255.0.2/32]}
      eth0: {addresses: [10.0.0.2/30]}
    routes: [10.255.0.1 via 10.0.0.1, 10.98.0.0/16 dev lo]
links:
  - [r1:eth0, r2:eth0]
`)
	up(t, d, desired)
	if out := sb.mustRun("r2", "ip", "-o", "addr", "show", "dev", "lo"); !strings.Contains(out, "10.255.0.2/32") || !strings.Contains(out, "127.0.0.1/8") {
		t.Errorf("r2's lo: %s", out)
	}
	ping := []probe.Check{{Name: "router id", From: "r1", Kind: "ping", Target: "10.255.0.2"}}
	deadline := time.Now().Add(3 * time.Second)
	for res := probe.Run(context.Background(), ping, d.RunIn); !res[0].Pass; res = probe.Run(context.Background(), ping, d.RunIn) {
		if time.Now().After(deadline) {
			t.Fatalf("ping r2's lo address from r1: %+v", res[0])
		}
	}
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("second plan: %v", got)
	}
	if err := netlinkAddrDel(sb.netlinkAt("r2"), "lo", "10.255.0.2/32"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"+ addr    r2:lo 10.255.0.2/32"}, up(t, d, desired)); diff != "" {
		t.Errorf("an address deleted from lo by hand (-want +got):\n%s", diff)
	}
}

func netlinkAddrDel(h *netlink.Handle, dev, cidr string) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	return h.AddrDel(l, a)
}
