package kernel

// Lab processes by kernel identity. Each `run:` and `serve:` entry of a lab runs
// in a cgroup v2 directory of its own, which the kernel maintains for every
// process inside and every process those fork, whatever they do with their
// environment:
//
//	<cgroup2 mount>/netlab/net-<ino>-<cookie>/<lab>/<namespace>/<hash of the command>
//
// net-<ino>-<cookie> names the network namespace netlab runs in (its inode, as
// `ls -l /proc/self/ns/net` shows it, and the kernel's cookie of it, which unlike
// an inode is never given to another namespace later): two sandboxes on one
// machine, each with a lab of the same name, never share a directory. netlab
// starts a process directly inside its cgroup (clone3 with CLONE_INTO_CGROUP:
// even its first instruction is accounted there), observes the lab by reading
// the cgroup.procs files of the lab's own directories only, stops an entry with
// cgroup.kill (its forks included) and removes the directory once the kernel
// says it is empty. The command text of each entry is kept in the lab's state
// directory (processes/<namespace>/<hash>.json) for the plan to print.
//
// Where no cgroup v2 is mounted (or it is read-only, as in many containers),
// the same record holds the PID and start time of the process netlab started
// (see pidRecord), which is the lab's only while its start time matches.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// cgroupMounts are where the unified hierarchy is found: mounted at
// /sys/fs/cgroup on a pure cgroup v2 machine, at /sys/fs/cgroup/unified on a
// hybrid (v1 controllers) one.
var cgroupMounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// findCgroup2 returns the writable cgroup v2 mount, or "" when there is none.
func findCgroup2() string {
	for _, p := range cgroupMounts {
		var fs unix.Statfs_t
		if unix.Statfs(p, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC {
			if unix.Access(p, unix.W_OK) != nil {
				return "" // read-only (a container's): pidfds serve
			}
			return p
		}
	}
	return ""
}

// cgroupBase returns netlab's cgroup directory for the network namespace it
// runs in (see the top of this file), or "" when processes are tracked by
// pidfds instead. It is worked out once per driver.
//
// Cgroups serve from Linux 5.14: that kernel brought both cgroup.kill, which
// stops a cgroup's processes with their late forks, and the namespace cookie
// that names the directory (an inode alone is used again by later namespaces).
// An older kernel, which answers the cookie's getsockopt with ENOPROTOOPT, has
// pidfds.
func (d *Driver) cgroupBase() (string, error) {
	d.cgOnce.Do(func() {
		if d.cgroupMount == "" {
			return
		}
		key, err := d.hostNetnsKey()
		switch {
		case errors.Is(err, unix.ENOPROTOOPT):
			d.log.Debug("kernel older than 5.14 (no netns cookie, no cgroup.kill): lab processes are tracked by pidfds")
		case err != nil:
			d.cgErr = err
		default:
			d.cgBase = filepath.Join(d.cgroupMount, "netlab", key)
		}
	})
	return d.cgBase, d.cgErr
}

// hostNetnsKey names the network namespace netlab runs in: net-<ino>-<cookie>.
func (d *Driver) hostNetnsKey() (string, error) {
	id, err := netnsIDOf(d.host)
	if err != nil {
		return "", err
	}
	cookie, err := d.netnsCookie(reconcile.Host)
	if err != nil {
		return "", err
	}
	if cookie == 0 {
		return "", fmt.Errorf("netns cookie: %w", unix.ENOPROTOOPT)
	}
	return fmt.Sprintf("net-%d-%d", id.Ino, cookie), nil
}

// cgroupOutOfReach finds, for a run without a writable cgroup v2, the cgroup an
// earlier run that had one started an entry in, if processes are still in it:
// this run can read who runs there but cannot stop them all (cgroup.kill). ""
// when there is none, or it is empty.
func (d *Driver) cgroupOutOfReach(lab, ns, command string) string {
	key, err := d.hostNetnsKey()
	if err != nil {
		return ""
	}
	for _, mount := range cgroupMounts {
		if cg := entryCgroup(filepath.Join(mount, "netlab", key), lab, ns, command); cgroupPopulated(cg) {
			return cg
		}
	}
	return ""
}

// commandHash names an entry's cgroup: short, safe as a file name, and the
// same for the same command.
func commandHash(command string) string {
	sum := sha256.Sum256([]byte(command))
	return hex.EncodeToString(sum[:8])
}

// entryCgroup is the cgroup of one process entry of a lab.
func entryCgroup(base, lab, ns, command string) string {
	return filepath.Join(nsCgroup(base, lab, ns), commandHash(command))
}

// nsCgroup is the cgroup of a lab namespace's entries. A cgroup directory
// holds the kernel's files beside its children, all named CONTROLLER.NAME
// (cgroup.procs, memory.max): a namespace whose name has a dot gets "ns-"
// before it, so that no name of the file format is one of those files.
func nsCgroup(base, lab, ns string) string {
	if strings.Contains(ns, ".") {
		ns = "ns-" + ns
	}
	return filepath.Join(base, lab, ns)
}

// nsOfCgroup is the namespace whose cgroup directory is called name (see
// nsCgroup). A directory with a dot and without "ns-" is one a netlab before
// nsCgroup made for that namespace: its processes are still the lab's.
func nsOfCgroup(name string) string {
	if ns, ok := strings.CutPrefix(name, "ns-"); ok && strings.Contains(ns, ".") {
		return ns
	}
	return name
}

// makeCgroup creates a cgroup (and its parents) and opens it, for clone3.
// Another lab's down removes netlab's shared directories above its own once they
// are empty (see removeParents), which may be while this one is made below
// them: a parent gone under MkdirAll is made again.
func makeCgroup(path string) (int, error) {
	err := os.MkdirAll(path, 0o755)
	for try := 0; errors.Is(err, unix.ENOENT) && try < 3; try++ {
		err = os.MkdirAll(path, 0o755)
	}
	if err != nil {
		return -1, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open cgroup %s: %w", path, err)
	}
	return fd, nil
}

// cgroupPIDs reads the processes of a cgroup (not of its children), as PIDs of
// netlab's PID namespace; any process at all makes populated true (one outside
// netlab's PID namespace reads as 0).
func cgroupPIDs(path string) (pids []int, populated bool, err error) {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.procs"))
	if err != nil {
		return nil, false, err
	}
	for _, f := range strings.Fields(string(b)) {
		populated = true
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, populated, nil
}

// cgroupTreePIDs reads the processes of an entry's cgroup and of the cgroups
// its processes made below it (see cgroupPIDs).
func cgroupTreePIDs(cg string) (pids []int, populated bool, err error) {
	for _, c := range cgroupTree(cg) {
		more, some, err := cgroupPIDs(c)
		if err != nil && !os.IsNotExist(err) {
			return nil, false, fmt.Errorf("read cgroup %s: %w", c, err)
		}
		pids, populated = append(pids, more...), populated || some
	}
	return pids, populated, nil
}

// cgroupPopulated reads cgroup.events: whether any process is left in the
// cgroup or below it. A cgroup that is gone is not populated.
func cgroupPopulated(path string) bool {
	b, err := os.ReadFile(filepath.Join(path, "cgroup.events"))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte("populated 1"))
}

// stopCgroups stops every process of the cgroups and removes them: SIGTERM to
// each process (through a pidfd, once the process is seen to be still in the
// cgroup), up to two seconds for them to end, then cgroup.kill, which takes the
// processes forked meanwhile too, and up to five seconds for the kernel to say
// the cgroups are empty. Equivalent to: kill PID...; sleep 2; echo 1 >cgroup.kill; rmdir CGROUP
func stopCgroups(mount string, paths []string) error {
	for _, p := range paths {
		for _, cg := range cgroupTree(p) { // the processes of cgroups a lab process made below too
			pids, _, _ := cgroupPIDs(cg)
			rel := cgroupRel(mount, cg)
			for _, pid := range pids {
				signalIf(pid, unix.SIGTERM, func() bool { return cgroupOf(pid) == rel })
			}
		}
	}
	waitEmpty := func(d time.Duration) []string {
		left := slices.Clone(paths)
		for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
			left = slices.DeleteFunc(left, func(p string) bool { return !cgroupPopulated(p) })
			if len(left) == 0 || time.Now().After(deadline) {
				return left
			}
		}
	}
	left := waitEmpty(2 * time.Second)
	for _, p := range left {
		if err := os.WriteFile(filepath.Join(p, "cgroup.kill"), []byte("1"), 0); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("kill cgroup %s: %w", p, err)
		}
	}
	if left = waitEmpty(5 * time.Second); len(left) > 0 {
		return fmt.Errorf("processes of cgroup %s did not stop within 5 s of cgroup.kill", left[0])
	}
	var errs []error
	for _, p := range paths {
		if err := rmdirCgroup(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdirCgroup removes a cgroup without processes, with the cgroups a lab
// process made below it (cgroup.kill stopped their processes too); a missing
// one is fine.
func rmdirCgroup(path string) error {
	for _, child := range cgroupEntries(path) {
		if err := rmdirCgroup(child); err != nil {
			return err
		}
	}
	if err := unix.Rmdir(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove cgroup %s: %w", path, err)
	}
	return nil
}

// removeParents removes the empty directories from dir up to (not including)
// stop, as far as each is empty: netlab's own directories, which another lab,
// or another sandbox's netlab, may still be using.
func removeParents(dir, stop string) {
	for ; dir != stop && strings.HasPrefix(dir, stop+"/"); dir = filepath.Dir(dir) {
		if unix.Rmdir(dir) != nil {
			return
		}
	}
}

// cgroupRel is a cgroup's path as /proc/PID/cgroup names it: below the
// mount of the hierarchy, from "/".
func cgroupRel(mount, path string) string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(path, mount), "/")
}

