package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestDockerIptablesEditTakesAChainAway: an edit after which the lab writes
// nothing more in a chain (Docker 28's raw-table drop of its last container)
// takes the lab's rules in that chain away; a second up is "No changes.".
// The chain was left out of what netlab read, and the stale drop stayed.
func TestDockerIptablesEditTakesAChainAway(t *testing.T) {
	sb := harness.NewSandbox(t)
	save, ruleset := rawSave(sb), sb.OK("nft", "list", "ruleset")
	withWeb := writeLab(t, "edit28.yaml", "name: edit28\ndocker: {version: \"28\", firewall: iptables}\ncontainers:\n  web: {}\n")
	empty := writeLab(t, "edit28-empty.yaml", "name: edit28\ndocker: {version: \"28\", firewall: iptables}\nnetworks:\n  bridge: {}\n")
	sb.OK("netlab", "up", withWeb)
	drop := "-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP"
	if raw := sb.OK("iptables-save", "-t", "raw"); !strings.Contains(raw, drop) {
		t.Fatalf("no raw drop for web:\n%s", raw)
	}
	sb.OK("netlab", "up", empty)
	if raw := sb.OK("iptables-save", "-t", "raw"); strings.Contains(raw, drop) {
		t.Errorf("web is gone from the file, its raw drop is still there:\n%s", raw)
	}
	if got := sb.OK("netlab", "up", empty); got != "No changes.\n" {
		t.Errorf("second up printed %q", got)
	}
	layoutDown(t, sb, empty, "", save, ruleset)
}
