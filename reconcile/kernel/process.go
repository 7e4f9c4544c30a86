package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// A lab's processes are the lab's by kernel identity, never by their
// environment (see cgroup.go): the cgroup netlab starts each entry in, or where
// no cgroup v2 is mounted the PID and start time it recorded (see procRecord);
// and any process inside a lab namespace, by the namespace it is in, when that
// namespace is deleted. The NETLAB_* variables netlab still sets are
// information for the user, never proof alone (see recordedRunning for the
// one place they count, beside the kernel's facts).

// procRoot is where /proc is; tests point it elsewhere to prove what does not
// read it.
var procRoot = "/proc"

// procIsOurs refuses a /proc of another PID namespace than netlab's: `unshare
// --pid --fork` without --mount-proc leaves the machine's /proc in place, where
// PID N is another process than netlab's PID N. Before netlab signals a PID it
// checks the process in /proc (its network namespace, its cgroup, its start
// time): the check and the signal would be about two different processes.
func (d *Driver) procIsOurs() error {
	d.procOnce.Do(func() {
		self, err := os.Readlink(procRoot + "/self")
		if err != nil || self != strconv.Itoa(os.Getpid()) {
			d.procErr = fmt.Errorf("%s is not of netlab's PID namespace (%s/self is %q, netlab is PID %d: unshare --pid without --mount-proc?): netlab will not start or stop processes by what it shows", procRoot, procRoot, self, os.Getpid())
		}
	})
	return d.procErr
}

// procRecord is what netlab keeps, in the lab's state directory, of a process
// entry it started: its command (the cgroup's name is only a hash of it), and
// where no cgroup v2 is mounted the PID and start time of the process.
type procRecord struct {
	Command string `json:"command"`
	PID     int    `json:"pid,omitempty"`
	Start   uint64 `json:"start,omitempty"` // field 22 of /proc/PID/stat: the PID is this process only while it matches
	// Pending is set from before the start until the process is ready: a run
	// killed while it waits leaves it set, and the next up starts the entry
	// again instead of taking what runs for ready.
	Pending bool `json:"pending,omitempty"`
}

// procRecords is the directory of the records of a lab namespace's entries.
func (s *stateDir) procRecords(lab, ns string) string {
	return filepath.Join(s.labDir(lab), "processes", ns)
}

func (s *stateDir) procRecordPath(lab, ns, command string) string {
	return filepath.Join(s.procRecords(lab, ns), commandHash(command)+".json")
}

func (s *stateDir) writeProcRecord(lab, ns string, rec procRecord) error {
	if err := s.mkdirAll(s.procRecords(lab, ns), 0o700); err != nil {
		return err
	}
	return s.writeJSON(s.procRecordPath(lab, ns, rec.Command), rec)
}

// procRecordNamespaces are the namespaces the lab has process records in.
func (s *stateDir) procRecordNamespaces(lab string) []string {
	dirs, _ := s.readDir(filepath.Join(s.labDir(lab), "processes"))
	names := make([]string, len(dirs))
	for i, n := range dirs {
		names[i] = n.Name()
	}
	return names
}

