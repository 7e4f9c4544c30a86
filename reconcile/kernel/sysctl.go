package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"netlab/reconcile"
)

// Sysctls under /proc/sys/net belong to the namespace of the thread that opens
// them, so both helpers run on a thread that has entered the namespace.

// readSysctl reads a sysctl of a namespace. A sysctl of an interface that does
// not exist yet (net.ipv4.conf.docker0.*) reads as absent: ok is false.
//
// Equivalent to: ip netns exec NS sysctl -n KEY
func (d *Driver) readSysctl(k reconcile.SysctlKey) (value string, ok bool, err error) {
	h, err := d.handle(k.NS)
	if err != nil {
		return "", false, err
	}
	err = inNetns(h.fd, func() error {
		b, err := os.ReadFile(sysctlFile(k.Path))
		value = strings.TrimSpace(string(b))
		return err
	})
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("netns %s: read sysctl %s: %w", k.NS, k.Name(), err)
	}
	return value, true, nil
}

// writeSysctl writes a sysctl of a namespace.
//
// Equivalent to: ip netns exec NS sysctl -w KEY=VALUE
func (d *Driver) writeSysctl(k reconcile.SysctlKey, value string) error {
	h, err := d.handle(k.NS)
	if err != nil {
		return err
	}
	err = inNetns(h.fd, func() error {
		return os.WriteFile(sysctlFile(k.Path), []byte(value), 0)
	})
	if err != nil {
		return fmt.Errorf("netns %s: write sysctl %s=%s: %w", k.NS, k.Name(), value, err)
	}
	return nil
}

// setSysctl sets a sysctl, first saving the value it had before the lab so that
// `down` can restore it; restore puts that value back and forgets it.
func (d *Driver) setSysctl(a reconcile.SetSysctl) error {
	d.sysctlMu.Lock() // the saved values are one file, read and rewritten
	defer d.sysctlMu.Unlock()
	saved, err := d.state.savedSysctls(a.Lab)
	if err != nil {
		return err
	}
	if a.Restore {
		// A sysctl whose interface is gone went with it: there is nothing to restore.
		if err := d.writeSysctl(a.SysctlKey, a.Value); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		delete(saved, a.SysctlKey)
		return d.state.writeSavedSysctls(a.Lab, saved)
	}
	if _, ok := saved[a.SysctlKey]; !ok {
		before, exists, err := d.readSysctl(a.SysctlKey)
		if err != nil {
			return err
		}
		switch {
		case !exists && strings.HasPrefix(a.Path, "net/bridge/"):
			return fmt.Errorf("netns %s: sysctl %s does not exist: the br_netfilter module is not loaded (load it with: modprobe br_netfilter)", a.NS, a.Name())
		case !exists:
			return fmt.Errorf("netns %s: sysctl %s does not exist (a missing interface, or a kernel module not loaded?)", a.NS, a.Name())
		}
		saved[a.SysctlKey] = before
		if err := d.state.writeSavedSysctls(a.Lab, saved); err != nil {
			return err
		}
	}
	return d.writeSysctl(a.SysctlKey, a.Value)
}

// forgetSysctls drops the saved values of a namespace that is being deleted.
func (d *Driver) forgetSysctls(lab, ns string) error {
	d.sysctlMu.Lock()
	defer d.sysctlMu.Unlock()
	saved, err := d.state.savedSysctls(lab)
	if err != nil || len(saved) == 0 {
		return err
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

func sysctlFile(path string) string {
	return filepath.Join("/proc/sys", filepath.Clean("/"+path))
}
