package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestDockerIptablesScriptKilledBeforeMark: the plan's script killed between
// iptables-restore and netlab __mark-iptables leaves Docker's chains
// unmarked, a dockerd's to netlab. plan refuses and says how to recover;
// netlab down removes the lab's other objects but does not forget the lab:
// it exits non-zero, names the chains left, gives netlab __mark-iptables and
// the commands that remove them by hand, and keeps the note of
// __save-iptables (iptables.json), their only proof. __mark-iptables then
// takes them for the lab's, and down removes them and puts FORWARD's policy
// back: iptables-save and nft list ruleset are as before.
func TestDockerIptablesScriptKilledBeforeMark(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "dipt.yaml", dockerIptablesFile("26.1", "true"))
	before := tablesOf(sb)
	save, restore, mark := iptablesSteps(t, sb.OK("netlab", "plan", "-o", "commands", lab))
	runSteps(t, sb, "netlab __record dipt "+lab, save, restore)
	recovery := []string{"netlab __mark-iptables dipt host", "ip filter DOCKER", "ip nat DOCKER",
		"nft delete chain ip filter DOCKER-USER", "iptables -P FORWARD ACCEPT"}
	res := sb.Exec("netlab", "plan", lab)
	for _, want := range recovery {
		if res.Code == 0 || !strings.Contains(res.Stderr, want) {
			t.Errorf("plan beside the script's unmarked chains: exit %d, want a conflict saying %q:\n%s%s", res.Code, want, res.Stdout, res.Stderr)
		}
	}
	res = sb.Exec("netlab", "down", "--lab", "dipt")
	for _, want := range append(recovery, "lab dipt is not forgotten", "/run/netlab/dipt/iptables.json") {
		if res.Code == 0 || !strings.Contains(res.Stderr, want) {
			t.Errorf("down beside the script's unmarked chains: exit %d, want it to say %q:\n%s%s", res.Code, want, res.Stdout, res.Stderr)
		}
	}
	sb.OK("test", "-f", "/run/netlab/dipt/iptables.json")
	if got := rawSave(sb); !strings.Contains(got, ":FORWARD DROP") || !strings.Contains(got, ":DOCKER-USER") {
		t.Errorf("a refused down changed the script's rules:\n%s", got)
	}
	runSteps(t, sb, mark)
	sb.OK("netlab", "down", "--lab", "dipt")
	asBefore(t, sb, "__mark-iptables and down", before)
	if res := sb.Exec("test", "-e", "/run/netlab/dipt"); res.Code == 0 {
		t.Errorf("down after __mark-iptables left the lab's state directory")
	}
}

// TestDockerIptablesMarksLost: iptables-save | iptables-restore over a lab
// brought up by netlab up drops every mark (iptables-save does not print
// them): the chains are a dockerd's to netlab, and no note says they are the
// lab's (__mark-iptables has nothing to go by and refuses). plan's conflict
// then gives the commands that remove the chains, the rules jumping to them
// and FORWARD's policy by hand.
func TestDockerIptablesMarksLost(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "dipt.yaml", dockerIptablesFile("26.1", "true"))
	sb.OK("netlab", "up", lab)
	runSteps(t, sb, "iptables-save | iptables-restore")
	res := sb.Exec("netlab", "plan", lab)
	for _, want := range []string{"already has a chain DOCKER-USER that netlab did not create", "marks were lost",
		"nft delete chain ip filter DOCKER-USER", "nft delete chain ip nat DOCKER", "iptables -P FORWARD ACCEPT"} {
		if res.Code == 0 || !strings.Contains(res.Stderr, want) {
			t.Errorf("plan after iptables-save | iptables-restore: exit %d, want a conflict saying %q:\n%s%s", res.Code, want, res.Stdout, res.Stderr)
		}
	}
	if res := sb.Exec("netlab", "__mark-iptables", "dipt", "host"); res.Code == 0 || !strings.Contains(res.Stderr, "nothing saved of the tables") {
		t.Errorf("__mark-iptables after the marks were lost: exit %d, want a refusal:\n%s", res.Code, res.Stderr)
	}
}
