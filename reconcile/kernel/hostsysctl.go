package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// The host's sysctls are shared by every lab on the machine: two labs that set
// net.ipv4.ip_forward must not each save "the value before" and put it back on
// their own `down` (the first down would turn forwarding off under the second;
// the second would then "restore" the first lab's value for good). So they are
// recorded once for the machine, in <root>/host_sysctls.json:
//
//	[{"path": "net/ipv4/ip_forward", "original": "0", "value": "1", "labs": ["a", "b"]}]
//
// the value before the first lab set it, the value the labs set, and the labs
// that hold it. A lab that wants the value joins the holders; taking a lab
// down lets go of it, and the last holder puts the original back. Two labs
// that want different values conflict (reconcile.Diff refuses before any
// change; the driver checks again under the lock). The file is rewritten
// atomically under its own lock (a flock on <root> itself), so that netlab runs
// on different labs do not race, and removed when no lab holds anything. Its
// name has an underscore, which lab names cannot, so it never meets a lab's
// directory or lock.
//
// The sysctls of the lab's own namespaces stay in the lab's sysctls.json.

const hostSysctlsFile = "host_sysctls.json"

// hostSysctl is one entry of host_sysctls.json.
type hostSysctl struct {
	Path     string   `json:"path"`
	Original string   `json:"original"`
	Value    string   `json:"value"`
	Labs     []string `json:"labs"`
}

func (s *stateDir) hostSysctlsPath() string { return filepath.Join(s.root, hostSysctlsFile) }

// readHostSysctls reads the machine-wide record, by sysctl path; an absent
// file is an empty record.
func (s *stateDir) readHostSysctls() (map[string]*hostSysctl, error) {
	var list []*hostSysctl
	err := s.readJSON(s.hostSysctlsPath(), &list)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]*hostSysctl{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := make(map[string]*hostSysctl, len(list))
	for _, e := range list {
		if e == nil || e.Path == "" {
			return nil, fmt.Errorf("an entry without a sysctl path")
		}
		out[e.Path] = e
	}
	return out, nil
}