// procRecordsOf reads the records of a lab namespace's entries; one that
// cannot be read is left out.
func (s *stateDir) procRecordsOf(lab, ns string) []procRecord {
	files, _ := s.readDir(s.procRecords(lab, ns))
	var recs []procRecord
	for _, f := range files {
		var rec procRecord
		if s.readJSON(filepath.Join(s.procRecords(lab, ns), f.Name()), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// recordReady clears the record's Pending mark once its process is ready.
func (s *stateDir) recordReady(lab, ns, command string) error {
	var rec procRecord
	if err := s.readJSON(s.procRecordPath(lab, ns, command), &rec); err != nil {
		return fmt.Errorf("netns %s: record %q as ready: %w", ns, command, err)
	}
	rec.Pending = false
	return s.writeProcRecord(lab, ns, rec)
}

// readStat reads a process's state letter, process group and start time from
// /proc/PID/stat.
func readStat(dir string) (state byte, pgid int, start uint64, ok bool) {
	fields := statFields(dir)
	if len(fields) < 20 {
		return 0, 0, 0, false
	}
	pgid, err1 := strconv.Atoi(fields[2])
	start, err2 := strconv.ParseUint(fields[19], 10, 64)
	return fields[0][0], pgid, start, err1 == nil && err2 == nil
}

// statFields are the fields of DIR/stat after the command name, which is in
// parentheses and may contain anything: state (field 3), ppid, pgrp, ...,
// starttime (field 22); nil when it cannot be read.
func statFields(dir string) []string {
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

func zombie(dir string) bool {
	state, _, _, ok := readStat(dir)
	return !ok || state == 'Z'
}

// recordedAlive reports whether the process of a record is still the one netlab
// started: alive, not a zombie, with the start time recorded.
func recordedAlive(rec procRecord) bool {
	state, _, start, ok := readStat(procRoot + "/" + strconv.Itoa(rec.PID))
	return ok && rec.PID > 0 && state != 'Z' && start == rec.Start
}

// recordedRunning reports whether anything of a recorded entry still runs: its
// process (see recordedAlive) or, once that ended, what it forked in the
// process group it led (netlab starts each entry in a session of its own).
//
// The group's number alone proves nothing once its leader is gone: after the
// group ended, a new process may have been given the number and led a group
// of its own (a daemon's double fork, or the same lab's entry in another
// sandbox). A member is the entry's only if it has all of: the group number, a
// start after the recorded process's, the entry's network namespace (netnsIno:
// another sandbox's host is another namespace), and the marks netlab put in
// the entry's environment (NETLAB_LAB, NETLAB_NS, NETLAB_RUN). A fork that
// cleaned its environment (env -i) or left the namespace is not followed: the
// lab loses track of a process rather than take someone else's. This reads
// all of /proc, only for an entry whose own process ended while its group
// lives.
func recordedRunning(lab, ns string, netnsIno uint64, rec procRecord) bool {
	if recordedAlive(rec) {
		return true
	}
	if rec.PID <= 0 {
		return false
	}
	if state, _, _, ok := readStat(procRoot + "/" + strconv.Itoa(rec.PID)); ok && state != 'Z' {
		return false // another process has the number: the entry's group ended before it got it
	}
	marks := []string{reconcile.EnvLab + "=" + lab, reconcile.EnvNS + "=" + ns, reconcile.EnvRun + "=" + rec.Command}
	return runningMember(rec.PID, false, func(dir string, start uint64) bool {
		var st unix.Stat_t
		if start < rec.Start || unix.Stat(dir+"/ns/net", &st) != nil || st.Ino != netnsIno {
			return false
		}
		env, err := os.ReadFile(dir + "/environ")
		if err != nil {
			return false
		}
		vars := map[string]bool{}
		for _, v := range bytes.Split(env, []byte{0}) {
			vars[string(v)] = true
		}
		return vars[marks[0]] && vars[marks[1]] && vars[marks[2]]
	})
}

// recordRunning is recordedRunning for an entry of a namespace the driver can
// open; one it cannot (gone) has nothing of the entry running inside.
func (d *Driver) recordRunning(lab, ns string, rec procRecord) bool {
	ino, err := d.netnsInode(ns)
	return err == nil && recordedRunning(lab, ns, ino, rec)
}

// netnsProcesses lists the processes inside a network namespace, by its inode:
// one stat of /proc/PID/ns/net per process of the machine, made once for all
// the namespaces a run deletes (until something starts a process).
func (d *Driver) netnsProcesses(ino uint64) ([]int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byNetns == nil {
		entries, err := os.ReadDir(procRoot)
		if err != nil {
			return nil, err
		}
		d.byNetns = map[uint64][]int{}
		self := os.Getpid()
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(procRoot+"/"+e.Name()+"/ns/net", &st) == nil { // a zombie has none
				d.byNetns[st.Ino] = append(d.byNetns[st.Ino], pid)
			}
		}
	}
	return d.byNetns[ino], nil
}

// processesChanged drops the list made by netnsProcesses.
func (d *Driver) processesChanged() {
	d.mu.Lock()
	d.byNetns = nil
	d.mu.Unlock()
}

// netnsInode is the inode that identifies a namespace, as /proc/PID/ns/net shows it.
func (d *Driver) netnsInode(ns string) (uint64, error) {
	h, done, err := d.use(ns)
	if err != nil {
		return 0, err
	}
	done()
	return h.ino, nil // read when the handle was opened
}

// observeProcesses finds the lab's running processes: those in the lab's
// cgroups (reading only the lab's own cgroup.procs files), or where there are
// none, the recorded processes whose start time still matches. Nothing else on
// the machine is looked at. An entry of a namespace that is not the lab's (yet)
// is not its process there.
func (d *Driver) observeProcesses(s *reconcile.State) error {
	base, err := d.cgroupBase()
	if err != nil {
		return err
	}
	if err := d.observeRecordedProcesses(s, base); err != nil || base == "" {
		return err
	}
	cgDirs, err := os.ReadDir(filepath.Join(base, s.Lab))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list the lab's cgroups: %w", err)
	}
	self := cgroupOf(os.Getpid())
	for _, n := range cgDirs {
		ns := nsOfCgroup(n.Name())
		if !n.IsDir() || !labNamespace(s, ns) {
			continue // the kernel's own files (cgroup.procs) are no directories
		}
		for _, cg := range cgroupEntries(filepath.Join(base, s.Lab, n.Name())) {
			pids, populated, err := cgroupTreePIDs(cg)
			if err != nil {
				return err
			}
			if !populated {
				continue
			}
			var rec procRecord
			if d.state.readJSON(filepath.Join(d.state.procRecords(s.Lab, ns), filepath.Base(cg)+".json"), &rec) != nil {
				rec.Command = "(unrecorded command of cgroup " + cg + ")"
			}
			p := d.addProcess(s, ns, rec.Command, pids, cg)
			p.NotReady = rec.Pending
			if rel := cgroupRel(d.cgroupMount, cg); self == rel || strings.HasPrefix(self, rel+"/") {
				p.Unstoppable = selfInside
			}
		}
	}
	return nil
}

// observeRecordedProcesses reads the records: those with a PID, of a start
// without cgroups, are followed by PID and start time whether this run has
// cgroups (base) or not (an earlier run may not have had them); those without,
// of a start in a cgroup, are read with the cgroups, or by a run without them
// as out of its reach.
func (d *Driver) observeRecordedProcesses(s *reconcile.State, base string) error {
	var own map[int]bool // this netlab's process groups and its ancestors', read once when needed
	for _, ns := range d.state.procRecordNamespaces(s.Lab) {
		if !labNamespace(s, ns) {
			continue
		}
		for _, rec := range d.state.procRecordsOf(s.Lab, ns) {
			switch {
			case rec.PID > 0 && d.recordRunning(s.Lab, ns, rec):
				p := d.addProcess(s, ns, rec.Command, []int{rec.PID}, "")
				p.NotReady = rec.Pending
				// Stopping it signals its group (netlab started it leading
				// one), which may hold this netlab or what started it.
				if own == nil {
					own = ownGroups()
				}
				if own[rec.PID] {
					p.Unstoppable = selfInside
				}
			case rec.PID == 0 && base == "":
				pids, cg, err := d.outOfReachPIDs(s.Lab, ns, rec.Command)
				if err != nil {
					return err
				}
				if len(pids) > 0 {
					p := d.addProcess(s, ns, rec.Command, pids, "")
					p.Unstoppable, p.NotReady = outOfReach(cg), rec.Pending
				}
			}
		}
	}
	return nil
}

// selfInside is why a run cannot stop the entry it runs in (a netlab a lab
// process started): it would kill itself half-way, and each retry the same.
const selfInside = "this netlab runs in it (the entry started it): run netlab from outside the lab's processes"

// labNamespace: the host, or a namespace observed as the lab's.
func labNamespace(s *reconcile.State, ns string) bool {
	_, ok := s.Namespaces[ns]
	return ok || ns == reconcile.Host
}

// addProcess adds processes of an entry to the observed state, and remembers
// the entry's cgroup ("" for none) for stopping it.
func (d *Driver) addProcess(s *reconcile.State, ns, command string, pids []int, cgroup string) *reconcile.Process {
	k := reconcile.ProcKey{NS: ns, Command: command}
	if s.Processes[k] == nil {
		s.Processes[k] = &reconcile.Process{ProcKey: k}
	}
	s.Processes[k].PIDs = append(s.Processes[k].PIDs, pids...)
	if cgroup != "" {
		d.mu.Lock()
		d.procCgroups[k] = cgroup
		d.mu.Unlock()
	}
	return s.Processes[k]
}

// outOfReachPIDs reads, for a run without a writable cgroup v2, the processes
// of an entry an earlier run started in a cgroup, and that cgroup (see
// cgroupOutOfReach). Reading who is in a cgroup needs no right to write it, so
// plan and status see the entry running; a plan that would stop it is refused
// (Process.Unstoppable).
func (d *Driver) outOfReachPIDs(lab, ns, command string) ([]int, string, error) {
	cg := d.cgroupOutOfReach(lab, ns, command)
	if cg == "" {
		return nil, "", nil
	}
	pids, populated, err := cgroupTreePIDs(cg)
	if err != nil {
		return nil, "", err
	}
	if len(pids) == 0 && populated {
		// Its processes are all of another PID namespace: taken for not
		// running, the entry would run twice.
		return nil, "", fmt.Errorf("netns %s: %q runs in cgroup %s, whose processes this run can neither see (they are of another PID namespace) nor stop (it cannot write the cgroup): run netlab where an earlier run started it", ns, command, cg)
	}
	return pids, cg, nil
}

// outOfReach is why a run cannot stop what runs in a cgroup it cannot write:
// signals one by one would miss what the processes fork meanwhile, and the
// cgroup would stay.
func outOfReach(cg string) string {
	return fmt.Sprintf("it runs in cgroup %s, which this run cannot write (a read-only /sys/fs/cgroup?): run netlab where an earlier run started it", cg)
}

// stopProcess stops a process entry of the lab: with cgroups, every process of
// its cgroup (see stopCgroups), forks included; otherwise the process netlab
// recorded, if its start time still matches, with its process group (see
// stopRecorded).
//
// Equivalent to: kill PID...; echo 1 >/sys/fs/cgroup/netlab/.../cgroup.kill
func (d *Driver) stopProcess(lab string, p reconcile.Process) error {
	if err := d.procIsOurs(); err != nil {
		return fmt.Errorf("netns %s: stop %q: %w", p.NS, p.Command, err)
	}
	base, err := d.cgroupBase()
	if err != nil {
		return err
	}
	if base == "" {
		if cg := d.cgroupOutOfReach(lab, p.NS, p.Command); cg != "" {
			// The plan is refused before this (Process.Unstoppable); a
			// process started there since is not stopped either.
			return fmt.Errorf("netns %s: stop %q: %s", p.NS, p.Command, outOfReach(cg))
		}
		err = d.stopRecorded(lab, p.NS, p.Command)
	} else {
		d.mu.Lock()
		cg, ok := d.procCgroups[p.ProcKey]
		d.mu.Unlock()
		if !ok {
			cg = entryCgroup(base, lab, p.NS, p.Command)
		}
		err = errors.Join(d.stopRecorded(lab, p.NS, p.Command), // an entry started without cgroups, by an earlier run
			stopCgroups(d.cgroupMount, []string{cg}))
		d.state.remove(filepath.Join(d.state.procRecords(lab, p.NS), filepath.Base(cg)+".json"))
	}
	if err != nil {
		return fmt.Errorf("netns %s: stop %q: %w", p.NS, p.Command, err)
	}
	return nil
}

// stopRecorded stops the process netlab recorded for an entry (where there are
// no cgroups), and removes the record. The process is signalled through a pidfd
// once its start time is seen to match; its group too (netlab started it in a
// group of its own, whose ID cannot go to anyone else while the leader lives).
func (d *Driver) stopRecorded(lab, ns, command string) error {
	path := d.state.procRecordPath(lab, ns, command)
	var rec procRecord
	if d.state.readJSON(path, &rec) != nil || rec.PID == 0 {
		return nil // none, or of a start in a cgroup: stopped and removed with it
	}
	var groups []int
	signalIf(rec.PID, unix.SIGTERM, func() bool {
		if !recordedAlive(rec) {
			return false
		}
		groups = []int{rec.PID}
		unix.Kill(-rec.PID, unix.SIGTERM)
		return true
	})
	if len(groups) == 0 && d.recordRunning(lab, ns, rec) {
		// The process ended; what it forked runs on in its group.
		groups = []int{rec.PID}
		unix.Kill(-rec.PID, unix.SIGTERM)
	}
	if len(groups) > 0 {
		if err := terminate(nil, groups); err != nil {
			return err
		}
	}
	d.state.remove(path)
	return nil
}

// stopAllRecorded stops the processes of every record of the lab (starts
// without cgroups), whatever became of their namespaces: one deleted by hand
// (ip netns del) is no longer the lab's, so no plan stops what runs there, and
// what runs there keeps it alive, nameless. Forget calls it before the records go.
func (d *Driver) stopAllRecorded(lab string) error {
	for _, ns := range d.state.procRecordNamespaces(lab) {
		for _, rec := range d.state.procRecordsOf(lab, ns) {
			if err := d.stopRecorded(lab, ns, rec.Command); err != nil {
				return fmt.Errorf("netns %s: stop %q: %w", ns, rec.Command, err)
			}
		}
	}
	return nil
}

// stopNetnsEntries stops the lab's process entries of a namespace about to be
// deleted: by their cgroups, or where there are none, by their records.
func (d *Driver) stopNetnsEntries(lab, ns string) error {
	base, err := d.cgroupBase()
	if err != nil {
		return err
	}
	if base != "" {
		// Its cgroups, and those an older netlab named without "ns-" (see
		// nsCgroup): a directory, not the kernel's file of that name.
		dirs := []string{nsCgroup(base, lab, ns)}
		if legacy := filepath.Join(base, lab, ns); legacy != dirs[0] && isDir(legacy) {
			dirs = append(dirs, legacy)
		}
		for _, dir := range dirs {
			if err := stopCgroups(d.cgroupMount, cgroupEntries(dir)); err != nil {
				return fmt.Errorf("netns %s: %w", ns, err)
			}
			if err := rmdirCgroup(dir); err != nil {
				return err
			}
		}
	} else {
		for _, rec := range d.state.procRecordsOf(lab, ns) {
			if rec.PID == 0 {
				if cg := d.cgroupOutOfReach(lab, ns, rec.Command); cg != "" {
					// The plan is refused before this (Process.Unstoppable).
					return fmt.Errorf("netns %s: stop %q: %s", ns, rec.Command, outOfReach(cg))
				}
			}
			if err := d.stopRecorded(lab, ns, rec.Command); err != nil {
				return err
			}
		}
	}
	return nil
}

// killNetnsProcesses stops every process in a namespace that is about to be
// deleted (one left inside would keep it alive): the lab's entries there, by
// their cgroups (or records), then anyone else's process inside, found by the
// namespace's inode, alone (its group may be someone's shell).
func (d *Driver) killNetnsProcesses(lab, ns string) error {
	if err := d.procIsOurs(); err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	ino, err := d.netnsInode(ns)
	if err != nil {
		return err
	}
	if err := d.stopNetnsEntries(lab, ns); err != nil {
		return err
	}
	d.state.removeAll(d.state.procRecords(lab, ns))
	inside := func(pid int) func() bool {
		return func() bool {
			var st unix.Stat_t
			return unix.Stat(procRoot+"/"+strconv.Itoa(pid)+"/ns/net", &st) == nil && st.Ino == ino
		}
	}
	// What they fork while they are stopped is inside too: the machine's
	// processes are read again after a round that stopped any, a few times at
	// most. The first round uses the reading shared by the namespaces a run
	// deletes, which may list the lab's own processes stopped above, so a
	// process counts only if it is still inside.
	for round := 0; round < 3; round++ {
		pids, err := d.netnsProcesses(ino)
		if err != nil {
			return err
		}
		pids = slices.DeleteFunc(slices.Clone(pids), func(pid int) bool { return !inside(pid)() })
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			signalIf(pid, unix.SIGTERM, inside(pid))
		}
		for deadline := time.Now().Add(2 * time.Second); len(pids) > 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			pids = slices.DeleteFunc(pids, func(pid int) bool { return !inside(pid)() })
		}
		for _, pid := range pids {
			signalIf(pid, unix.SIGKILL, inside(pid))
		}
		d.processesChanged()
	}
	// Deleted with a process still inside, the namespace would live on,
	// nameless, and down would have said it was done.
	pids, err := d.netnsProcesses(ino)
	if err != nil {
		return err
	}
	if pids = slices.DeleteFunc(slices.Clone(pids), func(pid int) bool { return !inside(pid)() }); len(pids) > 0 {
		return fmt.Errorf("netns %s: processes are still inside after three rounds of stopping them (pids %v): either something keeps starting them there, or they cannot be killed (state D: waiting for a disk or a network file system)", ns, pids)
	}
	return nil
}

