package hostile

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"netlab/tests/harness"
)

// TestOddObjectInNetnsDirectoryIsAConflict: a FIFO, a directory, a symlink or a
// plain file at /run/netns/NAME where the lab wants namespace NAME is a conflict
// of the plan, found without opening it (a FIFO would block): up fails within
// seconds, names the path, and changes nothing.
func TestOddObjectInNetnsDirectoryIsAConflict(t *testing.T) {
	for name, plant := range map[string]string{
		"fifo":      "mkfifo /run/netns/web",
		"directory": "mkdir /run/netns/web",
		"symlink":   "echo x > /run/elsewhere && ln -s /run/elsewhere /run/netns/web",
		"dangling":  "ln -s /run/nothing /run/netns/web",
		"file":      "echo x > /run/netns/web",
	} {
		t.Run(name, func(t *testing.T) {
			sb := harness.NewSandbox(t)
			sb.OK("sh", "-c", plant)
			before := kernelStateBeside(sb)
			start := time.Now()
			// timeout(1) inside the sandbox, so that the old behaviour (a hang) fails the test instead of the run.
			res := sb.Exec("timeout", "-s", "KILL", "15", harness.Netlab(t), "up", "../../labs/docker-bridge-lowlevel.yaml")
			if took := time.Since(start); res.Code == 0 || took > 10*time.Second {
				t.Fatalf("up: exit %d after %s, want a failure within seconds\n%s%s", res.Code, took.Round(time.Millisecond), res.Stdout, res.Stderr)
			}
			if !strings.Contains(res.Stderr, "/run/netns/web") || !strings.Contains(res.Stderr, "conflict") {
				t.Errorf("up: want a conflict naming /run/netns/web, got:\n%s%s", res.Stdout, res.Stderr)
			}
			if after := kernelStateBeside(sb); after != before {
				t.Errorf("a failed up changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// The other commands that list namespaces neither hang nor fail on it.
			sb.Exec("timeout", "-s", "KILL", "15", harness.Netlab(t), "status")
			if out := sb.OK("timeout", "-s", "KILL", "15", harness.Netlab(t), "down", "../../labs/docker-bridge-lowlevel.yaml"); strings.Contains(out, "web") {
				t.Errorf("down of a lab that is not up wants to touch web:\n%s", out)
			}
		})
	}
}

// kernelStateBeside is kernelState for a sandbox with an odd object in
// /run/netns: `ip netns list` opens each entry there, and blocks on a FIFO, so
// the directory is listed instead.
func kernelStateBeside(sb *harness.Sandbox) string {
	sb.T.Helper()
	sb.OK("mv", "/run/netns/web", "/run/parked-web")
	state := kernelState(sb)
	sb.OK("mv", "/run/parked-web", "/run/netns/web")
	return state + sb.OK("ls", "-l", "/run/netns")
}

// TestLabFileMustBeRegular: a lab file that is a FIFO, a directory or a device
// is refused at once ("not a regular file"), never read.
func TestLabFileMustBeRegular(t *testing.T) {
	fifo := t.TempDir() + "/lab.yaml"
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{fifo, t.TempDir(), "/dev/zero"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		out, err := exec.CommandContext(ctx, harness.Netlab(t), "validate", file).CombinedOutput()
		cancel()
		if err == nil || time.Since(start) > 5*time.Second || !strings.Contains(string(out), file+": not a regular file") {
			t.Errorf("validate %s: %v after %s, want %q at once; it said:\n%s", file, err, time.Since(start).Round(time.Millisecond), file+": not a regular file", out)
		}
	}
}

// TestLabFileFromStandardInput: "-" is standard input.
func TestLabFileFromStandardInput(t *testing.T) {
	cmd := exec.Command(harness.Netlab(t), "validate", "-")
	cmd.Stdin = strings.NewReader(hostsLab)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `valid lab "hosts"`) {
		t.Errorf("validate - : %v\n%s", err, out)
	}
	cmd = exec.Command(harness.Netlab(t), "validate", "-")
	cmd.Stdin = strings.NewReader("name: x\nbridges: [\n")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.HasPrefix(string(out), "-:") {
		t.Errorf("validate - of a broken lab: %v, want errors positioned in -:\n%s", err, out)
	}
}

// TestSignalStopsABlockedRead: SIGINT stops netlab while it waits for a lab
// file on standard input that never ends.
func TestSignalStopsABlockedRead(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd := exec.Command(harness.Netlab(t), "validate", "-")
	cmd.Stdin = r
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("validate - ended before its input did: %v\n%s", err, out.String())
	case <-time.After(500 * time.Millisecond):
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("validate - interrupted: exit 0, want a failure")
		}
	case <-time.After(3 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("validate - still running 3 s after SIGINT")
	}
}

// TestSignalStopsAWaitForTheLock: SIGINT stops a netlab that waits for the
// lab's lock (another run holds it) at once, not when the other run ends.
func TestSignalStopsAWaitForTheLock(t *testing.T) {
	sb := harness.NewSandbox(t)
	out := sb.OK("sh", "-c", `mkdir -p -m 700 /run/netlab && (flock /run/netlab/hosts.lock sleep 30 >/dev/null 2>&1 &) && sleep 0.3
netlab down --lab hosts 2>/run/err & p=$!
sleep 0.5; kill -INT $p; start=$(date +%s%N); wait $p; code=$?; end=$(date +%s%N)
echo "code=$code ms=$(( (end - start) / 1000000 ))"; cat /run/err`)
	var code, ms int
	if _, err := fmt.Sscanf(out, "code=%d ms=%d", &code, &ms); err != nil || code == 0 || ms > 2000 {
		t.Errorf("down waiting for the lock, then SIGINT: want a failure within 2 s, got:\n%s", out)
	}
}

// TestExecOutlivesTheTerminalsInterrupts: while `netlab exec` runs a command,
// SIGINTs are the command's: netlab neither dies of them (a second signal ends
// other commands at once) nor passes them on ignored.
func TestExecOutlivesTheTerminalsInterrupts(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", writeLab(t, "hosts.yaml", hostsLab))
	out := sb.OK("sh", "-c", `netlab exec c1 -- sh -c 'trap "echo got INT" INT; sleep 1; echo survived' & p=$!
sleep 0.3; kill -INT $p; sleep 0.1; kill -INT $p; wait $p; echo "code=$?"`)
	if !strings.Contains(out, "survived") || !strings.Contains(out, "code=0") {
		t.Errorf("exec with two SIGINTs to netlab: want the command to finish and its exit status, got:\n%s", out)
	}
}