// writeHostSysctls rewrites the record (atomically); an empty record removes it.
func (s *stateDir) writeHostSysctls(record map[string]*hostSysctl) error {
	if len(record) == 0 {
		if err := s.remove(s.hostSysctlsPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	list := make([]*hostSysctl, 0, len(record))
	for _, e := range record {
		list = append(list, e)
	}
	slices.SortFunc(list, func(a, b *hostSysctl) int { return strings.Compare(a.Path, b.Path) })
	return s.writeJSON(s.hostSysctlsPath(), list)
}

// lockHostSysctls takes the record's lock, waiting for another netlab run that
// holds it, and returns the function that releases it. The lock is a flock on
// the state directory itself: nothing else locks it, and no lock file is left
// behind once the last lab is down.
func (s *stateDir) lockHostSysctls() (func(), error) {
	if err := s.ensureRoot(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.root, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s to lock the record of host sysctls: %w", s.root, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", s.root, err)
	}
	return func() { f.Close() }, nil
}

// labLive reports whether a lab is still on the machine, as far as the record
// is concerned: its state directory is removed by `down` only once everything
// of the lab is gone. A holder that is not live (its state removed by hand)
// holds nothing.
func (s *stateDir) labLive(lab string) bool {
	st, err := s.lstat(s.labDir(lab))
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// liveHolders are the holders of an entry that are still on the machine, but lab.
func (s *stateDir) liveHolders(e *hostSysctl, lab string) []string {
	var out []string
	for _, l := range e.Labs {
		if l != lab && s.labLive(l) {
			out = append(out, l)
		}
	}
	return out
}

// observeHostSysctls reads the record for Observe: each entry with its live
// holders. An unreadable record is reported, not fatal: `down` must still
// remove what the lab owns.
func (d *Driver) observeHostSysctls(s *reconcile.State) {
	record, err := d.state.readHostSysctls()
	if err != nil {
		s.BadRecords = append(s.BadRecords, reconcile.BadRecord{Path: d.state.hostSysctlsPath(), Host: true, Err: errText(err)})
		return
	}
	for path, e := range record {
		holders := d.state.liveHolders(e, s.Lab)
		if slices.Contains(e.Labs, s.Lab) {
			holders = append(holders, s.Lab)
			slices.Sort(holders)
		}
		s.SharedSysctls[reconcile.SysctlKey{NS: reconcile.Host, Path: path}] = &reconcile.SharedSysctl{Original: e.Original, Value: e.Value, Labs: holders}
	}
}

// holdHostSysctl records that a.Lab sets a host sysctl to a.Value: the first
// lab records the value it had; later ones join. With write, the sysctl is
// written too, under the record's lock (the script of `plan -o commands`
// records with write false and writes it with sysctl).
func (d *Driver) holdHostSysctl(a reconcile.SetSysctl, write bool) error {
	unlock, err := d.state.lockHostSysctls()
	if err != nil {
		return err
	}
	defer unlock()
	record, err := d.state.readHostSysctls()
	if err != nil {
		return fmt.Errorf("cannot read %s (%w): netlab will not set host sysctl %s without a record of its value before the lab; check the host's sysctls, then repair or remove the file", d.state.hostSysctlsPath(), err, a.Name())
	}
	e := record[a.Path]
	if e == nil {
		before, err := d.sysctlBefore(a.SysctlKey)
		if err != nil {
			return err
		}
		e = &hostSysctl{Path: a.Path, Original: before}
		record[a.Path] = e
	}
	others := d.state.liveHolders(e, a.Lab)
	if len(others) > 0 && reconcile.NormalizeSysctlValue(e.Value) != reconcile.NormalizeSysctlValue(a.Value) {
		return fmt.Errorf("host sysctl %s: lab %s wants %s, but lab %s set it to %s and is still up", a.Name(), a.Lab, a.Value, strings.Join(others, ", lab "), e.Value)
	}
	if err := d.state.ensure(a.Lab); err != nil { // the lab is a live holder from now on
		return err
	}
	e.Value = a.Value
	e.Labs = append(others, a.Lab)
	slices.Sort(e.Labs)
	if err := d.state.writeHostSysctls(record); err != nil {
		return err
	}
	if !write {
		return nil
	}
	return d.writeSysctl(a.SysctlKey, a.Value)
}

// releaseHostSysctl lets a.Lab go of a host sysctl; the last holder puts the
// original back. It reports false when the record does not list the lab (an
// older netlab saved it in the lab's own file).
func (d *Driver) releaseHostSysctl(a reconcile.SetSysctl) (bool, error) {
	unlock, err := d.state.lockHostSysctls()
	if err != nil {
		return false, err
	}
	defer unlock()
	record, err := d.state.readHostSysctls()
	if err != nil {
		return false, fmt.Errorf("cannot read %s (%w): host sysctl %s not restored", d.state.hostSysctlsPath(), err, a.Name())
	}
	e := record[a.Path]
	if e == nil || !slices.Contains(e.Labs, a.Lab) {
		return false, nil
	}
	if e.Labs = d.state.liveHolders(e, a.Lab); len(e.Labs) == 0 {
		// A sysctl whose interface is gone went with it: there is nothing to restore.
		if err := d.writeSysctl(a.SysctlKey, e.Original); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return true, err
		}
		delete(record, a.Path)
	}
	return true, d.state.writeHostSysctls(record)
}

// sysctlBefore reads the value a sysctl has before the lab sets it, and says
// why it cannot when it does not exist.
func (d *Driver) sysctlBefore(k reconcile.SysctlKey) (string, error) {
	before, exists, err := d.readSysctl(k)
	switch {
	case err != nil:
		return "", err
	case !exists && strings.HasPrefix(k.Path, "net/bridge/"):
		return "", fmt.Errorf("netns %s: sysctl %s does not exist: the br_netfilter module is not loaded (load it with: modprobe br_netfilter)", k.NS, k.Name())
	case !exists:
		return "", fmt.Errorf("netns %s: sysctl %s does not exist (a missing interface, or a kernel module not loaded?)", k.NS, k.Name())
	}
	return before, nil
}

// errText is an error as a record's reader reports it, without the path the
// caller names anyway.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}
