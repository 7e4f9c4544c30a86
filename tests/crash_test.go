package tests

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"netlab/tests/harness"
)

// killedAfter starts a netlab command in the sandbox and SIGKILLs it after d
// (if it has not finished by then). It reports whether the kill happened.
func killedAfter(sb *harness.Sandbox, d time.Duration, args ...string) bool {
	sb.T.Helper()
	cmd := sb.Command(append([]string{"netlab"}, args...)...)
	// Its own process group: the kill takes nsenter and netlab together, as a
	// crash of netlab would (nsenter forks netlab to enter the PID namespace).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		sb.T.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return false
	case <-time.After(d):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return true
	}
}

// residue lists what a lab can leave outside the kernel's network objects: files
// under /etc/netns and /run/netlab, and live netlab processes (zombies are only
// entries the sandbox's first process does not reap).
const residue = `ls -A /etc/netns /run/netlab 2>/dev/null; ps -eo stat=,comm= | grep -v '^Z' | grep -c netlab || true`

// TestCrashAtAnyPoint kills netlab up (and down) with SIGKILL at random moments
// of a lab with namespaces, a bridge, veths, routes, an nftables table, sysctls
// and processes: every time, the next up converges to the file, and down then
// leaves the sandbox exactly as it was before the lab.
func TestCrashAtAnyPoint(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := "../labs/docker-bridge-lowlevel.yaml"

	// How long an undisturbed up takes: the kills land anywhere inside it. What
	// the sandbox holds after this first up and down is what every trial must
	// leave (netlab's state directory exists from then on, empty).
	harness.Netlab(t) // built before timing
	start := time.Now()
	sb.OK("netlab", "up", lab)
	full := time.Since(start)
	sb.OK("netlab", "down", lab)
	before := sb.KernelState() + sb.OK("sh", "-c", residue)

	rng := rand.New(rand.NewPCG(1, 2))
	trials, killed := 50, 0
	for i := range trials {
		at := time.Duration(rng.Int64N(int64(full)))
		if killedAfter(sb, at, "up", lab) {
			killed++
		}
		if got := sb.Exec("netlab", "up", lab); got.Code != 0 {
			t.Fatalf("trial %d (killed at %v): the next up failed:\n%s%s", i, at, got.Stdout, got.Stderr)
		}
		if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
			t.Fatalf("trial %d (killed at %v): up did not converge:\n%s", i, at, got)
		}
		// Half the trials also kill a down half-way.
		if i%2 == 1 && killedAfter(sb, time.Duration(rng.Int64N(int64(full/2))), "down", lab) {
			killed++
		}
		if got := sb.Exec("netlab", "down", lab); got.Code != 0 {
			t.Fatalf("trial %d: down after a crash failed:\n%s%s", i, got.Stdout, got.Stderr)
		}
		after := sb.KernelState() + sb.OK("sh", "-c", residue)
		if after != before {
			t.Fatalf("trial %d (killed at %v): residue after down:\nbefore:\n%s\nafter:\n%s", i, at, before, after)
		}
	}
	if killed < trials/2 {
		t.Errorf("only %d of %d runs were killed before they finished: the trial timing is off", killed, trials)
	}
	t.Logf("%d trials, %d kills, up takes %v undisturbed", trials, killed, full.Round(time.Millisecond))
}
