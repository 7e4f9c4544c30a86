package kernel

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"netlab/tests/harness"
)

// TestUserdataOfOthersIsReadSafely: the userdata of rules and tables netlab
// did not write can hold anything; reading it never panics, and only a mark
// netlab could have written counts as one.
func TestUserdataOfOthersIsReadSafely(t *testing.T) {
	for _, ud := range [][]byte{
		[]byte("managed-by-x"),    // a length byte of 'a' (97) past the end
		{0x7e},                    // a type without a length
		{0x7e, 5, 'n', 'e'},       // a value cut short
		{0x01, 0, 0x7e, 200, 'x'}, // a good attribute, then a bad one
	} {
		if s, ok := userdataString(ud[:len(ud):len(ud)], markType); ok {
			t.Errorf("userdataString(%q) = %q, want none", ud, s)
		}
		if _, ok := markOf(ud[:len(ud):len(ud)]); ok {
			t.Errorf("markOf(%q) read a mark", ud)
		}
		if lab := tableOwner(ud[:len(ud):len(ud)]); lab != "" {
			t.Errorf("tableOwner(%q) = %q", ud, lab)
		}
	}
	good := iptMark{lab: "web", seq: 3, rec: iptRecord{dockerd: "26.1", policy: "ACCEPT"}}
	if m, ok := markOf(good.bytes()); !ok || m != good {
		t.Errorf("markOf(its own mark) = %+v, %v", m, ok)
	}
	for _, forged := range []string{"netlab:../x|1|26.1|0|ACCEPT", "netlab:web|1|26.1|0|REJECT\n", "netlab:WEB|1|26.1|0|"} {
		if m, ok := markOf(userdata.AppendString(nil, markType, forged)); ok {
			t.Errorf("markOf(%q) = %+v: a mark netlab never writes", forged, m)
		}
	}
	if lab := tableOwner(userdata.AppendString(nil, markType, "netlab:x y")); lab != "" {
		t.Errorf("tableOwner of a forged mark = %q", lab)
	}
}

// TestForeignRuleWithOddUserdata: another tool's rule in the host's ip filter
// with userdata that is not a type-length-value list (it panicked every netlab
// command on the machine: the host's iptables tables are read for every lab).
func TestForeignRuleWithOddUserdata(t *testing.T) {
	sb := newSandbox(t)
	c, err := nftables.New(nftables.WithNetNSFd(int(sb.host)))
	if err != nil {
		t.Fatal(err)
	}
	filter := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
	forward := c.AddChain(&nftables.Chain{Name: "FORWARD", Table: filter, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	c.AddRule(&nftables.Rule{Table: filter, Chain: forward, Exprs: []expr.Any{&expr.Counter{}}, UserData: []byte("managed-by-x")})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	d := sb.driver()
	up(t, d, harness.DesiredFromText(t, "name: odd\nbridges:\n  br0: {addresses: [10.1.0.1/24], firewall: iptables}\nnamespaces:\n  a: {}\nlinks:\n  - [a:eth0, br0:va]\n"))
	if rules, err := c.GetRules(filter, forward); err != nil || len(rules) == 0 || string(rules[len(rules)-1].UserData) != "managed-by-x" && string(rules[0].UserData) != "managed-by-x" {
		t.Errorf("the foreign rule is gone or changed: %v %v", rules, err)
	}
}
