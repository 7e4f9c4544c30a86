package tests

// End-to-end tests run the built netlab binary as a user would, each test in its
// own sandbox: a process in new network, mount and PID namespaces, with a private
// tmpfs on /run (so /run/netns and /run/netlab are the sandbox's own) and /etc
// overlaid by a tmpfs (what netlab writes under /etc/netns stays in the sandbox).
// Commands enter it with nsenter. Killing the sandbox's first process kills every
// process of its PID namespace (the labs' servers too) and destroys the rest.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"netlab/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

type sandbox struct {
	t   *testing.T
	cmd *exec.Cmd // unshare, outside the sandbox
	pid int       // the sandbox's first process (PID 1 inside it)
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	harness.Require(t)
	setup := "mount -t tmpfs tmpfs /run && mkdir /run/netns /run/etc-upper /run/etc-work && " +
		"mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc && " +
		"ip link set lo up && echo ready && exec sleep 3600"
	cmd := exec.Command("unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child",
		"--propagation", "private", "--", "sh", "-c", setup)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sandbox: %v", err)
	}
	sb := &sandbox{t: t, cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID; --kill-child takes the sandbox's PID namespace with it
		cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("sandbox did not start: %q %v", line, err)
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if sb.pid, err = strconv.Atoi(strings.TrimSpace(string(children))); err != nil {
		t.Fatalf("find the sandbox's first process: %q %v", children, err)
	}
	return sb
}

// result is what a command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// exec runs a command inside the sandbox; "netlab" means the binary under test.
func (sb *sandbox) exec(args ...string) result {
	sb.t.Helper()
	return sb.execAs(nil, args...)
}

// execAs runs a command inside the sandbox behind a prefix such as setpriv.
func (sb *sandbox) execAs(prefix []string, args ...string) result {
	sb.t.Helper()
	if args[0] == "netlab" {
		args[0] = harness.Netlab(sb.t)
	}
	wd, err := os.Getwd()
	if err != nil {
		sb.t.Fatal(err)
	}
	// Entering a mount namespace moves to its root unless told where to work.
	full := append([]string{"-t", fmt.Sprint(sb.pid), "-n", "-m", "-p", "--wd=" + wd, "--"}, append(prefix, args...)...)
	cmd := exec.Command("nsenter", full...)
	// netlab is on the PATH, as for a user (the scripts of plan -o commands call it).
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(harness.Netlab(sb.t))+":"+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.code = ee.ExitCode()
	} else if err != nil {
		sb.t.Fatalf("run %v: %v", args, err)
	}
	return res
}

// ok runs a command that must succeed and returns its standard output.
func (sb *sandbox) ok(args ...string) string {
	sb.t.Helper()
	res := sb.exec(args...)
	if res.code != 0 {
		sb.t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

var linkState = regexp.MustCompile(`<[^>]*>|state \S+ `)

// kernelState is what the sandbox's kernel holds, as iproute2 shows it: used to
// prove that a failed command changed nothing.
func (sb *sandbox) kernelState() string {
	sb.t.Helper()
	var b strings.Builder
	// Interfaces without their operational state, which the kernel changes by
	// itself a moment after they come up (a bridge's carrier).
	b.WriteString(linkState.ReplaceAllString(sb.ok("ip", "-o", "link"), ""))
	b.WriteString(sb.ok("ip", "-o", "addr", "show", "scope", "global")) // not the kernel's own link-local addresses, whose DAD state changes by itself
	b.WriteString(sb.ok("ip", "route"))
	b.WriteString(sb.ok("ip", "netns", "list"))
	b.WriteString(sb.ok("sh", "-c", "ls -A /run/netlab 2>/dev/null; true")) // netlab creates it on first use
	b.WriteString(sb.ok("sysctl", "-n", "net.ipv4.ip_forward"))
	b.WriteString(sb.ok("nft", "list", "tables"))
	// Namespace files are bind mounts: none may be left mounted.
	b.WriteString(sb.ok("sh", "-c", "grep -c ' /run/netns/' /proc/self/mountinfo; true"))
	return b.String()
}
