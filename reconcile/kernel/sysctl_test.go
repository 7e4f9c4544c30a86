package kernel

import (
	"context"
	"os"
	"strings"
	"testing"

	"netlab/reconcile"
	"netlab/tests/harness"
)

// Sysctls are opened through netlab's private procfs instances (see
// openSysctl): what a thread reads and writes there must be its own
// namespace's, and the instances must be closed as they are used up.
func TestSysctlsGoThroughPrivateProcInstancesOfTheRightNamespace(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	l := newLab("procfs").bridge("br0", "10.20.0.1/24").
		container("a", "va", "br0", "10.20.0.2/24").
		container("b", "vb", "br0", "10.20.0.3/24")
	up(t, d, l.s)

	p := d.takeProc()
	if p == nil {
		t.Fatal("the kernel refused a private procfs instance: sysctls would walk /proc/sys")
	}
	d.returnProc(p)

	// IPv6 was turned off in a and b when they were made (through an instance).
	for _, ns := range []string{"a", "b"} {
		if out := sb.mustRun(ns, "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"); strings.TrimSpace(out) != "1" {
			t.Errorf("disable_ipv6 in %s = %q, want 1", ns, out)
		}
	}
	// A write in a reaches a alone: not b, not the host.
	key := reconcile.SysctlKey{NS: "a", Path: "net/ipv4/ping_group_range"}
	if err := d.writeSysctl(key, "7 7"); err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]string{"a": "7 7", "b": "1 0", "host": "1 0"} {
		out := sb.mustRun(ns, "sysctl", "-n", "net.ipv4.ping_group_range")
		if got := strings.Join(strings.Fields(out), " "); got != want {
			t.Errorf("ping_group_range in %s = %q, want %q", ns, got, want)
		}
	}
	if v, ok, err := d.readSysctl(key); err != nil || !ok || strings.Join(strings.Fields(v), " ") != "7 7" {
		t.Errorf("readSysctl(%v) = %q, %v, %v; want \"7 7\"", key, v, ok, err)
	}

	// Instances are closed once used up: many lookups leave no more open
	// descriptors than the instances kept for reuse.
	before := openFDs(t)
	for range 5 * procUses {
		if _, _, err := d.readSysctl(key); err != nil {
			t.Fatal(err)
		}
	}
	if after := openFDs(t); after > before+cap(d.procfs) {
		t.Errorf("open descriptors grew from %d to %d after %d sysctl reads: instances are not closed", before, after, 5*procUses)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// A sysctl root may write but not read (net.ipv4.route.flush) is refused
// before any change, in a namespace the plan creates and in one that exists:
// its value could never be read back to match, so every up would write it
// again, and reading it would fail every plan after the first up.
func TestAWriteOnlySysctlIsRefusedBeforeAnyChange(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	const lab = "name: flush\nnamespaces:\n  a:\n    sysctls: {net.ipv4.route.flush: 1}\n"
	for _, when := range []string{"the namespace is made", "the namespace exists"} {
		_, err := reconcile.MakePlan(context.Background(), d, harness.DesiredFromText(t, lab))
		if err == nil || !strings.Contains(err.Error(), "sysctl net.ipv4.route.flush can be written but not read") {
			t.Errorf("plan when %s: %v, want a refusal", when, err)
		}
		up(t, d, harness.DesiredFromText(t, "name: flush\nnamespaces:\n  a: {}\n"))
	}
	down(t, d, "flush")
}
