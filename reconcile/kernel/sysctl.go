package kernel

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// Sysctls under /proc/sys/net belong to the namespace of the thread that opens
// them, so both helpers run on a thread that has entered the namespace.

// readSysctl reads a sysctl of a namespace. A sysctl of an interface that does
// not exist yet (net.ipv4.conf.docker0.*) reads as absent: ok is false.
//
// Equivalent to: ip netns exec NS sysctl -n KEY
func (d *Driver) readSysctl(k reconcile.SysctlKey) (value string, ok bool, err error) {
	values, err := d.readSysctls(k.NS, []reconcile.SysctlKey{k})
	value, ok = values[k]
	return value, ok, err
}

// readSysctls reads sysctls of one namespace ns (every key's), in one visit
// of a thread to it; those that do not exist are left out.
func (d *Driver) readSysctls(ns string, keys []reconcile.SysctlKey) (map[reconcile.SysctlKey]string, error) {
	h, done, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	defer done()
	values := make(map[reconcile.SysctlKey]string, len(keys))
	var at reconcile.SysctlKey // the key being read when it failed
	err = inNetns(h.fd, func() error {
		for _, k := range keys {
			at = k
			f, err := d.openSysctl(k.Path, os.O_RDONLY)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			b, err := io.ReadAll(f)
			f.Close()
			if errors.Is(err, fs.ErrNotExist) {
				continue // its interface went between the open and the read
			}
			if err != nil {
				return err
			}
			values[k] = strings.TrimSpace(string(b))
		}
		return nil
	})
	switch {
	case err == nil:
		return values, nil
	case at.Path == "":
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("netns %s: %w", ns, writeOnlySysctl(at))
	}
	return nil, fmt.Errorf("netns %s: read sysctl %s: %w", ns, at.Name(), err)
}

// writeOnlySysctl is the refusal of a sysctl root may write but not read
// (net.ipv4.route.flush): an action, not a setting. A value that cannot be read
// back could never be seen to match, and every up would write it again.
func writeOnlySysctl(k reconcile.SysctlKey) error {
	return fmt.Errorf("sysctl %s can be written but not read, so netlab cannot keep it (it is an action, not a setting): run it once with exec: [\"sysctl -w %s=VALUE\"]", k.Name(), k.Name())
}

// writeSysctl writes a sysctl of a namespace.
//
// Equivalent to: ip netns exec NS sysctl -w KEY=VALUE
func (d *Driver) writeSysctl(k reconcile.SysctlKey, value string) error {
	h, done, err := d.use(k.NS)
	if err != nil {
		return err
	}
	defer done()
	err = inNetns(h.fd, func() error { return d.writeSysctlHere(k.Path, value) })
	if err != nil {
		return fmt.Errorf("netns %s: write sysctl %s=%s: %w", k.NS, k.Name(), value, err)
	}
	return nil
}

// setSysctl sets a sysctl, first saving the value it had before the lab so that
// `down` can restore it; restore puts that value back and forgets it. Host
// sysctls are shared by the labs (see hostsysctl.go).
func (d *Driver) setSysctl(a reconcile.SetSysctl) error { return d.saveSysctl(a, true) }

// SaveSysctl records the value a sysctl has before lab sets it to value,
// exactly as `up` does before writing it, without writing it: the script of
// `plan -o commands` runs it (netlab __save-sysctl) before its sysctl command.
func (d *Driver) SaveSysctl(lab, ns, name, value string) error {
	return d.saveSysctl(reconcile.SetSysctl{Lab: lab, SysctlKey: reconcile.SysctlKey{NS: ns, Path: reconcile.SysctlPath(name)}, Value: value}, false)
}

// RestoreSysctl puts back the value a sysctl had before lab set it, as `up`
// and `down` do (for a host sysctl, only once no other lab sets it).
func (d *Driver) RestoreSysctl(lab, ns, name string) error {
	return d.saveSysctl(reconcile.SetSysctl{Lab: lab, SysctlKey: reconcile.SysctlKey{NS: ns, Path: reconcile.SysctlPath(name)}, Restore: true}, true)
}

