package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestChecksOfALabThatIsDownNeverPass: `netlab test` of a lab that is down is
// an error, and a check whose namespace is not the lab's is an ERROR, never
// "blocked, as expected".
func TestChecksOfALabThatIsDownNeverPass(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "blocked.yaml", `name: blocked
namespaces:
  a: {interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
  b: {interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
links:
  - [a:eth0, b:eth0]
checks:
  - {from: a, ping: 10.0.0.2}
  - {from: a, ping: 10.0.0.9, expect: fail}
`)
	res := sb.Fails("netlab", "test", lab)
	if !strings.Contains(res.Stderr, "lab blocked is not up") || strings.Contains(res.Stdout, "pass") {
		t.Errorf("test of a lab that is down: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}

	// Up, then namespace a is deleted by hand: the checks from it cannot run,
	// and they do not pass.
	sb.OK("netlab", "up", lab)
	if out := sb.OK("netlab", "test", lab); !strings.Contains(out, "2 passed, 0 failed") {
		t.Fatalf("test of the lab that is up:\n%s", out)
	}
	sb.OK("ip", "netns", "del", "a")
	res = sb.Fails("netlab", "test", lab)
	if strings.Contains(res.Stdout, "blocked, as expected") || !strings.Contains(res.Stdout, "0 passed, 2 failed") ||
		strings.Count(res.Stdout, "ERROR") != 2 || !strings.Contains(res.Stderr, "2 checks could not run") {
		t.Errorf("checks from a namespace deleted by hand: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestDownWaitsForTheChecks: `netlab test` holds the lab's lock while its checks
// run, so a `down` started meanwhile waits for them instead of pulling the
// namespaces from under a check (which then failed, and the down waited for
// namespaces the checks still held).
func TestDownWaitsForTheChecks(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "measured.yaml", `name: measured
namespaces:
  a: {interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
  b: {interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
links:
  - [a:eth0, b:eth0]
checks:
  - {from: a, throughput: b}
`)
	sb.OK("netlab", "up", lab)
	out := sb.OK("sh", "-c", `netlab test `+lab+` >/run/test-out 2>&1 & p=$!
sleep 0.7
netlab down `+lab+` >/dev/null 2>/run/down-err; echo "down=$?"
wait $p; echo "test=$?"; cat /run/test-out /run/down-err`)
	if !strings.HasPrefix(out, "down=0\ntest=0\n") || !strings.Contains(out, "1 passed, 0 failed") ||
		!strings.Contains(out, "busy with another netlab run; waiting") {
		t.Errorf("a down during the checks: want it to wait for them, and both to succeed:\n%s", out)
	}
	if got := sb.OK("ip", "netns", "list"); strings.TrimSpace(got) != "" {
		t.Errorf("after the down: namespaces left:\n%s", got)
	}
}
