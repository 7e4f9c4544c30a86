package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// procInfo is what /proc says about one process.
type procInfo struct {
	pid     int
	pgid    int    // its process group: a lab process and the children it forks
	sid     int    // its session: netlab starts each lab process in a new one
	netns   uint64 // inode of its network namespace
	lab     string // NETLAB_LAB of its environment
	ns      string // NETLAB_NS of its environment: the namespace it runs in for the lab
	command string // NETLAB_RUN of its environment
}

// listProcesses reads every live process's network namespace and lab markers.
// Zombies are skipped: they hold no namespace and will be reaped by their parent.
func listProcesses() ([]procInfo, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProcess(pid); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// readProcess reads one process's group, session, network namespace and lab
// markers; ok is false when it is gone, a zombie, or a kernel thread without a
// namespace of its own to us.
func readProcess(pid int) (p procInfo, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	var st unix.Stat_t
	state, pgid, sid, ok := readStat(dir)
	if !ok || state == 'Z' || unix.Stat(dir+"/ns/net", &st) != nil {
		return procInfo{}, false
	}
	p = procInfo{pid: pid, pgid: pgid, sid: sid, netns: st.Ino}
	if env, err := readEnviron(dir); err == nil {
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte(reconcile.EnvLab+"=")); ok {
				p.lab = string(v)
			} else if v, ok := bytes.CutPrefix(kv, []byte(reconcile.EnvNS+"=")); ok {
				p.ns = string(v)
			} else if v, ok := bytes.CutPrefix(kv, []byte(reconcile.EnvRun+"=")); ok {
				p.command = string(v)
			}
		}
	}
	return p, true
}

// readEnviron reads a process's environment. While a process executes a new
// program its environment can read as empty for a moment: a live process with
// an empty environment is read again before it counts as unmarked.
func readEnviron(dir string) ([]byte, error) {
	for try := 0; ; try++ {
		env, err := os.ReadFile(dir + "/environ")
		if len(env) > 0 || try == 5 || zombie(dir) {
			return env, err
		}
		time.Sleep(time.Millisecond)
	}
}

func zombie(dir string) bool {
	state, _, _, ok := readStat(dir)
	return !ok || state == 'Z'
}

// readStat reads a process's state letter, process group and session from
// /proc/PID/stat.
func readStat(dir string) (state byte, pgid, sid int, ok bool) {
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0, 0, 0, false
	}
	// The fields after the command name, which is in parentheses and may contain
	// anything: state, ppid, pgrp, session, ...
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 4 {
		return 0, 0, 0, false
	}
	pgid, err1 := strconv.Atoi(fields[2])
	sid, err2 := strconv.Atoi(fields[3])
	return fields[0][0], pgid, sid, err1 == nil && err2 == nil
}

// processes lists the processes, or returns the list made since nothing changed
// them (fresh forces a new list). Deleting a thousand namespaces must not read
// /proc a thousand times.
func (d *Driver) processes(fresh bool) ([]procInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.procs == nil || fresh {
		procs, err := listProcesses()
		if err != nil {
			return nil, err
		}
		d.procs = procs
	}
	return d.procs, nil
}

// processesChanged drops the list made by processes.
func (d *Driver) processesChanged() {
	d.mu.Lock()
	d.procs = nil
	d.mu.Unlock()
}

// netnsInode is the inode that identifies a namespace, as /proc/PID/ns/net shows it.
func (d *Driver) netnsInode(ns string) (uint64, error) {
	h, err := d.handle(ns)
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h.fd), &st); err != nil {
		return 0, fmt.Errorf("netns %s: stat: %w", ns, err)
	}
	return st.Ino, nil
}

// observeProcesses finds the lab's processes by the marks in their environment,
// in the namespace they are marked for: a process started a moment ago may not
// have entered it yet (its start was interrupted, say), and must not be started
// twice.
func (d *Driver) observeProcesses(s *reconcile.State, procs []procInfo) error {
	for _, p := range procs {
		ns := p.ns
		if _, ok := s.Namespaces[ns]; (!ok && ns != reconcile.Host) || p.lab != s.Lab || p.command == "" {
			continue
		}
		k := reconcile.ProcKey{NS: ns, Command: p.command}
		if s.Processes[k] == nil {
			s.Processes[k] = &reconcile.Process{ProcKey: k}
		}
		s.Processes[k].PIDs = append(s.Processes[k].PIDs, p.pid)
	}
	return nil
}

// startHeader is the header of a process's start in its namespace's log (see
// stateDir.logTail).
func startHeader(command string) string { return "netlab starts: " + command }

