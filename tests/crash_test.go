package tests

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"netlab/tests/harness"
)

// killedAfter starts a netlab command in the sandbox and SIGKILLs it after d
// (if it has not finished by then). It reports whether the kill happened.
func (sb *sandbox) killedAfter(d time.Duration, args ...string) bool {
	sb.t.Helper()
	wd, _ := os.Getwd()
	cmd := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(sb.pid), "-n", "-m", "-p", "--wd=" + wd, "--", harness.Netlab(sb.t)}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(harness.Netlab(sb.t))+":"+os.Getenv("PATH"))
	// Its own process group: the kill takes nsenter and netlab together, as a
	// crash of netlab would (nsenter forks netlab to enter the PID namespace).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		sb.t.Fatal(err)
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
	sb := newSandbox(t)
	lab := "../labs/docker-bridge.yaml"

	// How long an undisturbed up takes: the kills land anywhere inside it. What
	// the sandbox holds after this first up and down is what every trial must
	// leave (netlab's state directory exists from then on, empty).
	harness.Netlab(t) // built before timing
	start := time.Now()
	sb.ok("netlab", "up", lab)
	full := time.Since(start)
	sb.ok("netlab", "down", lab)
	before := sb.kernelState() + sb.ok("sh", "-c", residue)

	rng := rand.New(rand.NewPCG(1, 2))
	trials, killed := 50, 0
	for i := range trials {
		at := time.Duration(rng.Int64N(int64(full)))
		if sb.killedAfter(at, "up", lab) {
			killed++
		}
		if got := sb.exec("netlab", "up", lab); got.code != 0 {
			t.Fatalf("trial %d (killed at %v): the next up failed:\n%s%s", i, at, got.stdout, got.stderr)
		}
		if got := sb.ok("netlab", "plan", lab); got != "No changes.\n" {
			t.Fatalf("trial %d (killed at %v): up did not converge:\n%s", i, at, got)
		}
		// Half the trials also kill a down half-way.
		if i%2 == 1 && sb.killedAfter(time.Duration(rng.Int64N(int64(full/2))), "down", lab) {
			killed++
		}
		if got := sb.exec("netlab", "down", lab); got.code != 0 {
			t.Fatalf("trial %d: down after a crash failed:\n%s%s", i, got.stdout, got.stderr)
		}
		after := sb.kernelState() + sb.ok("sh", "-c", residue)
		if after != before {
			t.Fatalf("trial %d (killed at %v): residue after down:\nbefore:\n%s\nafter:\n%s", i, at, before, after)
		}
	}
	if killed < trials/2 {
		t.Errorf("only %d of %d runs were killed before they finished: the trial timing is off", killed, trials)
	}
	t.Logf("%d trials, %d kills, up takes %v undisturbed", trials, killed, full.Round(time.Millisecond))
}
