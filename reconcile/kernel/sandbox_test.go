package kernel

// The kernel tests never touch the machine's own network. TestMain (tests/harness)
// re-runs the test binary in a new network and mount namespace, and each test then
// makes its own fresh "host" namespace inside that, with private directories for
// namespace files and state. A leak canary compares the machine's own namespace
// before and after the run.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"netlab/tests/harness"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { harness.Main(m) }

// sandbox is one test's world: a fresh namespace standing in for the host, and
// private directories for namespace files and state.
type sandbox struct {
	t        *testing.T
	host     netns.NsHandle
	netnsDir string
	stateDir string
	etcDir   string
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	harness.Require(t)
	sb := &sandbox{t: t, netnsDir: t.TempDir(), stateDir: filepath.Join(t.TempDir(), "state"), etcDir: filepath.Join(t.TempDir(), "etc-netns")}
	err := inNewNetns(func() (err error) {
		if sb.host, err = netns.Get(); err != nil {
			return err
		}
		if lo, err := netlink.LinkByName("lo"); err == nil {
			netlink.LinkSetUp(lo)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create sandbox host namespace: %v", err)
	}
	t.Cleanup(func() {
		entries, _ := os.ReadDir(sb.netnsDir)
		for _, e := range entries {
			unix.Unmount(filepath.Join(sb.netnsDir, e.Name()), unix.MNT_DETACH)
		}
		unix.Unmount(sb.netnsDir, unix.MNT_DETACH)
		sb.host.Close()
	})
	return sb
}

// inNewNetns runs f on a thread of its own in a new network namespace. The
// thread is never unlocked: it dies with its goroutine, and the namespace with
// it unless f kept a handle or mounted it.
func inNewNetns(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// driver opens a kernel driver on the sandbox.
func (sb *sandbox) driver() *Driver {
	sb.t.Helper()
	d, err := New(Options{NetnsDir: sb.netnsDir, StateDir: sb.stateDir, EtcDir: sb.etcDir, Host: sb.host, Self: harness.Netlab(sb.t)})
	if err != nil {
		sb.t.Fatal(err)
	}
	sb.t.Cleanup(func() {
		// The cgroup filesystem is the machine's: what the test's labs left there goes.
		if base, _ := d.cgroupBase(); base != "" {
			removeCgroupTree(sb.t, base)
			removeParents(filepath.Dir(base), d.cgroupMount)
		}
		d.Close()
	})
	return d
}

// removeCgroupTree kills what is left in a cgroup and below, and removes them.
func removeCgroupTree(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(t, filepath.Join(dir, e.Name()))
		}
	}
	if cgroupPopulated(dir) {
		os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
		for deadline := time.Now().Add(5 * time.Second); cgroupPopulated(dir) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := unix.Rmdir(dir); err != nil && !os.IsNotExist(err) {
		t.Errorf("remove the test's cgroup %s: %v", dir, err)
	}
}

// nsPath is the file of a namespace: the sandbox's host is reached through the
// test process's own descriptor.
func (sb *sandbox) nsPath(ns string) string {
	if ns == "host" {
		return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(sb.host))
	}
	return filepath.Join(sb.netnsDir, ns)
}

// run runs a command (ip, ping) inside a namespace of the sandbox, the way a
// student would check the lab, and returns its output.
func (sb *sandbox) run(ns string, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + sb.nsPath(ns), "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (sb *sandbox) mustRun(ns string, args ...string) string {
	sb.t.Helper()
	out, err := sb.run(ns, args...)
	if err != nil {
		sb.t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
	}
	return out
}

// netlinkAt returns a netlink handle inside a namespace of the sandbox, for
// checking (and changing by hand) what the kernel holds.
func (sb *sandbox) netlinkAt(ns string) *netlink.Handle {
	sb.t.Helper()
	fd, err := netns.GetFromPath(sb.nsPath(ns))
	if err != nil {
		sb.t.Fatal(err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	if err != nil {
		sb.t.Fatal(err)
	}
	sb.t.Cleanup(h.Close)
	return h
}