// terminate sends SIGTERM to each of pids and to every process of each group
// (process group ids), waits up to two seconds for them all to stop running, and
// SIGKILLs the rest, waiting up to five seconds more for them to end. A zombie counts as stopped: it holds no namespace any more
// and only waits for its parent.
func terminate(pids, groups []int) error {
	pids, groups = slices.Compact(slices.Sorted(slices.Values(pids))), slices.Compact(slices.Sorted(slices.Values(groups)))
	signal := func(sig unix.Signal) {
		for _, g := range groups {
			unix.Kill(-g, sig)
		}
		for _, pid := range pids {
			unix.Kill(pid, sig)
		}
	}
	wait := func(d time.Duration) bool {
		for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
			pids = slices.DeleteFunc(pids, func(pid int) bool {
				dir := procRoot + "/" + strconv.Itoa(pid)
				return !fileExists(dir) || zombie(dir)
			})
			groups = slices.DeleteFunc(groups, func(g int) bool { return !groupRunning(g) })
			if len(pids) == 0 && len(groups) == 0 {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	signal(unix.SIGTERM)
	if !wait(2 * time.Second) {
		// A killed process takes a moment to end on a busy machine: what is
		// observed next must not see it still running.
		signal(unix.SIGKILL)
		wait(5 * time.Second)
	}
	return nil
}

// groupRunning reports whether a process of the group is still running (not a
// zombie); when /proc cannot be read, it may be.
func groupRunning(pgid int) bool {
	return runningMember(pgid, true, func(string, uint64) bool { return true })
}

// runningMember reports whether a process of the group runs (not a zombie) for
// which also holds (given its /proc directory and start time); unreadable is
// the answer when /proc cannot be read. The kernel answers "no such group"
// cheaply; otherwise all of /proc is read (only where there are no cgroups).
func runningMember(pgid int, unreadable bool, also func(dir string, start uint64) bool) bool {
	if unix.Kill(-pgid, 0) == unix.ESRCH {
		return false
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return unreadable
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := procRoot + "/" + e.Name()
		if state, group, start, ok := readStat(dir); ok && group == pgid && state != 'Z' && also(dir, start) {
			return true
		}
	}
	return false
}
