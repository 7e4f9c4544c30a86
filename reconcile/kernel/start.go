package kernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// Starting a lab's process entry: launching it in its namespace (and cgroup),
// then waiting until it runs its command and is ready (see ready.go), or
// stopping what it left when it is not.

// startHeader is the header of a process's start in its namespace's log (see
// stateDir.logTail).
func startHeader(command string) string { return "netlab starts: " + command }

// startProcess starts a process of the lab in a namespace, detached (its own
// session; netlab does not wait for it), with its output appended to the
// namespace's log file. It goes through `netlab __nsexec`, which enters the
// namespace as `ip netns exec` does before running the command.
//
// It starts inside the entry's cgroup (see placeProcess).
//
// Equivalent to: ip netns exec NS env NETLAB_LAB=LAB NETLAB_RUN=CMD sh -c CMD >>LOG 2>&1 &
func (d *Driver) startProcess(ctx context.Context, a reconcile.StartProcess) error {
	c, ready, logPath, err := d.launchProcess(ctx, a)
	if err != nil {
		return err
	}
	// Let it go: it belongs to the lab now, once it is in place and ready.
	// Waiting takes no start slot: what it waits for may be another process
	// of the same plan (a proxy's backend), which needs one to start.
	err = d.waitStarted(ctx, a, c, logPath)
	if err == nil {
		err = d.waitReady(ctx, a, c, ready, logPath)
	}
	if err == nil {
		err = d.state.recordReady(a.Lab, a.NS, a.Command)
	}
	if err != nil {
		d.abandon(a, c)
	}
	return err
}

