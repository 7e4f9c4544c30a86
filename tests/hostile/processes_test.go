package hostile

import (
	"os"
	"strings"
	"testing"
	"time"

	"netlab/tests/harness"
)

// Two sandboxes in one PID namespace (two `unshare --net --mount` shells, as the
// tutorial makes them), each with the same lab: down in one leaves the other's
// servers running. A lab's processes are its own by the cgroup netlab started
// them in (named by the network namespace netlab runs in), not by the lab and
// namespace names in their environment, which both sandboxes share.
func TestTwoSandboxesInOnePIDNamespaceKeepTheirOwnProcesses(t *testing.T) {
	a, b := harness.NewSandboxSharedPID(t), harness.NewSandboxSharedPID(t)
	lab := "../../labs/docker-bridge-lowlevel.yaml"
	a.OK("netlab", "up", lab)
	b.OK("netlab", "up", lab)
	t.Cleanup(func() { b.Exec("netlab", "down", lab) })
	if got := b.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("plan in the second sandbox once both are up:\n%s", got)
	}
	a.OK("netlab", "down", lab)
	if res := b.Exec("netlab", "test", lab); res.Code != 0 {
		t.Errorf("netlab test in the second sandbox after down in the first: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if got := b.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("plan in the second sandbox after down in the first:\n%s", got)
	}
}

// A process that drops its environment (env -i) is the lab's all the same: a
// second up does not start another copy, and down stops it, on the host side
// and in a namespace.
func TestProcessesWithoutEnvironmentAreStoppedByDown(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "bare.yaml", `
name: bare
host:
  run: ["exec env -i /bin/sleep 1002.25"]
namespaces:
  web:
    run: ["exec env -i /bin/sleep 1002.5"]
`)
	count := func() string {
		return sb.OK("sh", "-c", "echo $(pgrep -cxf '/bin/sleep 1002.25') $(pgrep -cxf '/bin/sleep 1002.5')")
	}
	sb.OK("netlab", "up", lab)
	sb.OK("netlab", "up", lab)
	// up returns once the shell runs; env may still be on its way to sleep:
	// wait for both, and a moment more for any other copy.
	for deadline := time.Now().Add(3 * time.Second); strings.Contains(" "+count(), " 0") && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if got := count(); got != "1 1\n" {
		t.Errorf("copies after two ups (host, web): %s", got)
	}
	sb.OK("netlab", "down", lab)
	if got := count(); got != "0 0\n" {
		t.Errorf("copies after down (host, web): %s", strings.TrimSpace(got))
	}
}

// A namespace whose name is one of the kernel's files in a cgroup directory
// (cgroup.procs) runs its processes and goes down like any other. Before, up
// failed (its cgroup would have been a file) and every down of the lab failed.
func TestANamespaceNamedLikeACgroupFile(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "cgname.yaml", `
name: cgname
namespaces:
  cgroup.procs:
    run: ["exec sleep 1003.5"]
  web:
    run: ["exec sleep 1003.25"]
`)
	sb.OK("netlab", "up", lab)
	if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("plan after up:\n%s", got)
	}
	sb.OK("netlab", "down", lab)
	if res := sb.Exec("pgrep", "-f", "^sleep 1003"); res.Code == 0 {
		t.Errorf("processes left after down: %s", res.Stdout)
	}
}

// A lab process that runs netlab down on its own lab is refused, not killed
// half-way: the down would stop the entry netlab itself runs in (its cgroup).
func TestDownFromInsideALabProcessIsRefused(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "selfdown.yaml", `
name: selfdown
host:
  run: ["sleep 0.5; netlab down --lab selfdown >/run/selfdown.out 2>&1; echo exit=$? >>/run/selfdown.out; exec sleep 1050"]
namespaces:
  web: {}
`)
	sb.OK("netlab", "up", lab)
	var out string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out, "exit=") && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out = sb.OK("sh", "-c", "cat /run/selfdown.out 2>/dev/null; true")
	}
	if !strings.Contains(out, "exit=1") || !strings.Contains(out, "this netlab runs in it") {
		t.Fatalf("netlab down from inside the lab's own process:\n%s", out)
	}
	if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Errorf("the refused down changed the lab:\n%s", got)
	}
}

// Without cgroups a process is recorded once it has started, so it waits for
// its record before it runs anything: when the netlab that started it dies
// first (its end of the pipe closes unwritten), it runs nothing. Before, a
// netlab killed in between left a process nothing knew of, and the next up
// started a second copy.
func TestAProcessWaitsForItsRecord(t *testing.T) {
	sb := harness.NewSandbox(t)
	for _, record := range []bool{false, true} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := sb.Command("netlab", "__nsexec", "--netns", "/proc/self/ns/net", "--etc", "", "--go-ahead", "3", "--",
			"sh", "-c", "echo ran >/run/goahead.out")
		cmd.ExtraFiles = []*os.File{r}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if record {
			w.Write([]byte{1})
		}
		w.Close()
		err = cmd.Wait()
		ran := sb.OK("sh", "-c", "cat /run/goahead.out 2>/dev/null; rm -f /run/goahead.out") == "ran\n"
		if ran != record || (err == nil) != record {
			t.Errorf("record written: %v; the command ran: %v (exit: %v)", record, ran, err)
		}
	}
}
