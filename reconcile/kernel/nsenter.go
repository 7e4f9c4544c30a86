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
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Running a command inside a lab namespace: `netlab exec`, the hidden `netlab
// __nsexec` and what it does to enter a namespace as `ip netns exec` would.

// nsExecCommand prepares `netlab __nsexec` running argv in a namespace, in a new
// mount namespace of its own. The child enters the namespace by a copy of the
// driver's handle on it, its descriptor 3, not by its name: the name may lead
// to another namespace by the time the child opens it (see Driver.open), and
// the host has no name at all. The caller closes that copy once the child
// started (closeExtraFiles).
func (d *Driver) nsExecCommand(ns string, argv []string) (*exec.Cmd, error) {
	h, done, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	// A copy: the os.File closes its descriptor when it is garbage collected,
	// and the handle's own would then be closed under it (and, once its number
	// is reused, someone else's).
	fd, err := unix.FcntlInt(uintptr(h.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	etc := filepath.Join(d.etcDir, ns)
	if ns == reconcile.Host {
		etc = ""
	}
	args := []string{"__nsexec", "--netns", "/proc/self/fd/3", "--etc", etc}
	if uts := d.utsOf(ns); uts != "" {
		args = append(args, "--uts", uts)
	}
	args = append(args, "--")
	cmd := exec.Command(d.self, append(args, argv...)...)
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "netns-"+ns)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	return cmd, nil
}

// AwaitGoAhead blocks until netlab writes a byte to the pipe fd (0: none) and
// fails when it closes it first: without cgroups, netlab records a process
// only once it has started it, and a netlab killed in between would leave a
// process nothing knows of. The process waits here, before it runs anything,
// until its record is written (see placeProcess).
func AwaitGoAhead(fd int) error {
	if fd <= 0 {
		return nil
	}
	defer unix.Close(fd)
	var b [1]byte
	for {
		n, err := unix.Read(fd, b[:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case n == 1:
			return nil
		case err != nil:
			return fmt.Errorf("wait for netlab to record this process: %w", err)
		}
		return errors.New("the netlab that started this process ended before it recorded it: not running it")
	}
}

// withGoAhead makes cmd (of nsExecCommand) wait, before it runs anything,
// until go is called (see AwaitGoAhead); go closes netlab's end, with a go-ahead
// when ok. The caller calls go exactly once, after the start.
func withGoAhead(cmd *exec.Cmd) (goAhead func(ok bool), err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	fd := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, r)
	i := slices.Index(cmd.Args, "--")
	cmd.Args = slices.Insert(cmd.Args, i, "--go-ahead", strconv.Itoa(fd))
	return func(ok bool) {
		if ok {
			w.Write([]byte{1})
		}
		w.Close()
	}, nil
}

// closeExtraFiles closes netlab's copies of the descriptors a started child
// was given (the child has its own).
func closeExtraFiles(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
}

// Exec runs argv inside a lab namespace with the caller's standard streams and
// returns its exit status as a shell gives it (128+N for a command a signal N
// ended): `netlab exec`. The signals that arrive on forward are passed on to
// the command (a SIGTERM sent to netlab alone).
func (d *Driver) Exec(ns string, argv []string, stdin *os.File, stdout, stderr *os.File, forward <-chan os.Signal) (int, error) {
	if !fileExists(d.netnsPath(ns)) {
		return 0, fmt.Errorf("netns %s: no such namespace in %s", ns, d.netnsDir)
	}
	cmd, err := d.nsExecCommand(ns, argv)
	if err != nil {
		return 0, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Start()
	closeExtraFiles(cmd)
	if err != nil {
		return 0, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-forward:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return 0, err
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return exit.ExitCode(), nil
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
	here, err := netns.Get() // unreadable: taken for another namespace, as before
	same := err == nil && fd.Equal(here)
	here.Close()
	if err := netns.Set(fd); err != nil {
		return fmt.Errorf("enter %s: %w", netnsPath, err)
	}
	fd.Close()
	// The descriptor netlab passed the namespace by (see nsExecCommand) is not
	// the command's: kept open, it would hold the namespace for as long as the
	// command runs, wherever it goes.
	if n, ok := strings.CutPrefix(netnsPath, "/proc/self/fd/"); ok {
		if inherited, err := strconv.Atoi(n); err == nil && inherited > 2 {
			unix.Close(inherited)
		}
	}
	// sysfs shows the network namespace of whoever mounts it. Its source names
	// the namespace, as ip netns exec's does. The namespace this runs in (the
	// host's, for host: entries) keeps its /sys: a new one would lose what is
	// mounted below it, /sys/fs/cgroup first, and netlab run from a host entry
	// (or a shell of `netlab exec host`) would not see the lab's processes.
	source := "sysfs"
	if etcDir != "" {
		source = filepath.Base(etcDir)
	}
	if !same && unix.Unmount("/sys", unix.MNT_DETACH) == nil {
		if err := unix.Mount(source, "/sys", "sysfs", 0, ""); err != nil {
			return fmt.Errorf("mount /sys: %w", err)
		}
	}
	if etcDir == "" || !isDir(etcDir) {
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
