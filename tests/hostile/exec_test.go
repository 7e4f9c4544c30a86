package hostile

import (
	"os"
	"strings"
	"testing"

	"netlab/tests/harness"
)

const execLab = `name: setup
host:
  exec:
    - echo host >>/run/host.log
namespaces:
  a:
    interfaces:
      eth0: {addresses: [10.30.0.2/24]}
    exec:
      - ip -o -4 addr show dev eth0 | grep -o 10.30.0.2/24 >>/run/a.log
      - SECOND
    run:
      - {cmd: "cat /run/a.log; exec sleep 1000"}
  b:
    interfaces:
      eth0: {addresses: [10.30.0.3/24]}
links:
  - [a:eth0, b:eth0]
`

func execLabWith(second string) string { return strings.Replace(execLab, "SECOND", second, 1) }

// TestExecRunsOnceAndAgainFromAnEdit: exec: commands run once, in order, in
// their namespace once its addresses exist; a second up runs none; an edited
// list runs again from the first changed command on; down forgets the record
// (the host's commands are not undone, and run again after the next up).
func TestExecRunsOnceAndAgainFromAnEdit(t *testing.T) {
	sb := harness.NewSandbox(t)
	path := writeLab(t, "setup.yaml", execLabWith("echo two >>/run/a.log"))
	plan := sb.OK("netlab", "plan", path)
	for _, want := range []string{
		"+ exec    host: echo host >>/run/host.log\n",
		"+ exec    a: ip -o -4 addr show dev eth0 | grep -o 10.30.0.2/24 >>/run/a.log\n+ exec    a: echo two >>/run/a.log\n",
		"+ exec    host: echo host >>/run/host.log\n+ process a:",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	script := sb.OK("netlab", "plan", "-o", "commands", path)
	if want := "ip netns exec a sh -c 'echo two >>/run/a.log'\n"; !strings.Contains(script, want) {
		t.Errorf("plan -o commands lacks %q:\n%s", want, script)
	}
	upConverges(t, sb, "first up", path)
	upConverges(t, sb, "second up", path)
	if got := sb.OK("cat", "/run/a.log", "/run/host.log"); got != "10.30.0.2/24\ntwo\nhost\n" {
		t.Errorf("after two ups, the commands wrote:\n%s", got)
	}

	rewriteLab(t, path, execLabWith("echo TWO >>/run/a.log"))
	if got := sb.OK("netlab", "plan", path); got != "+ exec    a: echo TWO >>/run/a.log (edited)\nPlan: 1 to add, 0 to change, 0 to destroy.\n" {
		t.Errorf("plan of the edit:\n%s", got)
	}
	upConverges(t, sb, "edit", path)
	if got := sb.OK("cat", "/run/a.log"); got != "10.30.0.2/24\ntwo\nTWO\n" {
		t.Errorf("after the edit, a's commands wrote:\n%s", got)
	}

	down := sb.OK("netlab", "down", path)
	if !strings.Contains(down, "- exec    host: forget 1 command that ran (what they did is not undone)") {
		t.Errorf("down's plan does not say the host's command is forgotten:\n%s", down)
	}
	upConverges(t, sb, "up after down", path)
	if got := sb.OK("cat", "/run/host.log"); got != "host\nhost\n" {
		t.Errorf("the host's command after up, down, up wrote:\n%s", got)
	}
}

// TestFailingExecFailsUpWithItsOutput: a failing command fails up with its
// exit status and output; the commands after it do not run, and the next up
// runs it again (what succeeded before it is not run again).
func TestFailingExecFailsUpWithItsOutput(t *testing.T) {
	sb := harness.NewSandbox(t)
	path := writeLab(t, "setup.yaml", execLabWith("echo cannot configure >&2; exit 4"))
	res := sb.Fails("netlab", "up", path)
	for _, want := range []string{`exec "echo cannot configure >&2; exit 4" failed (exit status 4)`, "\n    cannot configure\n"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("up's error lacks %q:\n%s", want, res.Stderr)
		}
	}
	if got := sb.OK("netlab", "plan", path); !strings.HasPrefix(got, "+ exec    a: echo cannot configure >&2; exit 4\n+ process a:") {
		t.Errorf("plan after the failure should run the failed command again, and only it:\n%s", got)
	}
	rewriteLab(t, path, execLabWith("echo fixed >>/run/a.log"))
	upConverges(t, sb, "fixed", path)
	if got := sb.OK("cat", "/run/a.log"); got != "10.30.0.2/24\nfixed\n" {
		t.Errorf("a's commands wrote:\n%s", got)
	}
}