// startProcess starts a process of the lab in a namespace, detached (its own
// session; netlab does not wait for it), with its output appended to the
// namespace's log file. It goes through `netlab __nsexec`, which enters the
// namespace as `ip netns exec` does before running the command.
//
// Equivalent to: ip netns exec NS env NETLAB_LAB=LAB NETLAB_RUN=CMD sh -c CMD >>LOG 2>&1 &
func (d *Driver) startProcess(a reconcile.StartProcess) error {
	if err := d.state.ensure(a.Lab); err != nil {
		return err
	}
	if err := d.checkPortFree(a); err != nil {
		return err
	}
	logPath := filepath.Join(d.state.labDir(a.Lab), a.NS+".log")
	log, err := d.state.openFile(logPath, unix.O_CREAT|unix.O_APPEND|unix.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("netns %s: open log: %w", a.NS, err)
	}
	defer log.Close()
	argv := []string{"/bin/sh", "-c", a.Command}
	if a.Serve != nil {
		argv = append([]string{d.self}, a.Serve.Args()...)
	}
	cmd := d.nsExecCommand(a.NS, argv)
	cmd.Env = append(withoutMarkers(os.Environ()),
		reconcile.EnvLab+"="+a.Lab, reconcile.EnvNS+"="+a.NS, reconcile.EnvRun+"="+a.Command)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr.Setsid = true // its own session and process group: stopped as a group
	fmt.Fprintf(log, "--- %s %s\n", time.Now().UTC().Format(time.RFC3339), startHeader(a.Command))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("netns %s: start %q: %w", a.NS, a.Command, err)
	}
	pid := cmd.Process.Pid
	d.processesChanged()
	// Let it go: it belongs to the lab now. Reap it if it dies while we run, and
	// tell waitStarted how it ended.
	exited := make(chan string, 1)
	go func() {
		cmd.Wait()
		exited <- cmd.ProcessState.String()
	}()
	if err := d.waitStarted(a, pid, logPath, exited); err != nil {
		return err
	}
	return d.waitReady(a, pid, logPath, exited)
}

// waitStarted waits until a process started for the lab runs its command in its
// namespace, marked as the lab's, so that what is observed next sees it in place.
// A command that fails at once (not found, bad syntax) is an error of this step.
func (d *Driver) waitStarted(a reconcile.StartProcess, pid int, logPath string, exited <-chan string) error {
	ino, err := d.netnsInode(a.NS)
	if err != nil {
		return err
	}
	dir := "/proc/" + strconv.Itoa(pid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		select {
		case how := <-exited:
			return fmt.Errorf("netns %s: %q ended at once (%s); %s", a.NS, a.Command, how, d.state.logTail(logPath, startHeader(a.Command)))
		default:
		}
		// In place once it runs the command itself in its namespace: no longer the
		// shim (whose arguments start with __nsexec), unless it is one of netlab's
		// own servers, which the shim runs itself once inside.
		var st unix.Stat_t
		cmdline, _ := os.ReadFile(dir + "/cmdline")
		shim := bytes.Contains(cmdline, []byte("\x00__nsexec\x00"))
		if unix.Stat(dir+"/ns/net", &st) == nil && st.Ino == ino && len(cmdline) > 0 && (!shim || a.Serve != nil) {
			return nil
		}
	}
	return fmt.Errorf("netns %s: %q did not start within 5 s; its output is in %s", a.NS, a.Command, logPath)
}

// nsExecCommand prepares `netlab __nsexec` running argv in a namespace, in a new
// mount namespace of its own.
func (d *Driver) nsExecCommand(ns string, argv []string) *exec.Cmd {
	path, etc := d.netnsPath(ns), filepath.Join(d.etcDir, ns)
	var extra []*os.File
	if ns == reconcile.Host {
		// The host has no namespace file: the child gets the driver's handle on it
		// as its descriptor 3 (in tests the host is itself a sandbox namespace).
		extra = []*os.File{os.NewFile(uintptr(d.host), "host-netns")}
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

// stopProcess stops processes of the lab: SIGTERM, then SIGKILL to what is still
// running after a grace period; each with its process group when netlab made
// that group for it (see stopTargets). Only processes that still carry the lab's
// marker are signalled (a PID may have been reused).
//
// Equivalent to: kill PID... (kill -- -PID for a command netlab started)
func (d *Driver) stopProcess(lab string, p reconcile.Process) error {
	procs, err := listProcesses()
	if err != nil {
		return err
	}
	return terminate(stopTargets(procs, lab, ourselves(), func(info procInfo) bool {
		return slices.Contains(p.PIDs, info.pid) && info.lab == lab && info.command == p.Command
	}))
}

// killNetnsProcesses stops every process in a namespace that is about to be
// deleted (one left inside would keep it alive), and the lab's processes marked
// for it that have not entered it yet.
func (d *Driver) killNetnsProcesses(lab, ns string) error {
	ino, err := d.netnsInode(ns)
	if err != nil {
		return err
	}
	procs, err := d.processes(false)
	if err != nil {
		return err
	}
	pids, groups := stopTargets(procs, lab, ourselves(), func(p procInfo) bool {
		return p.netns == ino || (p.lab == lab && p.ns == ns)
	})
	// The list may be some seconds old: a group whose leader is no longer the
	// lab's (it ended, and its PID went to someone else) is not signalled.
	groups = slices.DeleteFunc(groups, func(g int) bool { return !labLeader(g, lab) })
	return terminate(pids, groups)
}

// stopTargets says how to stop the processes that match. A process whose group
// netlab made for the lab (the group's leader is a process netlab started, in a
// session of its own, carrying the lab's marker) and whose leader matches too is
// stopped with its whole group: a `sh -c` that was forking its command while the
// list was read leaves no child behind. Any other process is stopped alone: its
// group may be someone's shell, make, or a lab command that only sent a child
// into the namespace. netlab itself (self) and its own group are never signalled.
func stopTargets(procs []procInfo, lab string, self procInfo, match func(procInfo) bool) (pids, groups []int) {
	leaders := map[int]bool{}
	for _, p := range procs {
		if p.lab == lab && p.pid == p.pgid && p.pid == p.sid && p.pgid != self.pgid && match(p) {
			leaders[p.pid] = true
		}
	}
	for _, p := range procs {
		switch {
		case p.pid == self.pid || !match(p):
		case leaders[p.pgid]:
			groups = append(groups, p.pgid)
		default:
			pids = append(pids, p.pid)
		}
	}
	return pids, groups
}

// ourselves is netlab's own process and group, which it never signals.
func ourselves() procInfo { return procInfo{pid: os.Getpid(), pgid: unix.Getpgrp()} }

// labLeader reports whether a process is still a leader netlab made for the lab:
// alive, leading its own session and group, with the lab's marker.
func labLeader(pid int, lab string) bool {
	p, ok := readProcess(pid)
	return ok && p.pgid == pid && p.sid == pid && p.lab == lab
}

// terminate sends SIGTERM to each of pids and to every process of each group
// (process group ids), waits up to two seconds for them all to stop running, and
// SIGKILLs the rest. A zombie counts as stopped: it holds no namespace any more
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
	signal(unix.SIGTERM)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		pids = slices.DeleteFunc(pids, func(pid int) bool {
			dir := "/proc/" + strconv.Itoa(pid)
			return !fileExists(dir) || zombie(dir)
		})
		groups = slices.DeleteFunc(groups, func(g int) bool { return !groupRunning(g) })
		if len(pids) == 0 && len(groups) == 0 {
			return nil
		}
	}
	signal(unix.SIGKILL)
	return nil
}

