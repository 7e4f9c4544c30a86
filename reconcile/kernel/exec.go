package kernel

// One-shot setup commands (`exec:`). The kernel keeps no trace of a command
// that ran, so the driver records it in the lab's state directory:
//
//	exec/NS.json  {"netns": NS, "netns_cookie": C, "commands": [{"command": ..., "hash": ...}, ...]}
//
// the commands of namespace NS (or "host") that ran and succeeded, in order
// (see reconcile.ExecCommand), in the namespace whose cookie is C (the kernel's
// number for a network namespace, never given to another one since boot): a
// namespace of the same name made since, by netlab, by a script or by hand,
// has run none of them. Observe reads the records of the lab's
// namespaces only: one directory listing and one small file per namespace with
// commands. A namespace's record goes when the namespace is deleted, the whole
// directory with `down`.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// execRecord is the content of exec/NS.json.
type execRecord struct {
	NS       string                  `json:"netns"`
	Cookie   uint64                  `json:"netns_cookie,omitempty"` // 0: unknown (before Linux 5.14, or an older netlab)
	Commands []reconcile.ExecCommand `json:"commands"`
}

func (s *stateDir) execDir(lab string) string { return filepath.Join(s.labDir(lab), "exec") }

func (s *stateDir) execPath(lab, ns string) string {
	return filepath.Join(s.execDir(lab), ns+".json")
}

// writeExecs records the commands that ran in a namespace as it is now; an
// empty list removes the record.
func (d *Driver) writeExecs(lab, ns string, list []reconcile.ExecCommand) error {
	s := d.state
	if len(list) == 0 {
		return s.forgetExecs(lab, ns)
	}
	cookie, err := d.netnsCookie(ns)
	if err != nil {
		return err
	}
	if err := s.ensure(lab); err != nil {
		return err
	}
	if err := s.mkdirAll(s.execDir(lab), 0o700); err != nil {
		return err
	}
	if err := s.writeJSON(s.execPath(lab, ns), execRecord{NS: ns, Cookie: cookie, Commands: list}); err != nil {
		return fmt.Errorf("netns %s: record exec commands: %w", ns, err)
	}
	return nil
}

// forgetExecs removes the record of a namespace.
func (s *stateDir) forgetExecs(lab, ns string) error {
	if err := s.remove(s.execPath(lab, ns)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("netns %s: forget exec commands: %w", ns, err)
	}
	return nil
}

// observeExecs reads the records of the namespaces s holds, and of the host.
func (d *Driver) observeExecs(s *reconcile.State) error {
	entries, err := d.state.readDir(d.state.execDir(s.Lab))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list exec records of lab %s: %w", s.Lab, err)
	}
	for _, e := range entries {
		ns, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if _, exists := s.Namespaces[ns]; !exists && ns != reconcile.Host {
			continue // its namespace is gone: so is what ran in it
		}
		ran, err := d.readExecs(s.Lab, ns)
		if err != nil {
			// A damaged record is an empty one: the commands run again.
			d.log.Debug("unreadable exec record", "netns", ns, "err", err)
			continue
		}
		if len(ran) > 0 {
			s.Execs[ns] = ran
		}
	}
	return nil
}

// readExecs reads the commands recorded as run in a namespace as it is now:
// none when there is no record, or the record is of another namespace of that
// name (another cookie) or of another name.
func (d *Driver) readExecs(lab, ns string) ([]reconcile.ExecCommand, error) {
	var rec execRecord
	err := d.state.readJSON(d.state.execPath(lab, ns), &rec)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netns %s: read exec record: %w", ns, err)
	}
	if rec.NS != ns {
		return nil, nil
	}
	if rec.Cookie != 0 {
		cookie, err := d.netnsCookie(ns)
		if err != nil {
			return nil, err
		}
		if cookie != 0 && cookie != rec.Cookie {
			return nil, nil // of an earlier namespace of that name: nothing ran in this one
		}
	}
	return rec.Commands, nil
}

