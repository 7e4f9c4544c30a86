package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestAnIPv6RouteAloneTurnsIPv6On: a namespace without IPv6 addresses but with
// IPv6 routes has IPv6 on. With it off, the kernel refused the route through
// eth0 at apply, and made the one through lo (a reject route) without its
// namespace's IPv6 routes ever being read again: every up planned it anew.
// Default routes through a device alone (::/0 dev eth0, 0.0.0.0/0 dev eth0)
// are made too: the netlink library refused them without a destination.
func TestAnIPv6RouteAloneTurnsIPv6On(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "v6route.yaml", `name: v6route
namespaces:
  a:
    interfaces: {eth0: {addresses: [10.0.0.1/24]}}
    routes:
      - {to: "2001:db8:5::/48", dev: lo}
      - {to: "::/0", dev: eth0}
  b:
    interfaces: {eth0: {addresses: [10.0.0.2/24]}}
    routes: [0.0.0.0/0 dev eth0]
links:
  - [a:eth0, b:eth0]
`)
	if plan := sb.OK("netlab", "plan", lab); !strings.Contains(plan, "+ netns   a\n") || !strings.Contains(plan, "+ netns   b (IPv6 off)\n") {
		t.Errorf("plan: want a with IPv6 on (its routes), b off:\n%s", plan)
	}
	// The script says ::/0 for the IPv6 one: ip reads "default" as IPv4's.
	script := sb.OK("netlab", "plan", "-o", "commands", lab)
	if !strings.Contains(script, "ip -n a route replace ::/0 dev eth0\n") || !strings.Contains(script, "ip -n b route replace default dev eth0\n") {
		t.Errorf("plan -o commands: want ::/0 for a's default route, default for b's:\n%s", script)
	}
	sb.OK("netlab", "up", lab)
	if got := sb.OK("netlab", "up", lab); got != "No changes.\n" {
		t.Errorf("second up:\n%s", got)
	}
	routes := sb.OK("ip", "-n", "a", "-6", "route", "show", "table", "main")
	if !strings.Contains(routes, "2001:db8:5::/48 dev lo") || !strings.Contains(routes, "default dev eth0") {
		t.Errorf("ip -n a -6 route:\n%s", routes)
	}
	if routes := sb.OK("ip", "-n", "b", "route"); !strings.Contains(routes, "default dev eth0 scope link") {
		t.Errorf("ip -n b route:\n%s", routes)
	}
}