// saveSysctl records (and, with write, sets) a sysctl, or restores it.
func (d *Driver) saveSysctl(a reconcile.SetSysctl, write bool) error {
	if a.NS == reconcile.Host {
		if !a.Restore {
			return d.holdHostSysctl(a, write)
		}
		if done, err := d.releaseHostSysctl(a); done || err != nil {
			return err
		}
		// Not in the machine-wide record: saved in the lab's own file by an older netlab.
	}
	d.sysctlMu.Lock() // the saved values are one file, read and rewritten
	defer d.sysctlMu.Unlock()
	saved, err := d.state.savedSysctls(a.Lab)
	if err != nil {
		return err
	}
	if a.Restore {
		value, ok := saved[a.SysctlKey]
		if !ok {
			value = a.Value
		}
		// A sysctl whose interface is gone went with it: there is nothing to restore.
		if value != "" {
			if err := d.writeSysctl(a.SysctlKey, value); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if !ok {
			return nil
		}
		delete(saved, a.SysctlKey)
		return d.state.writeSavedSysctls(a.Lab, saved)
	}
	if _, ok := saved[a.SysctlKey]; !ok {
		before, err := d.sysctlBefore(a.SysctlKey)
		if err != nil {
			return err
		}
		saved[a.SysctlKey] = before
		if err := d.state.writeSavedSysctls(a.Lab, saved); err != nil {
			return err
		}
	}
	if !write {
		return nil
	}
	return d.writeSysctl(a.SysctlKey, a.Value)
}

// forgetSysctls drops the saved values of a namespace that is being deleted.
func (d *Driver) forgetSysctls(lab, ns string) error {
	d.sysctlMu.Lock()
	defer d.sysctlMu.Unlock()
	saved, err := d.state.savedSysctls(lab)
	if err != nil || len(saved) == 0 {
		return nil // an unreadable file is left as it is (the plan warned): the namespace goes all the same
	}
	n := len(saved)
	for k := range saved {
		if k.NS == ns {
			delete(saved, k)
		}
	}
	if len(saved) == n {
		return nil // nothing saved for this namespace: no rewrite (a thousand namespaces go at once)
	}
	return d.state.writeSavedSysctls(lab, saved)
}

// writeSysctlHere writes a sysctl of the calling thread's namespace.
func (d *Driver) writeSysctlHere(path, value string) error {
	f, err := d.openSysctl(path, os.O_WRONLY)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(value))
	return errors.Join(err, f.Close())
}

// Opening a sysctl file walks /proc/sys by name, and the kernel caches one
// entry (dentry) per namespace for the first directory of the path, all hashed
// alike: each lookup compares its name with every namespace's entry, under one
// global lock. With a thousand namespaces, turning IPv6 off in a new one cost
// more CPU than creating it (a quarter of the namespace phase of an up).
// So sysctls are opened in procfs instances of netlab's own (fsopen, fsmount:
// mounted nowhere), each used for at most procUses lookups and then closed
// with everything it cached: no chain grows long. Where the kernel refuses a
// private instance (before Linux 5.2, or without the right to mount),
// /proc/sys serves.
const procUses = 64

// procInstance is a private procfs instance and how many lookups it has served.
type procInstance struct {
	fd   int
	uses int
}

// openSysctl opens a sysctl file (a path below /proc/sys) of the calling
// thread's namespace: the sysctls a procfs instance shows are those of the
// namespace of the thread that looks them up, whichever instance it is.
func (d *Driver) openSysctl(path string, flag int) (*os.File, error) {
	name := filepath.Join("sys", filepath.Clean("/"+path))
	p := d.takeProc()
	if p == nil {
		return os.OpenFile(filepath.Join("/proc", name), flag, 0)
	}
	fd, err := unix.Openat(p.fd, name, flag|unix.O_CLOEXEC, 0)
	d.returnProc(p)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join("/proc", name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join("/proc", name)), nil
}

// takeProc returns an idle private procfs instance, or a new one; nil when the
// kernel will not make one. An instance serves one goroutine at a time.
func (d *Driver) takeProc() *procInstance {
	if d.procfsRefused.Load() {
		return nil // asked once: a kernel that refused does not change its mind
	}
	select {
	case p := <-d.procfs:
		return p
	default:
	}
	p, err := newProcInstance()
	if err != nil {
		// Out of descriptors or memory, this one goes through /proc/sys and
		// the next asks again; any other failure is the kernel's or the
		// policy's refusal, for good (asking each time would fail each time).
		if !errors.Is(err, unix.EMFILE) && !errors.Is(err, unix.ENFILE) && !errors.Is(err, unix.ENOMEM) {
			d.procfsRefused.Store(true)
		}
		return nil
	}
	return p
}

// newProcInstance makes a procfs instance mounted nowhere.
func newProcInstance() (*procInstance, error) {
	fs, err := unix.Fsopen("proc", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return nil, err
	}
	fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &procInstance{fd: fd}, nil
}

// returnProc keeps an instance for the next lookup, or closes it once it has
// served procUses of them (or when enough are kept already).
func (d *Driver) returnProc(p *procInstance) {
	if p.uses++; p.uses < procUses {
		select {
		case d.procfs <- p:
			return
		default:
		}
	}
	unix.Close(p.fd)
}

// closeProcs closes the kept instances.
func (d *Driver) closeProcs() {
	for {
		select {
		case p := <-d.procfs:
			unix.Close(p.fd)
		default:
			return
		}
	}
}
