package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
	"netlab/tests/harness"
)

// TestIsolationComesFirst: a packet from an isolated network must meet its drop
// before another bridge's published-port accept, whatever order the bridges are
// written in (the accept matches any input interface but the bridge's own).
func TestIsolationComesFirst(t *testing.T) {
	s := harness.DesiredFromText(t, `
name: iso
bridges:
  docker0: {addresses: [172.17.0.1/16], isolated: true}
  mynet: {addresses: [172.18.0.1/16], isolated: true}
namespaces:
  web:
    interfaces: {eth0: {addresses: [172.17.0.2/16]}}
    publish: ["8000:80"]
  c3:
    interfaces: {eth0: {addresses: [172.18.0.2/16]}}
links:
  - [web:eth0, docker0]
  - [c3:eth0, mynet]
`)
	var forward []string
	for _, c := range s.Tables[r.Host].Chains {
		if c.Name == "forward" {
			for _, rule := range c.Rules {
				forward = append(forward, rule.Text())
			}
		}
	}
	firstAccept, lastIsolation := -1, -1
	for i, text := range forward {
		if strings.Contains(text, "isolated from") {
			lastIsolation = i
		}
		if strings.Contains(text, "accept") && firstAccept < 0 {
			firstAccept = i
		}
	}
	if lastIsolation < 0 || firstAccept < lastIsolation {
		t.Errorf("isolation drops must all come before any accept:\n%s", strings.Join(forward, "\n"))
	}
}

// TestFinalDropsComeLast: two Docker bridges that are not isolated reach each
// other both ways, whatever their order in the file: each one's "nothing else
// gets in" drop comes after every bridge's accepts, as Docker's policy drop does.
func TestFinalDropsComeLast(t *testing.T) {
	for _, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
		s := harness.DesiredFromText(t, `
name: order
bridges:
  br`+order[0]+`: {addresses: [10.`+map[string]string{"a": "1", "b": "2"}[order[0]]+`.0.1/24], masquerade: true}
  br`+order[1]+`: {addresses: [10.`+map[string]string{"a": "1", "b": "2"}[order[1]]+`.0.1/24], masquerade: true}
`)
		var forward []string
		for _, c := range s.Tables[r.Host].Chains {
			if c.Name == "forward" {
				for _, rule := range c.Rules {
					forward = append(forward, rule.Text())
				}
			}
		}
		lastAccept, firstFinalDrop := -1, len(forward)
		for i, text := range forward {
			if strings.Contains(text, "accept") {
				lastAccept = i
			}
			if strings.Contains(text, "nothing else gets in") && i < firstFinalDrop {
				firstFinalDrop = i
			}
		}
		if firstFinalDrop < lastAccept {
			t.Errorf("bridges %v: a final drop comes before an accept:\n%s", order, strings.Join(forward, "\n"))
		}
	}
}

// TestForeignHostsFileIsAConflict: a hosts file the lab would write, written by
// someone else, is reported before any change and left alone.
func TestForeignHostsFileIsAConflict(t *testing.T) {
	desired := harness.DesiredFromText(t, `
name: names
bridges:
  mynet: {addresses: [172.18.0.1/16], resolve: true}
namespaces:
  c3:
    interfaces: {eth0: {addresses: [172.18.0.2/16]}}
links:
  - [c3:eth0, mynet]
`)
	d := fake.New()
	d.AddForeignFile(r.FileKey{NS: "c3", Name: "hosts"})
	_, err := r.MakePlan(context.Background(), d, desired)
	var conflict *r.ConflictError
	if !errors.As(err, &conflict) || len(conflict.Conflicts) != 1 || !strings.Contains(conflict.Conflicts[0], "/etc/netns/c3/hosts") {
		t.Fatalf("plan with a foreign /etc/netns/c3/hosts: %v, want one conflict naming it", err)
	}
}

// TestPublishedPortsAreLookedUp: publishing more ports adds elements to the
// bridge's sets, not rules, so a packet's way through NAT and the forward chain
// is as long with a hundred ports as with one. A port published on one host
// address keeps a rule of its own.
func TestPublishedPortsAreLookedUp(t *testing.T) {
	lab := func(n int, extra string) *r.State {
		var b strings.Builder
		b.WriteString("name: pub\nbridges:\n  docker0: {addresses: [172.17.0.1/16]}\nnamespaces:\n")
		for i := range n {
			fmt.Fprintf(&b, "  c%d:\n    interfaces: {eth0: {addresses: [172.17.%d.%d/16]}}\n    publish: [\"%d:80\"%s]\n", i, (i+2)/256, (i+2)%256, 8000+i, extra)
			extra = ""
		}
		b.WriteString("links:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - [c%d:eth0, docker0]\n", i)
		}
		return harness.DesiredFromText(t, b.String())
	}
	one, hundred := lab(1, ""), lab(100, "")
	if got, want := hundred.Tables[r.Host].RuleCount(), one.Tables[r.Host].RuleCount(); got != want {
		t.Errorf("100 published ports make %d rules, 1 makes %d: the rules must not grow with the ports", got, want)
	}
	for _, s := range hundred.Tables[r.Host].Sets {
		if len(s.Elements) != 100 {
			t.Errorf("set %s has %d elements, want 100", s.Name, len(s.Elements))
		}
	}
	withHostIP := lab(2, `, "127.0.0.1:9000:81"`)
	if got, want := withHostIP.Tables[r.Host].RuleCount(), one.Tables[r.Host].RuleCount()+4; got != want {
		t.Errorf("a port published on one host address: %d rules, want %d (its forward accept, two DNATs, its hairpin)", got, want)
	}
}

// TestVethWhosePeerIsGoneSaysSo: a veth end whose peer vanished (its namespace
// deleted by hand, the kernel not done destroying it) is replaced "because its
// peer is gone", not because its "peer was :".
func TestVethWhosePeerIsGoneSaysSo(t *testing.T) {
	desired, observed := r.NewState("l"), r.NewState("l")
	host, c := r.InterfaceKey{r.Host, "veth0"}, r.InterfaceKey{"c", "eth0"}
	desired.Interfaces[host] = &r.Interface{InterfaceKey: host, Kind: r.KindVeth, Peer: c}
	desired.Interfaces[c] = &r.Interface{InterfaceKey: c, Kind: r.KindVeth, Peer: host}
	desired.Namespaces["c"] = &r.Netns{Name: "c"}
	observed.Interfaces[host] = &r.Interface{InterfaceKey: host, Kind: r.KindVeth}
	plan, err := r.Diff(desired, observed)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Line(plan.Actions[0]); !strings.Contains(got, "(its peer is gone)") {
		t.Errorf("first action: %q", got)
	}
}