// runExec runs one `exec:` command with /bin/sh in its namespace (through
// `netlab __nsexec`, as a `run:` process, with the namespace's /etc/netns
// files), its output appended to the namespace's log, and records it once it
// succeeded. Until then the record holds the commands before it only, so a
// failure (or a crash) leaves it to run again.
//
// Equivalent to: ip netns exec NS sh -c CMD
func (d *Driver) runExec(ctx context.Context, a reconcile.RunExec) error {
	if err := d.writeExecs(a.Lab, a.NS, a.List[:a.Index]); err != nil {
		return err
	}
	log, logPath, err := d.state.openLog(a.Lab, a.NS)
	if err != nil {
		return err
	}
	defer log.Close()
	header := "netlab exec: " + a.Command()
	logHeader(log, header)
	cmd, err := d.nsExecCommand(a.NS, []string{"/bin/sh", "-c", a.Command()})
	if err != nil {
		return err
	}
	cmd.Env = withoutNetlabMarks(os.Environ())
	// Straight into the log file, not through a pipe: a command that leaves a
	// child in the background must not keep up waiting for its output.
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr.Setpgid = true // its own group: interrupting up stops it and what it started
	// The shell is killed with netlab (kill -9 included), not left to run on
	// beside the same command run again by the next up. The kernel sends it
	// when the thread that started the child ends, so this goroutine keeps its
	// thread until the command is done. What the shell forked does not inherit
	// it: inside a lab namespace down stops that; on the host it runs on.
	cmd.SysProcAttr.Pdeathsig = unix.SIGKILL
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	closeExtraFiles(cmd)
	if err != nil {
		return fmt.Errorf("netns %s: exec %q: %w", a.NS, a.Command(), err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		case <-done:
		}
	}()
	err = cmd.Wait()
	close(done)
	if err != nil {
		return fmt.Errorf("netns %s: exec %q failed (%v); %s", a.NS, a.Command(), err, d.state.logTail(logPath, header))
	}
	return d.writeExecs(a.Lab, a.NS, a.List)
}

// RecordExec records that command number index (from 0) of a namespace's
// exec: list ran and succeeded, after the commands before it, as runExec does:
// for the script of `plan -o commands`.
func (d *Driver) RecordExec(lab, ns string, index int, command string) error {
	ran, err := d.readExecs(lab, ns)
	if err != nil {
		return err
	}
	list, err := reconcile.RecordedExec(ran, index, command)
	if err != nil {
		return fmt.Errorf("netns %s: %w", ns, err)
	}
	return d.writeExecs(lab, ns, list)
}

// KeepExecs cuts the record of a namespace's exec commands to its first keep
// commands (what ForgetExec does): `netlab __forget-exec`, for the script of
// `plan -o commands`.
func (d *Driver) KeepExecs(lab, ns string, keep int) error {
	ran, err := d.readExecs(lab, ns)
	if err != nil {
		return err
	}
	if keep >= len(ran) {
		return nil
	}
	return d.writeExecs(lab, ns, ran[:keep])
}

// netnsCookie is the kernel's number for a namespace, which no other network
// namespace gets until the machine boots again; 0 where the kernel does not
// tell it (before Linux 5.14).
func (d *Driver) netnsCookie(ns string) (uint64, error) {
	h, done, err := d.use(ns)
	if err != nil {
		return 0, err
	}
	defer done()
	cookie, err := unix.GetsockoptUint64(h.rt.fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("netns %s: cookie: %w", ns, err)
	}
	return cookie, nil
}

// withoutNetlabMarks drops the variables that mark a lab's processes: an exec
// command is not one, and neither is what it leaves running.
func withoutNetlabMarks(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, reconcile.EnvLab+"=") && !strings.HasPrefix(kv, reconcile.EnvNS+"=") && !strings.HasPrefix(kv, reconcile.EnvRun+"=") {
			out = append(out, kv)
		}
	}
	return out
}
