package kernel

import (
	"errors"
	"fmt"
	"netlab/reconcile"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Running a command inside a lab namespace: `netlab exec`, the hidden `netlab
// __nsexec` and what it does to enter a namespace as `ip netns exec` would.

// nsExecCommand prepares `netlab __nsexec` running argv in a namespace, in a new
// mount namespace of its own.
func (d *Driver) nsExecCommand(ns string, argv []string) *exec.Cmd {
	path, etc := d.netnsPath(ns), filepath.Join(d.etcDir, ns)
	var extra []*os.File
	if ns == reconcile.Host {
		// The host has no namespace file: the child gets the driver's handle on it
		// as its descriptor 3 (in tests the host is itself a sandbox namespace).
		// A copy: the os.File closes its descriptor when it is garbage collected,
		// and the driver's own would then be closed under it (and, once its number
		// is reused, someone else's).
		if fd, err := unix.FcntlInt(uintptr(d.host), unix.F_DUPFD_CLOEXEC, 0); err == nil {
			extra = []*os.File{os.NewFile(uintptr(fd), "host-netns")}
		}
		path, etc = "/proc/self/fd/3", ""
	}
	args := []string{"__nsexec", "--netns", path, "--etc", etc, "--"}
	cmd := exec.Command(d.self, append(args, argv...)...)
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd
}

// Exec runs argv inside a lab namespace with the caller's standard streams and
// returns its exit code: `netlab exec`.
func (d *Driver) Exec(ns string, argv []string, stdin *os.File, stdout, stderr *os.File) (int, error) {
	if !fileExists(d.netnsPath(ns)) {
		return 0, fmt.Errorf("netns %s: no such namespace in %s", ns, d.netnsDir)
	}
	cmd := d.nsExecCommand(ns, argv)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

func withoutMarkers(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return strings.HasPrefix(kv, reconcile.EnvLab+"=") || strings.HasPrefix(kv, reconcile.EnvNS+"=") ||
			strings.HasPrefix(kv, reconcile.EnvRun+"=")
	})
}

// NsExec is the body of `netlab __nsexec`: NsEnter, then it executes argv. It
// returns only on failure.
func NsExec(netnsPath, etcDir string, argv []string) error {
	if err := NsEnter(netnsPath, etcDir); err != nil {
		return err
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return unix.Exec(path, argv, os.Environ())
}

// NsEnter makes the calling thread enter the network namespace at netnsPath, as
// `ip netns exec` does: it runs in a fresh mount namespace (made by its parent),
// remounts /sys so /sys/class/net shows that namespace's interfaces, and
// bind-mounts each file of etcDir over the same name in /etc (iproute2's
// /etc/netns/NAME convention). The caller must be locked to its thread (netlab's
// main goroutine is, to the main thread), and make its sockets on it.
func NsEnter(netnsPath, etcDir string) error {
	runtime.LockOSThread()
	fd, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", netnsPath, err)
	}
	if err := netns.Set(fd); err != nil {
		return fmt.Errorf("enter %s: %w", netnsPath, err)
	}
	fd.Close()
	// sysfs shows the network namespace of whoever mounts it.
	if err := unix.Unmount("/sys", unix.MNT_DETACH); err == nil {
		if err := unix.Mount(filepath.Base(netnsPath), "/sys", "sysfs", 0, ""); err != nil {
			return fmt.Errorf("mount /sys: %w", err)
		}
	}
	var st unix.Stat_t
	if etcDir == "" || unix.Lstat(etcDir, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil // none, or not a directory of its own (a link is not followed)
	}
	if entries, err := os.ReadDir(etcDir); err == nil {
		for _, e := range entries {
			src, dst := filepath.Join(etcDir, e.Name()), filepath.Join("/etc", e.Name())
			if !e.Type().IsRegular() || !fileExists(dst) {
				continue // as iproute2: only files /etc already has are replaced; and no link is followed
			}
			if err := unix.Mount(src, dst, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind-mount %s over %s: %w", src, dst, err)
			}
		}
	}
	return nil
}
