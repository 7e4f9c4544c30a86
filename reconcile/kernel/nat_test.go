package kernel

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// natLab is Docker's bridge networking with an outside world: docker0 with web
// (publishing 8000:80) and c2, a user network mynet with c3, both isolated, and
// "another machine" lan on the host's uplink, on a documentation range.
const natLab = `
name: nat
host:
  sysctls: {net.ipv4.ip_forward: 1}
  interfaces:
    lan0: {addresses: [192.0.2.1/24]}
bridges:
  docker0: {addresses: [172.17.0.1/16], masquerade: true, isolated: true}
  mynet: {addresses: [172.18.0.1/16], masquerade: true, isolated: true}
namespaces:
  web:
    interfaces: {eth0: {addresses: [172.17.0.2/16]}}
    routes: [default via 172.17.0.1]
    publish: ["8000:80"]
  c2:
    interfaces: {eth0: {addresses: [172.17.0.3/16]}}
    routes: [default via 172.17.0.1]
  c3:
    interfaces: {eth0: {addresses: [172.18.0.2/16]}}
    routes: [default via 172.18.0.1]
  lan:
    interfaces: {eth0: {addresses: [192.0.2.2/24]}}
links:
  - [web:eth0, docker0]
  - [c2:eth0, docker0]
  - [c3:eth0, mynet]
  - [lan:eth0, host:lan0]
`

// reaches dials addr from namespace ns and returns the source address the server saw.
func (sb *sandbox) reaches(ns, addr string) (string, error) {
	return harness.Dial(sb.nsPath(ns), addr)
}

func (sb *sandbox) mustReach(ns, addr, seenAs string) {
	sb.t.Helper()
	got, err := sb.reaches(ns, addr)
	if err != nil {
		sb.t.Errorf("%s -> %s: %v", ns, addr, err)
		return
	}
	if seenAs != "" && got != seenAs {
		sb.t.Errorf("%s -> %s: the server saw %s, want %s", ns, addr, got, seenAs)
	}
}

func (sb *sandbox) mustNotReach(ns, addr, why string) {
	sb.t.Helper()
	if got, err := sb.reaches(ns, addr); err == nil {
		sb.t.Errorf("%s -> %s connected (seen as %s); want it blocked: %s", ns, addr, got, why)
	}
}

func TestDockerNATWithRealTraffic(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, natLab)
	up(t, d, desired)

	harness.Serve(t, sb.nsPath("lan"), ":9000") // a server on "another machine"
	harness.Serve(t, sb.nsPath("web"), ":80")   // the published container's server
	harness.Serve(t, sb.nsPath("web"), ":81")   // a port web does not publish
	harness.Serve(t, sb.nsPath("c2"), ":80")    // an unpublished container

	// Outbound: masqueraded, the outside sees the host's address.
	sb.mustReach("c2", "192.0.2.2:9000", "192.0.2.1")
	sb.mustReach("web", "192.0.2.2:9000", "192.0.2.1")

	// Inbound to the published port: the container sees the real client address.
	sb.mustReach("lan", "192.0.2.1:8000", "192.0.2.2")
	// From the host itself: loopback and its own addresses.
	sb.mustReach("host", "127.0.0.1:8000", "")
	sb.mustReach("host", "192.0.2.1:8000", "")
	sb.mustReach("host", "172.17.0.1:8000", "")
	// Hairpin: a neighbour and the container itself through the host's address.
	sb.mustReach("c2", "192.0.2.1:8000", "")
	sb.mustReach("web", "192.0.2.1:8000", "")

	// Only published ports are reachable from outside the bridge.
	sb.mustRun("lan", "ip", "route", "add", "172.16.0.0/12", "via", "192.0.2.1")
	sb.mustNotReach("lan", "172.17.0.2:81", "not published")
	sb.mustNotReach("lan", "172.17.0.3:80", "c2 publishes nothing")
	// Isolated networks do not reach each other; a bridge still reaches itself.
	sb.mustNotReach("c3", "172.17.0.2:80", "mynet and docker0 are isolated")
	sb.mustReach("c2", "172.17.0.2:80", "172.17.0.3")

	// nft list ruleset teaches: rules carry where they came from.
	ruleset := sb.mustRun("host", "nft", "list", "ruleset")
	for _, want := range []string{
		`table inet netlab-nat`,
		`ip saddr 172.17.0.0/16 oifname != "docker0" counter packets`,
		`masquerade comment "docker0: masquerade 172.17.0.0/16"`,
		"fib daddr type local tcp dport @docker0-tcp-ports counter packets",
		`dnat ip to tcp dport map @docker0-tcp-dnat comment "docker0: published tcp ports"`,
		"elements = { 8000 : 172.17.0.2 . 80 }",
		`iifname "docker0" oifname "mynet" counter packets`,
	} {
		if !strings.Contains(ruleset, want) {
			t.Errorf("nft list ruleset lacks %q:\n%s", want, ruleset)
		}
	}
}