// groupRunning reports whether a process of the group is still running (not a
// zombie). The kernel answers "no such group" cheaply; otherwise /proc is read.
func groupRunning(pgid int) bool {
	if unix.Kill(-pgid, 0) == unix.ESRCH {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if state, group, _, ok := readStat("/proc/" + e.Name()); ok && group == pgid && state != 'Z' {
			return true
		}
	}
	return false
}

// Generated files under /etc/netns.

// etc is the directory of generated files, /etc/netns: its paths go through a
// tree (see safefs.go), so no link in it is followed.
func (d *Driver) etc() *tree {
	root := filepath.Clean(d.etcDir)
	return &tree{root: root, where: root}
}

// observeFiles reads the files under the /etc/netns directory: the lab's (by the
// marker on their first line) and, for conflicts, those netlab did not write.
// Where the directory of a namespace, its file or netlab's temporary file is a
// link or another kind of object, the file is someone else's: a conflict for a
// lab that wants it, never followed.
func (d *Driver) observeFiles(s *reconcile.State) error {
	etc := d.etc()
	dirs, err := etc.readDir(etc.root)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", d.etcDir, err)
	}
	for _, dir := range dirs {
		k := reconcile.FileKey{NS: dir.Name(), Name: "hosts"}
		if !dir.IsDir() {
			s.ForeignFiles[k] = true // a link, or a file, where the directory goes
			continue
		}
		path := filepath.Join(etc.root, k.NS, k.Name)
		var notOwn *notOwnError
		if err := etc.regularOrAbsentAt(path + ".tmp"); errors.As(err, &notOwn) {
			s.ForeignFiles[k] = true
			continue
		}
		b, err := etc.readFile(path)
		if errors.As(err, &notOwn) {
			s.ForeignFiles[k] = true
			continue
		}
		if err != nil {
			continue
		}
		content := string(b)
		first, _, _ := strings.Cut(content, "\n")
		switch {
		case first == reconcile.FileMarker(s.Lab):
			s.Files[k] = content
		case !strings.HasPrefix(first, "# "+reconcile.MarkerPrefix):
			s.ForeignFiles[k] = true
		}
	}
	return nil
}

// writeFile writes a generated file atomically, readable by everyone (it is an
// /etc/hosts).
//
// Equivalent to: mkdir -p /etc/netns/NS && cat >/etc/netns/NS/hosts
func (d *Driver) writeFile(a reconcile.WriteFile) error {
	etc := d.etc()
	dir := filepath.Join(etc.root, a.NS)
	if err := etc.mkdirAll(dir, 0o755); err != nil {
		return err
	}
	return etc.replaceFile(filepath.Join(dir, a.Name), []byte(a.Content), 0o644)
}

// deleteFile removes a generated file, and its directory once empty.
//
// Equivalent to: rm -f /etc/netns/NS/hosts; rmdir /etc/netns/NS
func (d *Driver) deleteFile(k reconcile.FileKey) error {
	etc := d.etc()
	dir := filepath.Join(etc.root, k.NS)
	if err := etc.remove(filepath.Join(dir, k.Name)); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := etc.removeDir(dir); err != nil && !os.IsNotExist(err) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
