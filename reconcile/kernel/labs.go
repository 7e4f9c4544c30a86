package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
	"netlab/topology"
)

// The lab-level operations the CLI needs besides Observe and Apply.

// Lock takes the lock of a lab, so that two runs on one lab never interleave. With
// wait false it fails at once with ErrLocked when another run holds it.
//
// Whoever takes it also removes what a killed `netlab trace` left (see clearTraces).
func (d *Driver) Lock(lab string, wait bool) (*Lock, error) {
	l, err := d.state.lock(lab, wait)
	if err != nil {
		return nil, err
	}
	if err := d.clearTraces(lab); err != nil {
		l.Release(false)
		return nil, err
	}
	return l, nil
}

// RecordLab remembers which file a lab was brought up from, for `status` ("-"
// for standard input), and from which network namespace (see CheckNetns).
func (d *Driver) RecordLab(lab, file, prefix string) error {
	if abs, err := filepath.Abs(file); err == nil && file != "-" {
		file = abs
	}
	id, err := netnsIDOf(d.host)
	if err != nil {
		return err
	}
	if err := d.state.ensure(lab); err != nil {
		return err
	}
	info := LabInfo{Name: lab, File: file, Prefix: prefix, Since: time.Now().UTC().Truncate(time.Second), Netns: &id}
	var old LabInfo
	err = d.state.readJSON(filepath.Join(d.state.labDir(lab), "lab.json"), &old)
	var notOwn *notOwnError
	switch {
	case errors.As(err, &notOwn):
		return err // a link or a FIFO where lab.json goes: neither read nor replaced
	case err == nil && old.File == file:
		info.Since = old.Since
	}
	return d.state.writeJSON(filepath.Join(d.state.labDir(lab), "lab.json"), info)
}

// NetnsID names a network namespace as the kernel does: the device and inode
// of its file (what `readlink /proc/self/ns/net` shows as net:[INODE]).
type NetnsID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func (id NetnsID) String() string { return fmt.Sprintf("net:[%d]", id.Ino) }

// netnsIDOf reads the identity of an open namespace (fstat of its handle).
func netnsIDOf(h netns.NsHandle) (NetnsID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return NetnsID{}, fmt.Errorf("identify own network namespace: %w", err)
	}
	return NetnsID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// CheckNetns refuses to act on a lab from another network namespace than the
// one it was brought up from: from inside one of the lab's namespaces (netlab
// exec c2 -- netlab down), "host" would be c2, and down would delete c2's
// interfaces as the host's, forget the lab and leave its host objects behind.
func (d *Driver) CheckNetns(lab string) error {
	info, ok := d.LabInfo(lab)
	if !ok || info.Netns == nil {
		return nil // not recorded (an older netlab): nothing to compare
	}
	here, err := netnsIDOf(d.host)
	if err != nil {
		return err
	}
	if here != *info.Netns {
		return fmt.Errorf("lab %s was brought up from network namespace %s; this netlab runs in %s; run it from there",
			lab, info.Netns, here)
	}
	return nil
}

// CheckLabNetns refuses a namespace that is not the lab's (its lo does not bear
// the lab's marker): the hidden steps of a plan's script act on the namespace
// they are given, and must never mark, save or change another lab's or the
// machine's. The host is every lab's.
func (d *Driver) CheckLabNetns(lab, ns string) error {
	if ns == reconcile.Host {
		return nil
	}
	owner, _, err := d.netnsOwner(ns)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	if owner != lab {
		return fmt.Errorf("namespace %s is not lab %s's (its lo is marked %q)", ns, lab, owner)
	}
	return nil
}

// LabInfo returns what RecordLab wrote, if anything.
func (d *Driver) LabInfo(lab string) (LabInfo, bool) {
	var info LabInfo
	err := d.state.readJSON(filepath.Join(d.state.labDir(lab), "lab.json"), &info)
	return info, err == nil
}

// Forget removes the lab's state directory and its cgroups (see cgroup.go):
// `down` calls it once nothing is left. It refuses, keeping everything, while
// Docker chains the lab's plan script wrote are left unmarked (see
// scriptLeftovers): the lab's note of the tables is the only proof they are its.
// A namespace file left by a creation killed before the namespace was mounted on
// it (see interruptedNetns) goes too.
func (d *Driver) Forget(lab string) error {
	if err := topology.CheckLabName(lab); err != nil {
		return err
	}
	if err := d.scriptLeftovers(lab); err != nil {
		return err
	}
	entries, _ := d.state.readDir(filepath.Join(d.state.labDir(lab), "creating"))
	for _, e := range entries {
		if name, ok := strings.CutPrefix(e.Name(), "ns="); ok && d.interruptedNetns(lab, name) {
			os.Remove(d.netnsPath(name))
		}
	}
	if err := d.stopAllRecorded(lab); err != nil {
		return err
	}
	if err := d.removeLabCgroups(lab); err != nil {
		return err
	}
	return d.state.forget(lab)
}

// Labs lists the labs present on this machine: those with a state directory and
// those whose markers are on namespaces or host interfaces. A marker naming
// something that cannot be a lab's name is not a lab.
func (d *Driver) Labs() ([]string, error) {
	seen := map[string]bool{}
	labs, err := d.state.labs()
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, l := range labs {
		seen[l] = true
	}
	names, _, err := d.listNetns()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		owner, _, err := d.netnsOwner(name)
		switch {
		case err == nil && topology.CheckLabName(owner) == nil:
			seen[owner] = true
		case err != nil && !notANetns(err):
			return nil, err // out of descriptors, say: a lab known by its marks alone would go unlisted
		}
		d.forget(name)
	}
	h, done, err := d.use(reconcile.Host)
	if err != nil {
		return nil, err
	}
	defer done()
	links, err := dumpIfaceRows(h.rt)
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if owner := ownerOf(l.alias); topology.CheckLabName(owner) == nil {
			seen[owner] = true
		}
	}
	out := make([]string, 0, len(seen))
	for l := range seen {
		out = append(out, l)
	}
	slices.Sort(out)
	return out, nil
}
