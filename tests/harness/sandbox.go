package harness

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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Sandbox is one test's throwaway machine.
type Sandbox struct {
	T   *testing.T
	cmd *exec.Cmd // unshare, outside the sandbox
	PID int       // the sandbox's first process (PID 1 inside it), as seen from outside

	sharedPID bool // no PID namespace of its own (NewSandboxSharedPID)
}

// NewSandbox starts a sandbox that lives as long as the test.
func NewSandbox(t *testing.T) *Sandbox {
	t.Helper()
	return newSandbox(t, false)
}

// NewSandboxSharedPID starts a sandbox without a PID namespace of its own, as
// the tutorial's `unshare --net --mount` shell is: its processes are among the
// test's (and other such sandboxes') processes. Its labs' processes do not die
// with it: the test downs its labs, and what is left in their cgroups is killed
// when the test ends.
func NewSandboxSharedPID(t *testing.T) *Sandbox {
	t.Helper()
	return newSandbox(t, true)
}

func newSandbox(t *testing.T, sharedPID bool) *Sandbox {
	t.Helper()
	Require(t)
	setup := "mount -t tmpfs tmpfs /run && mkdir /run/netns /run/etc-upper /run/etc-work && " +
		"mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc-upper,workdir=/run/etc-work /etc && " +
		"ip link set lo up && echo ready && exec sleep 3600"
	args := []string{"--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "--propagation", "private", "--", "sh", "-c", setup}
	if sharedPID {
		args = slices.DeleteFunc(args, func(a string) bool { return a == "--pid" || a == "--mount-proc" })
	}
	cmd := exec.Command("unshare", args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sandbox: %v", err)
	}
	sb := &Sandbox{T: t, cmd: cmd, sharedPID: sharedPID}
	t.Cleanup(func() {
		sb.removeCgroups()
		cmd.Process.Kill() // by PID; --kill-child takes the sandbox's PID namespace with it
		cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("sandbox did not start: %q %v", line, err)
	}
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
	if sb.PID, err = strconv.Atoi(strings.TrimSpace(string(children))); err != nil {
		t.Fatalf("find the sandbox's first process: %q %v", children, err)
	}
	return sb
}

// Result is what a command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Command returns a command that runs args inside the sandbox, not started;
// "netlab" means the binary under test, which is also on the PATH (the scripts
// of plan -o commands call it).
func (sb *Sandbox) Command(args ...string) *exec.Cmd {
	sb.T.Helper()
	args = slices.Clone(args)
	if args[0] == "netlab" {
		args[0] = Netlab(sb.T)
	}
	wd, err := os.Getwd()
	if err != nil {
		sb.T.Fatal(err)
	}
	// Entering a mount namespace moves to its root unless told where to work.
	full := append([]string{"-t", fmt.Sprint(sb.PID), "-n", "-m", "-p", "--wd=" + wd, "--"}, args...)
	if sb.sharedPID {
		full = slices.DeleteFunc(full, func(a string) bool { return a == "-p" })
	}
	cmd := exec.Command("nsenter", full...)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(Netlab(sb.T))+":"+os.Getenv("PATH"))
	return cmd
}

// Exec runs a command inside the sandbox; "netlab" means the binary under test.
func (sb *Sandbox) Exec(args ...string) Result {
	sb.T.Helper()
	return sb.ExecAs(nil, args...)
}

// ExecAs runs a command inside the sandbox behind a prefix such as setpriv.
func (sb *Sandbox) ExecAs(prefix []string, args ...string) Result {
	sb.T.Helper()
	if args[0] == "netlab" {
		args = append([]string{Netlab(sb.T)}, args[1:]...)
	}
	cmd := sb.Command(append(slices.Clone(prefix), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Code = ee.ExitCode()
	} else if err != nil {
		sb.T.Fatalf("run %v: %v", args, err)
	}
	return res
}

// OK runs a command that must succeed and returns its standard output.
func (sb *Sandbox) OK(args ...string) string {
	sb.T.Helper()
	res := sb.Exec(args...)
	if res.Code != 0 {
		sb.T.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// Fails runs a command that must fail and returns what it printed on both streams.
func (sb *Sandbox) Fails(args ...string) Result {
	sb.T.Helper()
	res := sb.Exec(args...)
	if res.Code == 0 {
		sb.T.Fatalf("%s: exit 0, want a failure\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.Stdout, res.Stderr)
	}
	return res
}

// WriteFile writes a file inside the sandbox's own /run or /etc (which the test
// process cannot see) through a shell in the sandbox.
func (sb *Sandbox) WriteFile(path, content string) {
	sb.T.Helper()
	cmd := sb.Command("sh", "-c", `cat > "$1"`, "sh", path)
	cmd.Stdin = strings.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		sb.T.Fatalf("write %s in the sandbox: %v\n%s", path, err, out)
	}
}

// SettledPlan runs `netlab plan ARGS...` until it says "No changes." or 3 s
// have passed, and returns its last output: a `plan -o commands` script starts
// the lab's processes in the background (`&`), and on a busy machine they may
// not have reached their command when the next plan looks.
func (sb *Sandbox) SettledPlan(args ...string) string {
	sb.T.Helper()
	args = append([]string{"netlab", "plan"}, args...)
	got := sb.OK(args...)
	for deadline := time.Now().Add(3 * time.Second); got != "No changes.\n" && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		got = sb.OK(args...)
	}
	return got
}

var linkState = regexp.MustCompile(`<[^>]*>|state \S+ `)

// KernelState is what the sandbox's kernel holds, as iproute2 shows it: used to
// prove that a failed command changed nothing.
func (sb *Sandbox) KernelState() string {
	sb.T.Helper()
	var b strings.Builder
	// Interfaces without their operational state, which the kernel changes by
	// itself a moment after they come up (a bridge's carrier).
	b.WriteString(linkState.ReplaceAllString(sb.OK("ip", "-o", "link"), ""))
	b.WriteString(sb.OK("ip", "-o", "addr", "show", "scope", "global")) // not the kernel's own link-local addresses, whose DAD state changes by itself
	b.WriteString(sb.OK("ip", "route"))
	b.WriteString(sb.OK("ip", "netns", "list"))
	b.WriteString(sb.OK("sh", "-c", "ls -A /run/netlab 2>/dev/null; true")) // netlab creates it on first use
	b.WriteString(sb.OK("sysctl", "-n", "net.ipv4.ip_forward"))
	b.WriteString(sb.OK("nft", "list", "tables"))
	// Namespace files are bind mounts: none may be left mounted.
	b.WriteString(sb.OK("sh", "-c", "grep -c ' /run/netns/' /proc/self/mountinfo; true"))
	return b.String()
}

// removeCgroups removes what the sandbox's netlab left in the machine's cgroup
// v2 filesystem, which sandboxes share: netlab keeps a lab's processes in
// <cgroup2>/netlab/net-<inode of its network namespace>-<cookie>/ (see
// reconcile/kernel/cgroup.go, which this package cannot import). Whatever runs
// there is killed first.
func (sb *Sandbox) removeCgroups() {
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", sb.PID), &st); err != nil {
		return
	}
	for _, mount := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var fs syscall.Statfs_t
		if syscall.Statfs(mount, &fs) != nil || fs.Type != 0x63677270 { // CGROUP2_SUPER_MAGIC
			continue
		}
		dirs, _ := filepath.Glob(fmt.Sprintf("%s/netlab/net-%d-*", mount, st.Ino))
		for _, dir := range dirs {
			removeCgroupTree(dir)
		}
		syscall.Rmdir(mount + "/netlab") // when no other sandbox uses it
	}
}

func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	populated := func() bool {
		b, _ := os.ReadFile(dir + "/cgroup.events")
		return bytes.Contains(b, []byte("populated 1"))
	}
	if populated() {
		os.WriteFile(dir+"/cgroup.kill", []byte("1"), 0)
		for deadline := time.Now().Add(5 * time.Second); populated() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	syscall.Rmdir(dir)
}