// takeStartSlot waits for one of the driver's start slots, or until ctx ends:
// Ctrl-C, or another start of the plan failed (see reconcile.runPhase).
func (d *Driver) takeStartSlot(ctx context.Context) error {
	select {
	case d.startSlots <- struct{}{}:
		if err := ctx.Err(); err != nil {
			<-d.startSlots // a slot, but the plan was called off meanwhile
			return err
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// launchProcess starts a process entry, holding one of the driver's start
// slots meanwhile (see reconcile.StartProcess.Unbounded); it returns the
// child, what its readiness check will compare with, and its log's path.
func (d *Driver) launchProcess(ctx context.Context, a reconcile.StartProcess) (c *child, ready readyBaseline, logPath string, err error) {
	if err := d.takeStartSlot(ctx); err != nil {
		return nil, ready, "", fmt.Errorf("netns %s: %q not started: %w", a.NS, a.Command, err)
	}
	defer func() { <-d.startSlots }()
	if err := d.state.ensure(a.Lab); err != nil {
		return nil, ready, "", err
	}
	if err := d.procIsOurs(); err != nil {
		return nil, ready, "", fmt.Errorf("netns %s: start %q: %w", a.NS, a.Command, err)
	}
	if err := d.stopEarlierCopy(a); err != nil {
		return nil, ready, "", fmt.Errorf("netns %s: start %q: %w", a.NS, a.Command, err)
	}
	if err := d.checkPortFree(a); err != nil {
		return nil, ready, "", err
	}
	ready = baselineOf(a.Ready)
	log, logPath, err := d.state.openLog(a.Lab, a.NS)
	if err != nil {
		return nil, ready, "", err
	}
	defer log.Close() // the process has its own copy
	argv := []string{"/bin/sh", "-c", a.Command}
	if a.Serve != nil {
		argv = append([]string{d.self}, a.Serve.Args()...)
	}
	cmd, err := d.nsExecCommand(a.NS, argv)
	if err != nil {
		return nil, ready, "", err
	}
	cmd.Env = append(withoutMarkers(os.Environ()),
		reconcile.EnvLab+"="+a.Lab, reconcile.EnvNS+"="+a.NS, reconcile.EnvRun+"="+a.Command)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr.Setsid = true // its own session and process group: stopped as a group
	started, err := d.placeProcess(a, cmd)
	if err != nil {
		closeExtraFiles(cmd)
		return nil, ready, "", fmt.Errorf("netns %s: start %q: %w", a.NS, a.Command, err)
	}
	logHeader(log, startHeader(a.Command))
	if err := cmd.Start(); err != nil {
		started(0)
		return nil, ready, "", fmt.Errorf("netns %s: start %q: %w", a.NS, a.Command, err)
	}
	d.processesChanged()
	if err := started(cmd.Process.Pid); err != nil {
		d.abandon(a, newChild(cmd))
		return nil, ready, "", fmt.Errorf("netns %s: record %q: %w", a.NS, a.Command, err)
	}
	return newChild(cmd), ready, logPath, nil
}

// child is a process netlab started, reaped in the background if it dies while
// netlab runs: ended is closed then, and how says how it ended.
type child struct {
	pid   int
	ended chan struct{}
	how   string
}

func newChild(cmd *exec.Cmd) *child {
	c := &child{pid: cmd.Process.Pid, ended: make(chan struct{})}
	go func() {
		cmd.Wait()
		c.how = cmd.ProcessState.String()
		close(c.ended)
	}()
	return c
}

// abandon stops whatever a start that failed left running, so that the next
// up starts the entry again instead of taking what is left for it running: with
// cgroups, everything in the entry's cgroup (what the command forked, even into
// a session of its own, included); without, the process and its group (see
// stopRecorded), while netlab has not reaped it, so that the group's number is
// still the lab's.
func (d *Driver) abandon(a reconcile.StartProcess, c *child) {
	if base, _ := d.cgroupBase(); base == "" {
		stopGroup(c)
	}
	if err := d.stopProcess(a.Lab, a.Process); err != nil {
		d.log.Warn("a process that failed to start may be left running", "netns", a.NS, "command", a.Command, "err", err)
	}
}

// entryEnded reports, once the first process of an entry has exited (c.ended),
// whether the entry has ended: with cgroups, only when nothing it forked runs
// in its cgroup any more. A server that daemonizes (`redis-server --daemonize
// yes`, nginx's master, `./server &`) leaves its first process behind as it
// starts, and runs on.
func (d *Driver) entryEnded(a reconcile.StartProcess, c *child) bool {
	select {
	case <-c.ended:
	default:
		return false
	}
	d.mu.Lock()
	cg := d.procCgroups[a.ProcKey]
	d.mu.Unlock()
	if cg != "" {
		return !cgroupPopulated(cg)
	}
	// Without cgroups, what it forked in its process group, as observation
	// follows it (see recordedRunning).
	var rec procRecord
	if d.state.readJSON(d.state.procRecordPath(a.Lab, a.NS, a.Command), &rec) != nil || rec.PID == 0 {
		return true
	}
	return !d.recordRunning(a.Lab, a.NS, rec)
}

// waitStarted waits until a process started for the lab runs its command in its
// namespace, marked as the lab's, so that what is observed next sees it in place.
// A command that fails at once (not found, bad syntax) is an error of this step.
func (d *Driver) waitStarted(ctx context.Context, a reconcile.StartProcess, c *child, logPath string) error {
	ino, err := d.netnsInode(a.NS)
	if err != nil {
		return err
	}
	dir := "/proc/" + strconv.Itoa(c.pid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		// In place once it runs the command itself in its namespace: no longer the
		// shim (whose arguments start with __nsexec), unless it is one of netlab's
		// own servers, which the shim runs itself once inside.
		var st unix.Stat_t
		cmdline, _ := os.ReadFile(dir + "/cmdline")
		shim := bytes.Contains(cmdline, []byte("\x00__nsexec\x00"))
		select {
		case <-c.ended:
			if d.entryEnded(a, c) {
				return fmt.Errorf("netns %s: %q ended at once (%s); %s", a.NS, a.Command, c.how, d.state.logTail(logPath, startHeader(a.Command)))
			}
			return nil // what it forked runs on, in its cgroup and namespace
		default:
		}
		if unix.Stat(dir+"/ns/net", &st) == nil && st.Ino == ino && len(cmdline) > 0 && (!shim || a.Serve != nil) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netns %s: %q: interrupted while it started, so netlab stopped it: %w", a.NS, a.Command, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return fmt.Errorf("netns %s: %q did not start within 5 s, so netlab stopped it; %s", a.NS, a.Command, d.state.logTail(logPath, startHeader(a.Command)))
}