func TestNftNoBatchWhenEqualAndRepairAfterFlush(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, natLab)
	up(t, d, desired)

	// Rule handles, without the counters (they count background traffic).
	counters := regexp.MustCompile(`counter packets \d+ bytes \d+`)
	handles := counters.ReplaceAllString(sb.mustRun("host", "nft", "-a", "list", "table", "inet", "netlab-nat"), "counter")
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Fatalf("second plan: %v", got)
	}
	up(t, d, desired)
	if again := counters.ReplaceAllString(sb.mustRun("host", "nft", "-a", "list", "table", "inet", "netlab-nat"), "counter"); again != handles {
		t.Errorf("a no-op up rewrote the table (handles changed):\nbefore:\n%s\nafter:\n%s", handles, again)
	}

	sb.mustRun("host", "nft", "flush", "table", "inet", "netlab-nat")
	plan, err := r.MakePlan(context.Background(), d, desired)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	plan.WriteText(&b)
	if !strings.Contains(b.String(), "~ nft     host: table inet netlab-nat (") ||
		!strings.Contains(b.String(), `+ nat-prerouting: fib daddr type local tcp dport @docker0-tcp-ports counter dnat ip to tcp dport map @docker0-tcp-dnat comment "docker0: published tcp ports"`) {
		t.Errorf("plan after flushing the table by hand:\n%s", b.String())
	}
	if len(plan.Actions) != 1 {
		t.Errorf("want one action (replace the table), got:\n%s", b.String())
	}
	up(t, d, desired)
	harness.Serve(t, sb.nsPath("web"), ":80")
	sb.mustReach("lan", "192.0.2.1:8000", "192.0.2.2")

	// A published port removed from its map by hand is seen, and put back.
	sb.mustRun("host", "nft", "delete", "element", "inet", "netlab-nat", "docker0-tcp-dnat", "{ 8000 }")
	sb.mustNotReach("lan", "192.0.2.1:8000", "the port's map element is gone")
	b.Reset()
	if plan, err = r.MakePlan(context.Background(), d, desired); err != nil {
		t.Fatal(err)
	}
	plan.WriteText(&b)
	if !strings.Contains(b.String(), "(0 rules to add, 0 to remove; 1 set element to add, 0 to remove)") ||
		!strings.Contains(b.String(), "+ map docker0-tcp-dnat: 8000 : 172.17.0.2 . 80") {
		t.Errorf("plan after deleting a map element by hand:\n%s", b.String())
	}
	up(t, d, desired)
	sb.mustReach("lan", "192.0.2.1:8000", "192.0.2.2")
}

func TestICCOffAndForeignTablesUntouched(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	// Another tool's tables: one that drops forwarded traffic (as Docker's iptables
	// FORWARD does), one unrelated.
	sb.mustRun("host", "nft", "add table ip filter")
	sb.mustRun("host", "nft", "add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }")
	sb.mustRun("host", "nft", "add table inet other")
	sb.mustRun("host", "nft", "add chain inet other input { type filter hook input priority 0; policy accept; }")
	sb.mustRun("host", "nft", `add rule inet other input tcp dport 22 counter accept comment "not netlab's"`)
	foreign := func() string {
		return sb.mustRun("host", "nft", "-a", "list", "table", "ip", "filter") + sb.mustRun("host", "nft", "-a", "list", "table", "inet", "other")
	}
	before := foreign()

	desired := harness.DesiredFromText(t, strings.Replace(natLab, "masquerade: true, isolated: true}\n  mynet", "masquerade: true, isolated: true, icc: false}\n  mynet", 1))
	plan, err := r.MakePlan(context.Background(), d, desired)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], "table ip filter, chain FORWARD has policy drop") {
		t.Errorf("plan warnings = %q, want the forward drop of table ip filter explained", plan.Warnings)
	}
	up(t, d, desired)
	sb.mustRun("host", "nft", "delete table ip filter") // out of the way, to test icc itself

	harness.Serve(t, sb.nsPath("web"), ":80")
	sb.mustNotReach("c2", "172.17.0.2:80", "icc is off on docker0")
	sb.mustReach("lan", "192.0.2.1:8000", "192.0.2.2") // published ports still work

	down(t, d, "nat")
	if got := sb.mustRun("host", "nft", "-a", "list", "table", "inet", "other"); !strings.Contains(before, got) {
		t.Errorf("another tool's table changed:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	if out := sb.mustRun("host", "nft", "list", "tables"); strings.Contains(out, "netlab") {
		t.Errorf("the lab's table is still there after down:\n%s", out)
	}
}

// TestLargeSetsAreWrittenWhole: a map of 3000 published ports is more than one
// netlink attribute holds (64 KiB); every element must reach the kernel, and
// the next plan must find the table as written.
func TestLargeSetsAreWrittenWhole(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	set := &r.Set{Name: "docker0-tcp-dnat", Key: []r.DataType{r.TypeInetService}, Data: []r.DataType{r.TypeIPv4Addr, r.TypeInetService}}
	for i := range 3000 {
		addr := netip.AddrFrom4([4]byte{172, 17, byte((i + 2) / 256), byte((i + 2) % 256)})
		set.Add(r.Element{Key: []r.Value{r.PortValue(uint16(10000 + i))}, Data: []r.Value{r.AddrValue(addr), r.PortValue(80)}})
	}
	desired := r.NewState("big")
	desired.Tables[r.Host] = &r.Table{NS: r.Host, Name: r.TableName("big"), Sets: []*r.Set{set}}
	up(t, d, desired)
	if got := planLines(t, d, desired); len(got) != 0 {
		t.Fatalf("plan after writing 3000 elements: %v", got)
	}
	out := sb.mustRun("host", "nft", "list", "map", "inet", r.TableName("big"), "docker0-tcp-dnat")
	if n := strings.Count(out, " : 172.17."); n != 3000 {
		t.Errorf("nft lists %d elements, want 3000", n)
	}
}
