package hostile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// iptablesSteps are the three steps of the plan's script that write Docker's
// iptables layout: netlab __save-iptables, iptables-restore, netlab
// __mark-iptables (each a shell command line).
func iptablesSteps(t *testing.T, script string) (save, restore, mark string) {
	t.Helper()
	lines := strings.Split(script, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "netlab __save-iptables "):
			save = l
		case strings.HasPrefix(l, "netlab __mark-iptables "):
			mark = l
		case strings.HasPrefix(l, "iptables-restore "):
			end := i + 1
			for end < len(lines) && lines[end] != "EOF" {
				end++
			}
			restore = strings.Join(lines[i:end+1], "\n") + "\n"
		}
	}
	if save == "" || restore == "" || mark == "" {
		t.Fatalf("no __save-iptables, iptables-restore and __mark-iptables in the plan's script:\n%s", script)
	}
	return save, restore, mark
}

// runSteps runs shell command lines in the sandbox, each expected to succeed.
func runSteps(t *testing.T, sb *harness.Sandbox, steps ...string) {
	t.Helper()
	for _, s := range steps {
		if res := sb.Exec("sh", "-ec", s); res.Code != 0 {
			t.Fatalf("%s\nexit %d\n%s%s", s, res.Code, res.Stdout, res.Stderr)
		}
	}
}

// tables is what iptables-save and nft list ruleset print.
type tables struct{ save, ruleset string }

func tablesOf(sb *harness.Sandbox) tables {
	return tables{rawSave(sb), sb.OK("nft", "list", "ruleset")}
}

// asBefore checks that iptables-save and nft list ruleset print what they
// printed before what did.
func asBefore(t *testing.T, sb *harness.Sandbox, what string, before tables) {
	t.Helper()
	now := tablesOf(sb)
	if now.save != before.save {
		t.Errorf("%s left iptables-save as:\n%s\nbefore:\n%s", what, now.save, before.save)
	}
	if now.ruleset != before.ruleset {
		t.Errorf("%s left nft list ruleset as:\n%s\nbefore:\n%s", what, now.ruleset, before.ruleset)
	}
}

// TestDockerIptablesScriptEveryRelease: for each release with and without
// the userland proxy, the iptables part of the plan's script (netlab
// __save-iptables, iptables-restore, netlab __mark-iptables) writes dockerd's
// iptables-save, and netlab takes every rule iptables-restore wrote for its
// own: __mark-iptables compares each with what up writes, expression by
// expression (iptables-nft's encoding, the order of its matches included),
// the next plan has nothing to change there, and down leaves iptables-save
// and nft list ruleset as they were.
func TestDockerIptablesScriptEveryRelease(t *testing.T) {
	eachDockerd(t, func(t *testing.T, sb *harness.Sandbox, lab, want string) {
		before := tablesOf(sb)
		save, restore, mark := iptablesSteps(t, sb.OK("netlab", "plan", "-o", "commands", lab))
		runSteps(t, sb, "netlab __record dipt "+lab, save, restore, mark)
		if got := normalisedSave(sb, nil); got != want {
			t.Errorf("iptables-save after the script:\n%s\nwant:\n%s", got, want)
		}
		if plan := sb.OK("netlab", "plan", lab); strings.Contains(plan, "iptables") {
			t.Errorf("after the script's iptables part, plan still wants:\n%s", plan)
		}
		sb.OK("netlab", "down", "--lab", "dipt")
		asBefore(t, sb, "down", before)
	})
}

// eachDockerd runs f for each release (20.10, 26.1, 28, 29) with and without
// the userland proxy, in parallel, each in a sandbox of its own with the
// docker-bridge scenario's lab file dipt.yaml in that layout and that
// dockerd's iptables-save.
func eachDockerd(t *testing.T, f func(t *testing.T, sb *harness.Sandbox, lab, want string)) {
	for _, version := range []string{"20.10", "26.1", "28", "29"} {
		layout := map[string]string{"20.10": "26.1"}[version] // the same rules (docker-facts.md)
		if layout == "" {
			layout = version
		}
		for _, proxy := range []string{"true", "false"} {
			mode := map[string]string{"true": "proxy", "false": "noproxy"}[proxy]
			t.Run(version+"/"+mode, func(t *testing.T) {
				t.Parallel()
				sb := harness.NewSandbox(t)
				f(t, sb, writeLab(t, "dipt.yaml", dockerIptablesFile(version, proxy)), dockerdSave(t, "dockerd-"+layout+"-"+mode))
			})
		}
	}
}

