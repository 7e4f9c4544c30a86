package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// machineNIC gives the sandbox a network card of its own, as a real machine
// has: an interface with an address and the default route through it (a veth
// pair: not every kernel has the dummy module).
func machineNIC(sb *harness.Sandbox) {
	sb.OK("ip", "link", "add", "eth9", "type", "veth", "peer", "name", "eth9-peer")
	sb.OK("ip", "addr", "add", "198.51.100.10/24", "dev", "eth9")
	sb.OK("ip", "link", "set", "eth9-peer", "up")
	sb.OK("ip", "link", "set", "eth9", "up")
	sb.OK("ip", "route", "add", "default", "via", "198.51.100.1", "dev", "eth9")
}

// gatewayLab routes the host's default traffic to a router namespace on a lab
// bridge, with the given extra route words ("metric 100").
func gatewayLab(t *testing.T, route, bridgeAddr string) string {
	return writeLab(t, "gw.yaml", `name: gw
host:
  routes: [default via 10.9.0.2`+route+`]
bridges:
  br0: {addresses: [`+bridgeAddr+`]}
namespaces:
  router:
    interfaces:
      eth0: {addresses: [10.9.0.2/24]}
links:
  - [router:eth0, br0]
`)
}

// TestMachineDefaultRouteIsNotTheLabs: a host route of the lab whose key is the
// machine's own default route is a conflict before any change; with another
// metric the lab's route lives beside it, and down removes the lab's alone.
func TestMachineDefaultRouteIsNotTheLabs(t *testing.T) {
	sb := harness.NewSandbox(t)
	machineNIC(sb)
	before := kernelState(sb)

	res := sb.Fails("netlab", "up", gatewayLab(t, "", "10.9.0.1/24"))
	want := "route host: default (metric 0) already exists (via 198.51.100.1 dev eth9) and was not created by netlab for lab gw; give the lab's route another metric, or remove the machine's route yourself"
	if !strings.Contains(res.Stderr, want) || !strings.Contains(res.Stderr, "nothing was changed") {
		t.Errorf("up over the machine's default route: exit %d\n%s%s\nwant the conflict: %s", res.Code, res.Stdout, res.Stderr, want)
	}
	if after := kernelState(sb); after != before {
		t.Errorf("the refused up changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	lab := gatewayLab(t, " metric 100", "10.9.0.1/24")
	sb.OK("netlab", "up", lab)
	routes := sb.OK("ip", "route", "show", "default")
	if !strings.Contains(routes, "default via 198.51.100.1 dev eth9") || !strings.Contains(routes, "default via 10.9.0.2 dev br0 metric 100") {
		t.Errorf("default routes with the lab up:\n%s", routes)
	}
	sb.OK("netlab", "down", lab)
	sb.OK("netlab", "down", "--lab", "gw") // twice: nothing more
	if after := kernelState(sb); after != before {
		t.Errorf("down did not leave the machine as it was:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestMachineAddressIsNotTheLabs: an address the machine already has, wanted
// on a lab interface of the host, is a conflict before any change.
func TestMachineAddressIsNotTheLabs(t *testing.T) {
	sb := harness.NewSandbox(t)
	machineNIC(sb)
	before := kernelState(sb)
	res := sb.Fails("netlab", "up", gatewayLab(t, " metric 100", "10.9.0.1/24, 198.51.100.10/24"))
	if want := "198.51.100.10 is already an address of host:eth9, which was not created by netlab for lab gw"; !strings.Contains(res.Stderr, want) {
		t.Errorf("up with the machine's address: exit %d\n%s%s\nwant: %s", res.Code, res.Stdout, res.Stderr, want)
	}
	if after := kernelState(sb); after != before {
		t.Errorf("the refused up changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
