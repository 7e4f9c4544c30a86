package kernel

// Readiness: `up` returns only once every process it started is ready. A
// `serve:` entry is ready when its port listens; a `run:` entry in map form when
// its `ready:` holds ({tcp: PORT}, {http: URL} or {file: PATH}). The checks run
// from inside the process's namespace (a thread sent there by RunIn), every
// readyPoll, until the entry's timeout. A process that exits first, or is not
// ready in time, fails its step of the plan with the last lines of its log; one
// that timed out is stopped, so that the next up starts it again and waits
// again, rather than taking a process that never got ready for a running one.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

const (
	readyPoll     = 25 * time.Millisecond // between two checks of a condition
	readyLogLines = 10                    // of a process's log, in the error that says it is not ready
)

// checkPortFree fails before a process is started when its port (a service's,
// or the tcp port of its ready:) already listens in its namespace: the process
// could not bind it, and a readiness check would take the other listener for
// it. The error names the process holding the port when netlab can see it.
func (d *Driver) checkPortFree(a reconcile.StartProcess) error {
	if a.Ready == nil || a.Ready.Kind != "tcp" {
		return nil
	}
	port := a.Ready.Port
	var inodes []uint64
	// A moment of grace: a process the plan has just stopped (an edited
	// command on the same port) may still be going away.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if inodes, err = d.listeners(a.NS, port); err != nil {
			return err
		}
		if len(inodes) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
	}
	what := fmt.Sprintf("run %s: %q", a.NS, a.Command)
	if a.Serve != nil {
		what = fmt.Sprintf("serve %s:%d", a.NS, port)
	}
	return fmt.Errorf("%s: port %d is in use by %s", what, port, socketOwner(inodes))
}

// listeners returns the inodes of the TCP sockets listening on port, on any
// address, in a namespace (what `ss -Hltn sport = :PORT` lists).
func (d *Driver) listeners(ns string, port int) ([]uint64, error) {
	var out []uint64
	err := d.RunIn(ns, func() error {
		for _, name := range []string{"tcp", "tcp6"} {
			// thread-self: this thread's network namespace, not the process's.
			b, err := os.ReadFile("/proc/thread-self/net/" + name)
			if os.IsNotExist(err) {
				continue // no IPv6 in this kernel
			}
			if err != nil {
				return err
			}
			out = append(out, listening(b, port)...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: list listening sockets: %w", ns, err)
	}
	return out, nil
}

// listening parses /proc/net/tcp or tcp6 and returns the inodes of the sockets
// in LISTEN state whose local port is port.
func listening(table []byte, port int) []uint64 {
	var out []uint64
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if !ok || err != nil || int(p) != port {
			continue
		}
		if ino, err := strconv.ParseUint(f[9], 10, 64); err == nil {
			out = append(out, ino)
		}
	}
	return out
}

// socketOwner names the process that holds one of the sockets, by reading the
// descriptors of every process: a walk over /proc done only when a port is
// found taken, to say by whom.
func socketOwner(inodes []uint64) string {
	want := map[string]bool{}
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(ino, 10)+"]"] = true
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := "/proc/" + p.Name()
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			if target, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && want[target] {
				comm, _ := os.ReadFile(dir + "/comm")
				return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
			}
		}
	}
	return "a process netlab cannot see (another PID namespace, or one that just ended)"
}

// waitReady waits until a process started for the lab is ready (see the top of
// this file); nil at once for a process without a condition. exited receives
// how the process ended, if it does.
func (d *Driver) waitReady(a reconcile.StartProcess, pid int, logPath string, exited <-chan string) error {
	r := a.Ready
	if r == nil {
		return nil
	}
	deadline := time.Now().Add(r.Timeout)
	for {
		ready, why := d.isReady(a.NS, r)
		if ready {
			return nil
		}
		select {
		case how := <-exited:
			stopGroup(pid, nil)
			return fmt.Errorf("netns %s: %q exited before it was ready (%s); %s", a.NS, a.Command, how, d.state.logTail(logPath, startHeader(a.Command)))
		case <-time.After(readyPoll):
		}
		if time.Now().After(deadline) {
			stopGroup(pid, exited)
			return fmt.Errorf("netns %s: %q is not ready after %s (%s), so netlab stopped it; %s",
				a.NS, a.Command, r.Timeout, why, d.state.logTail(logPath, startHeader(a.Command)))
		}
	}
}