// rewriteLab replaces the content of a lab file written by writeLab.
func rewriteLab(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPlanScriptRecordsExecs: the `plan -o commands` script runs the exec:
// commands and records them through netlab, as up does: the next plan has
// nothing to run again, and an up after it runs nothing twice.
func TestPlanScriptRecordsExecs(t *testing.T) {
	sb := harness.NewSandbox(t)
	path := writeLab(t, "setup.yaml", execLabWith("echo two >>/run/a.log"))
	runScript(t, sb, path)
	if got := sb.SettledPlan(path); got != "No changes.\n" {
		t.Errorf("plan after the script:\n%s", got)
	}
	sb.OK("netlab", "up", path)
	if got := sb.OK("cat", "/run/a.log", "/run/host.log"); got != "10.30.0.2/24\ntwo\nhost\n" {
		t.Errorf("after the script and an up, the commands wrote:\n%s", got)
	}

	// A command removed from the file is forgotten by the script too: put
	// back, it runs again, as after an up.
	rewriteLab(t, path, strings.Replace(execLab, "      - SECOND\n", "", 1))
	runScript(t, sb, path)
	if got := sb.SettledPlan(path); got != "No changes.\n" {
		t.Errorf("plan after the script that forgot a command:\n%s", got)
	}
	rewriteLab(t, path, execLabWith("echo two >>/run/a.log"))
	if got := sb.OK("netlab", "plan", path); !strings.HasPrefix(got, "+ exec    a: echo two >>/run/a.log\n") {
		t.Errorf("plan of the command put back after the script forgot it:\n%s", got)
	}
}

// runScript writes the `plan -o commands` script of a lab and runs it.
func runScript(t *testing.T, sb *harness.Sandbox, path string) {
	t.Helper()
	script := t.TempDir() + "/plan.sh"
	if err := os.WriteFile(script, []byte(sb.OK("netlab", "plan", "-o", "commands", path)), 0o644); err != nil {
		t.Fatal(err)
	}
	sb.OK("sh", "-e", script)
}

// TestExecRunsUnderTheNamespacesHostname: an exec: command of a namespace
// with a hostname of its own runs in its UTS namespace, from up and from the
// script of plan -o commands alike (where a `hostname NAME` would otherwise
// rename the machine).
func TestExecRunsUnderTheNamespacesHostname(t *testing.T) {
	sb := harness.NewSandbox(t)
	path := writeLab(t, "named.yaml", "name: named\nnamespaces:\n  web:\n    hostname: web1\n    exec: [\"hostname >>/run/web-hostname\"]\n")
	runScript(t, sb, path)
	sb.OK("netlab", "down", path)
	sb.OK("netlab", "up", path)
	if got := sb.OK("cat", "/run/web-hostname"); got != "web1\nweb1\n" {
		t.Errorf("hostname seen by the exec command, from the script then from up:\n%s", got)
	}
}

// TestUpNamesAProcessThatEndedAfterItWasReady: a process that was ready and
// ended before up's last look (a server that exits right after it binds) fails
// up with its name and the end of its log, not only a plan line to start it.
// The second process keeps the apply going for a second after the first one
// ended.
func TestUpNamesAProcessThatEndedAfterItWasReady(t *testing.T) {
	sb := harness.NewSandbox(t)
	const ends = "touch /run/ended-a; sleep 0.2; echo giving up; exit 3"
	path := writeLab(t, "ended.yaml", `name: ended
namespaces:
  a:
    run:
      - {cmd: "`+ends+`", ready: {file: /run/ended-a}}
      - {cmd: "sleep 1.2; touch /run/ended-b; exec sleep 1000", ready: {file: /run/ended-b}}
`)
	res := sb.Fails("netlab", "up", path)
	// The namespace's log is shared: the other process's start may be among
	// the lines.
	for _, want := range []string{"still to do:\n  + process a: " + ends, `netns a: "` + ends + `" was ready, and has ended since; the last lines of its log /run/netlab/ended/a.log:` + "\n    ", "\n    giving up\n"} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("up's error lacks %q:\n%s", want, res.Stderr)
		}
	}
	sb.OK("netlab", "down", path)
}

// TestNetlabOnItsOwnLabFromAnExecIsRefused: an exec: command that runs netlab on
// its own lab would wait for the lock the up running it holds, and that up
// waits for the command: both waited forever. The inner netlab waits at most
// 10 s, then refuses, naming the run that holds the lock, and the up fails at
// that step.
func TestNetlabOnItsOwnLabFromAnExecIsRefused(t *testing.T) {
	sb := harness.NewSandbox(t)
	path := writeLab(t, "selfcall.yaml", `name: selfcall
host:
  exec:
    - netlab down --lab selfcall
namespaces:
  a: {interfaces: {eth0: {addresses: [10.31.0.2/24]}}}
  b: {interfaces: {eth0: {addresses: [10.31.0.3/24]}}}
links:
  - [a:eth0, b:eth0]
`)
	res := sb.Fails("timeout", "30", "netlab", "up", path)
	if res.Code == 124 || !strings.Contains(res.Stderr, "+ exec    host: netlab down --lab selfcall") ||
		!strings.Contains(res.Stderr, "lab selfcall is still held after 10s by the netlab run (PID ") {
		t.Errorf("up of a lab whose exec: runs netlab on it: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}