// TestDockerIptablesScriptKeepsTheMachinesRules: labs/docker-bridge-iptables.yaml
// built by its plan's script on a machine with rules of its own in FORWARD
// (policy ACCEPT) and nat POSTROUTING, one of them the very rule the lab
// writes: the next plan is "No changes."; netlab inspect lists the lab's
// rules with their counters, not the machine's; the iptables part run again, each
// netlab step twice (__save-iptables again after iptables-restore, as a
// re-run would), leaves the same rules, none twice, and still nothing to
// change; down removes the lab's rules only, and puts FORWARD's policy back to
// ACCEPT (what it was before the first __save-iptables, not the DROP the
// script set): iptables-save and nft list ruleset are as before.
func TestDockerIptablesScriptKeepsTheMachinesRules(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab, err := filepath.Abs("../../labs/docker-bridge-iptables.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sb.OK("iptables", "-A", "FORWARD", "-s", "203.0.113.7", "-j", "ACCEPT")
	sb.OK("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE")
	before := tablesOf(sb)
	plan := sb.OK("netlab", "plan", "-o", "commands", lab)
	script := filepath.Join(t.TempDir(), "plan.sh")
	if err := os.WriteFile(script, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := sb.Exec("sh", script); res.Code != 0 {
		t.Fatalf("the plan's script failed: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if got := sb.SettledPlan(lab); got != "No changes.\n" {
		t.Errorf("after the plan's script, plan still wants:\n%s", got)
	}
	written := normalisedSave(sb, nil)
	for _, line := range []string{":FORWARD DROP", "-A FORWARD -s 203.0.113.7/32 -j ACCEPT\n-A FORWARD -j DOCKER-USER",
		"-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n-A POSTROUTING -s 172.18.0.0/16"} {
		if !strings.Contains(written, line) {
			t.Errorf("no %q in iptables-save after the script:\n%s", line, written)
		}
	}
	// inspect shows the lab's rules (dockerd's own among them) with their
	// counters, not the machine's.
	inspect := sb.OK("netlab", "inspect", "docker-bridge-iptables")
	for _, line := range []string{"filter :FORWARD DROP\n", "filter -A FORWARD -j DOCKER-USER  [",
		"nat    -A DOCKER ! -i docker0 -p tcp -m tcp --dport 8000 -j DNAT --to-destination 172.17.0.2:80  ["} {
		if !strings.Contains(inspect, line) {
			t.Errorf("no %q in netlab inspect:\n%s", line, inspect)
		}
	}
	if strings.Contains(inspect, "203.0.113.7") || strings.Count(inspect, "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE") != 1 {
		t.Errorf("netlab inspect shows the machine's own rules as the lab's:\n%s", inspect)
	}
	save, restore, mark := iptablesSteps(t, plan)
	runSteps(t, sb, save, restore, save, mark, mark)
	if got := normalisedSave(sb, nil); got != written {
		t.Errorf("iptables-save after the iptables part ran again:\n%s\nafter the first run:\n%s", got, written)
	}
	if got := sb.SettledPlan(lab); got != "No changes.\n" {
		t.Errorf("after the iptables part ran again, plan wants:\n%s", got)
	}
	sb.OK("netlab", "down", lab)
	asBefore(t, sb, "down", before)
}

// TestDockerIptablesScriptMarksOnlyItsOwnRules: the script's netlab steps
// never make rules netlab did not write by the script the lab's: beside a
// running dockerd's chains, or another lab's layout, __save-iptables refuses
// and changes nothing; a rule anyone added between __save-iptables and
// __mark-iptables in a chain the lab writes, or a layout written without
// __save-iptables first, makes __mark-iptables refuse and mark nothing, so
// that netlab then sees unmarked Docker chains (a dockerd's) as it would
// without the script.
func TestDockerIptablesScriptMarksOnlyItsOwnRules(t *testing.T) {
	cases := []struct {
		name       string
		before     []string // commands before __record
		meanwhile  []string // commands between __save-iptables and iptables-restore
		saveFails  string   // what __save-iptables says when it refuses
		markFails  string   // what __mark-iptables says when it refuses
		skipSaving bool     // no __save-iptables before iptables-restore
	}{
		{name: "dockerd", before: []string{"iptables -N DOCKER-USER"},
			saveFails: "table ip filter already has a chain DOCKER-USER that netlab did not create"},
		{name: "another lab", before: []string{"netlab up LAB2"},
			saveFails: "lab diptb has Docker's iptables layout there"},
		{name: "a rule added meanwhile", meanwhile: []string{"iptables -t nat -A POSTROUTING -s 10.9.0.0/16 -j MASQUERADE"},
			markFails: "ip nat chain POSTROUTING holds 4 rules written since netlab __save-iptables, and lab dipt has 3 there: nothing was marked"},
		{name: "not saved", skipSaving: true, markFails: "nothing saved of the tables before lab dipt's rules were written"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sb := harness.NewSandbox(t)
			lab := writeLab(t, "dipt.yaml", dockerIptablesFile("26.1", "true"))
			lab2 := writeLab(t, "diptb.yaml", strings.ReplaceAll(secondIptablesLab, "VERSION", "26.1"))
			save, restore, mark := iptablesSteps(t, sb.OK("netlab", "plan", "-o", "commands", lab))
			for _, cmd := range c.before {
				runSteps(t, sb, strings.ReplaceAll(cmd, "LAB2", lab2))
			}
			runSteps(t, sb, "netlab __record dipt "+lab)
			if c.saveFails != "" {
				before := tablesOf(sb)
				res := sb.Exec("sh", "-c", save)
				if res.Code == 0 || !strings.Contains(res.Stderr, c.saveFails) || !strings.Contains(res.Stderr, "nothing was changed") {
					t.Errorf("__save-iptables: exit %d, want a refusal saying %q and that nothing was changed:\n%s", res.Code, c.saveFails, res.Stderr)
				}
				asBefore(t, sb, "a refused __save-iptables", before)
				return
			}
			if !c.skipSaving {
				runSteps(t, sb, save)
			}
			runSteps(t, sb, c.meanwhile...)
			runSteps(t, sb, restore)
			res := sb.Exec("sh", "-c", mark)
			if res.Code == 0 || !strings.Contains(res.Stderr, c.markFails) {
				t.Errorf("__mark-iptables: exit %d, want a refusal saying %q:\n%s", res.Code, c.markFails, res.Stderr)
			}
			// Not one rule marked: the chains are a dockerd's to netlab.
			res = sb.Exec("netlab", "plan", lab)
			if res.Code == 0 || !strings.Contains(res.Stderr, "that netlab did not create") {
				t.Errorf("plan after a refused __mark-iptables: exit %d, want the conflict of a dockerd's chains:\n%s%s", res.Code, res.Stdout, res.Stderr)
			}
		})
	}
}

// TestDockerIptablesScriptSaveAgainChecks: __save-iptables run again before
// __mark-iptables keeps what it first found, and still refuses what it would
// refuse the first time: the Docker chains iptables-restore wrote since (every
// unmarked rule in them newer than the first snapshot) are the script's, but
// a Docker chain holding an older rule (here: ip filter deleted and made
// again by a dockerd, its handles counted from the start) is a dockerd's, and
// __save-iptables refuses and changes nothing.
func TestDockerIptablesScriptSaveAgainChecks(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "dipt.yaml", dockerIptablesFile("26.1", "true"))
	save, restore, _ := iptablesSteps(t, sb.OK("netlab", "plan", "-o", "commands", lab))
	runSteps(t, sb, "netlab __record dipt "+lab)
	for range 10 {
		sb.OK("iptables", "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
	}
	runSteps(t, sb, save, restore, save)
	sb.OK("nft", "delete", "table", "ip", "filter")
	sb.OK("iptables", "-N", "DOCKER")
	sb.OK("iptables", "-A", "DOCKER", "-j", "RETURN")
	before := tablesOf(sb)
	res := sb.Exec("sh", "-c", save)
	if res.Code == 0 || !strings.Contains(res.Stderr, "table ip filter already has a chain DOCKER that netlab did not create") ||
		!strings.Contains(res.Stderr, "nothing was changed") {
		t.Errorf("__save-iptables again beside a dockerd's DOCKER: exit %d, want a refusal:\n%s", res.Code, res.Stderr)
	}
	asBefore(t, sb, "a refused __save-iptables", before)
}