// isReady checks a condition once; when it does not hold, why says what is missing.
func (d *Driver) isReady(ns string, r *reconcile.Ready) (ready bool, why string) {
	switch r.Kind {
	case "tcp":
		inodes, err := d.listeners(ns, r.Port)
		if err != nil {
			return false, err.Error()
		}
		return len(inodes) > 0, fmt.Sprintf("nothing listens on tcp port %d", r.Port)
	case "udp":
		bound, err := d.udpBound(ns, r.Port)
		if err != nil {
			return false, err.Error()
		}
		return bound, fmt.Sprintf("nothing listens on udp port %d", r.Port)
	case "http":
		status, err := d.httpStatus(ns, r.URL)
		switch {
		case err != nil:
			return false, fmt.Sprintf("GET %s: %v", r.URL, err)
		case status < 200 || status > 399:
			return false, fmt.Sprintf("GET %s answers %d", r.URL, status)
		}
		return true, ""
	case "file":
		_, err := os.Stat(r.Path)
		return err == nil, fmt.Sprintf("%s does not exist", r.Path)
	}
	return false, fmt.Sprintf("unknown readiness check %q", r.Kind)
}

// httpStatus GETs url from inside a namespace (its connection made there) and
// returns the status, without following redirects.
func (d *Driver) httpStatus(ns, url string) (int, error) {
	client := &http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil, // the namespace's own address, never a proxy of the machine
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := d.RunIn(ns, func() (err error) {
					c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(url)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // without Go's "Get URL:" prefix, which the caller writes
		}
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// stopGroup stops the process group netlab made for a process it started
// (its own session): SIGTERM, then SIGKILL when exited (if not nil) has not
// reported its end within two seconds.
func stopGroup(pid int, exited <-chan string) {
	if exited == nil {
		unix.Kill(-pid, unix.SIGKILL)
		return
	}
	unix.Kill(-pid, unix.SIGTERM)
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
	}
	unix.Kill(-pid, unix.SIGKILL)
}

// openLog opens a namespace's log, shared by its processes and exec: commands,
// to append to; it returns the log's path for logTail.
func (s *stateDir) openLog(lab, ns string) (*os.File, string, error) {
	path := filepath.Join(s.labDir(lab), ns+".log")
	f, err := s.openFile(path, unix.O_CREAT|unix.O_APPEND|unix.O_WRONLY, 0o600)
	if err != nil {
		return nil, path, fmt.Errorf("netns %s: open log: %w", ns, err)
	}
	return f, path, nil
}

// logHeader writes the line that starts a command's output in a log, the one
// logTail looks for.
func logHeader(w io.Writer, header string) {
	fmt.Fprintf(w, "--- %s %s\n", time.Now().UTC().Format(time.RFC3339), header)
}

// logTail is the end of what a command wrote to its log since its header
// line (a namespace's log is shared by its processes and exec: commands; netlab
// writes "--- TIME HEADER" before each), for an error. Only the last 64 KiB are
// read: the output of interest follows its header.
func (s *stateDir) logTail(path, header string) string {
	f, err := s.openFile(path, unix.O_RDONLY, 0)
	if err != nil {
		return "its output is in " + path
	}
	defer f.Close()
	const window = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > window {
		f.Seek(st.Size()-window, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	start := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "--- ") && strings.HasSuffix(l, " "+header) {
			start = i + 1
		}
	}
	lines = lines[start:]
	if len(lines) == 0 || (len(lines) == 1 && lines[0] == "") {
		return "it wrote nothing to its log " + path
	}
	if len(lines) > readyLogLines {
		lines = lines[len(lines)-readyLogLines:]
	}
	return fmt.Sprintf("the last lines of its log %s:\n    %s", path, strings.Join(lines, "\n    "))
}
