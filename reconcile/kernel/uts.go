package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// UTS namespaces: a namespace with `hostname:` (a container) gets a UTS
// namespace of its own, kept by a bind mount at <state>/<lab>/uts/<netns> (see
// reconcile.UTSPath), inside the no-follow tree of netlab's state directory. Its
// processes and `netlab exec` enter it (EnterUTS, from __nsexec --uts); `down`
// unmounts it, and the kernel frees it once no process is left in it.

// utsDir is the lab's directory of UTS namespaces.
func (s *stateDir) utsDir(lab string) string { return filepath.Join(s.labDir(lab), "uts") }

// isNsfs reports whether path (a file the tree vetted) has a namespace mounted on it.
func isNsfs(f *os.File) bool {
	var fs unix.Statfs_t
	return unix.Fstatfs(int(f.Fd()), &fs) == nil && fs.Type == unix.NSFS_MAGIC
}

// observeUTS reads the lab's UTS namespaces and their hostnames. A file with
// no namespace mounted on it (a creation interrupted before its mount) is not
// one: createUTS replaces it.
func (d *Driver) observeUTS(s *reconcile.State) error {
	dir := d.state.utsDir(s.Lab)
	entries, err := d.state.readDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		f, err := d.state.openFile(filepath.Join(dir, e.Name()), unix.O_RDONLY, 0)
		if err != nil {
			return err // a link or another object in netlab's own directory
		}
		if isNsfs(f) {
			name, err := hostnameIn(f)
			if err != nil {
				f.Close()
				return fmt.Errorf("netns %s: read hostname: %w", e.Name(), err)
			}
			s.UTS[e.Name()] = name
		}
		f.Close()
	}
	return nil
}

// inUTS runs f on a thread that entered the UTS namespace of ns (nil: a new
// one, unshared), then goes back to netlab's own; a thread that cannot go back
// is retired with its goroutine.
func inUTS(ns *os.File, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/uts")
		if err != nil {
			errc <- err
			return
		}
		defer own.Close()
		if ns == nil {
			err = unix.Unshare(unix.CLONE_NEWUTS)
		} else {
			err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWUTS)
		}
		if err == nil {
			err = f()
		}
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWUTS) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func hostnameIn(ns *os.File) (string, error) {
	var name string
	err := inUTS(ns, func() error {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		name = unix.ByteSliceToString(u.Nodename[:])
		return nil
	})
	return name, err
}

// createUTS makes a UTS namespace with the hostname and bind-mounts it onto its
// file. The file is opened through the tree, and the namespace mounted on the
// descriptor's /proc path: no link on the way is followed.
//
// Equivalent to: touch /run/netlab/LAB/uts/NS; unshare --uts=/run/netlab/LAB/uts/NS hostname NAME
func (d *Driver) createUTS(a reconcile.CreateUTS) error {
	if err := d.state.ensure(a.Lab); err != nil {
		return err
	}
	dir := d.state.utsDir(a.Lab)
	if err := d.state.mkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, a.NS)
	f, err := d.state.openFile(path, unix.O_RDONLY|unix.O_CREAT, 0o444)
	if err != nil {
		return fmt.Errorf("netns %s: uts: %w", a.NS, err)
	}
	defer f.Close()
	if isNsfs(f) { // made by an earlier, interrupted run
		return d.setHostname(reconcile.SetHostname{Lab: a.Lab, NS: a.NS, Hostname: a.Hostname})
	}
	target := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	err = inUTS(nil, func() error {
		if err := unix.Sethostname([]byte(a.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
		if err := unix.Mount("/proc/thread-self/ns/uts", target, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount onto %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netns %s: uts: %w", a.NS, err)
	}
	return nil
}

// setHostname sets the hostname in a namespace's UTS namespace.
//
// Equivalent to: nsenter --uts=/run/netlab/LAB/uts/NS hostname NAME
func (d *Driver) setHostname(a reconcile.SetHostname) error {
	f, err := d.state.openFile(filepath.Join(d.state.utsDir(a.Lab), a.NS), unix.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("netns %s: uts: %w", a.NS, err)
	}
	defer f.Close()
	if !isNsfs(f) {
		return fmt.Errorf("netns %s: uts: no namespace is mounted on %s", a.NS, f.Name())
	}
	return inUTS(f, func() error { return unix.Sethostname([]byte(a.Hostname)) })
}

// deleteUTS unmounts a namespace's UTS namespace and removes its file.
//
// Equivalent to: umount /run/netlab/LAB/uts/NS; rm /run/netlab/LAB/uts/NS
func (d *Driver) deleteUTS(a reconcile.DeleteUTS) error {
	dir := d.state.utsDir(a.Lab)
	path := filepath.Join(dir, a.NS)
	f, err := d.state.openFile(path, unix.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netns %s: uts: %w", a.NS, err)
	}
	mounted := isNsfs(f)
	f.Close()
	if mounted {
		if err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("netns %s: unmount %s: %w", a.NS, path, err)
		}
	}
	if err := d.state.remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %s: uts: %w", a.NS, err)
	}
	d.state.removeDir(dir) // once empty
	return nil
}

// utsOf is the UTS namespace file of a lab's namespace, "" when it has none.
func (d *Driver) utsOf(ns string) string {
	if ns == reconcile.Host {
		return ""
	}
	lab, _, err := d.netnsOwner(ns)
	if err != nil || lab == "" {
		return ""
	}
	path := filepath.Join(d.state.utsDir(lab), ns)
	f, err := d.state.openFile(path, unix.O_RDONLY, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if !isNsfs(f) {
		return ""
	}
	return path
}

// EnterUTS makes the calling thread enter the UTS namespace mounted at path (the
// body of `netlab __nsexec --uts`). The caller must be locked to its thread.
func EnterUTS(path string) error {
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWUTS); err != nil {
		return fmt.Errorf("enter %s: %w", path, err)
	}
	return nil
}

func (d applier) ApplyCreateUTS(_ context.Context, a reconcile.CreateUTS) error {
	return d.createUTS(a)
}

func (d applier) ApplySetHostname(_ context.Context, a reconcile.SetHostname) error {
	return d.setHostname(a)
}

func (d applier) ApplyDeleteUTS(_ context.Context, a reconcile.DeleteUTS) error {
	return d.deleteUTS(a)
}