// cgroupOf is the cgroup v2 a process is in (the path of its "0::" line in
// /proc/PID/cgroup, see cgroupRel); "" when it cannot be read.
func cgroupOf(pid int) string {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path
		}
	}
	return ""
}

// signalIf signals a process through a pidfd if check, made once the pidfd is
// open, still holds: the PID cannot go to another process in between.
func signalIf(pid int, sig unix.Signal, check func() bool) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ENOSYS) {
		// Linux before 5.3 has no pidfds: the check, then the signal, as every
		// tool there does (the PID would have to be reused in between).
		return check() && unix.Kill(pid, sig) == nil
	}
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if !check() {
		return false
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0) == nil
}

// cgroupTree is a cgroup and every cgroup below it.
func cgroupTree(path string) []string {
	out := []string{path}
	for _, child := range cgroupEntries(path) {
		out = append(out, cgroupTree(child)...)
	}
	return out
}

// cgroupEntries lists the entry cgroups of one lab namespace.
func cgroupEntries(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// removeLabCgroups stops whatever is left in the lab's cgroups and removes them,
// with netlab's directories above them when nothing else is left there: `down`.
func (d *Driver) removeLabCgroups(lab string) error {
	base, err := d.cgroupBase()
	if err != nil || base == "" {
		return err
	}
	labDir := filepath.Join(base, lab)
	nsDirs, err := os.ReadDir(labDir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var entries []string
	for _, n := range nsDirs {
		if n.IsDir() {
			entries = append(entries, cgroupEntries(filepath.Join(labDir, n.Name()))...)
		}
	}
	if err := stopCgroups(d.cgroupMount, entries); err != nil {
		return err
	}
	for _, n := range nsDirs {
		if n.IsDir() {
			if err := rmdirCgroup(filepath.Join(labDir, n.Name())); err != nil {
				return err
			}
		}
	}
	removeParents(labDir, d.cgroupMount)
	return nil
}

// stopEarlierCopy stops what an earlier start of a lab's process entry left
// running (one copy of an entry, never two): the copy a record without
// cgroups names, and with cgroups whatever is in the entry's cgroup. A copy an
// interrupted run never saw ready is stopped here too, before its port is
// checked, which it would otherwise hold.
func (d *Driver) stopEarlierCopy(a reconcile.StartProcess) error {
	base, err := d.cgroupBase()
	if err != nil {
		return err
	}
	// A copy an earlier run started without cgroups is stopped by its record,
	// which the new one's replaces.
	if err := d.stopRecorded(a.Lab, a.NS, a.Command); err != nil {
		return err
	}
	if base == "" {
		return nil
	}
	// Where observation found it (a directory an older netlab named), and
	// where it would start now.
	d.mu.Lock()
	seen := d.procCgroups[a.ProcKey]
	d.mu.Unlock()
	var populated []string
	for _, cg := range []string{seen, entryCgroup(base, a.Lab, a.NS, a.Command)} {
		if cg != "" && cgroupPopulated(cg) {
			populated = append(populated, cg)
		}
	}
	return stopCgroups(d.cgroupMount, populated)
}

// placeProcess prepares the start of a lab's process entry, once
// stopEarlierCopy has stopped what ran: with cgroups, the command starts
// inside the entry's cgroup, and its command is recorded first; otherwise
// started, called with the new process's PID, records its PID and start time.
// Either record says the process was never seen ready (see recordReady). The
// caller calls started once cmd started (with 0 when it failed to), which also
// closes the cgroup's descriptor and the files cmd passed to the child.
func (d *Driver) placeProcess(a reconcile.StartProcess, cmd *exec.Cmd) (started func(pid int) error, err error) {
	base, err := d.cgroupBase()
	if err != nil {
		return nil, err
	}
	if base == "" {
		// The process waits for its record before it runs anything: a netlab
		// killed before it wrote it leaves no process behind (see AwaitGoAhead).
		goAhead, err := withGoAhead(cmd)
		if err != nil {
			return nil, err
		}
		return func(pid int) (err error) {
			closeExtraFiles(cmd)
			defer func() { goAhead(err == nil) }()
			if pid == 0 {
				return nil // it did not start
			}
			_, _, start, ok := readStat(procRoot + "/" + strconv.Itoa(pid))
			if !ok {
				return nil // already gone: waitStarted says why
			}
			return d.state.writeProcRecord(a.Lab, a.NS, procRecord{Command: a.Command, PID: pid, Start: start, Pending: true})
		}, nil
	}
	cg := entryCgroup(base, a.Lab, a.NS, a.Command)
	if err := d.state.writeProcRecord(a.Lab, a.NS, procRecord{Command: a.Command, Pending: true}); err != nil {
		return nil, err
	}
	fd, err := makeCgroup(cg)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.procCgroups[a.ProcKey] = cg
	d.mu.Unlock()
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	return func(int) error {
		closeExtraFiles(cmd)
		return unix.Close(fd)
	}, nil
}
