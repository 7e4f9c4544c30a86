package kernel

// Readiness: `up` returns only once every process it started is ready. A
// `serve:` entry is ready when its port listens; a `run:` entry in map form when
// its `ready:` holds ({tcp: PORT}, {http: URL} or {file: PATH}). The checks run
// from inside the process's namespace (a thread sent there by RunIn), every
// readyPoll, until the entry's timeout. A process that exits first, or is not
// ready in time, fails its step of the plan with the last lines of its log; what
// it left running is stopped (see abandon), so that the next up starts it again
// and waits again, rather than taking a process that never got ready for a
// running one. So is one whose wait is interrupted (Ctrl-C).

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

const (
	readyPoll     = 25 * time.Millisecond // between two checks of a condition
	readyLogLines = 10                    // of a process's log, in the error that says it is not ready
)

// checkPortFree fails before a process is started when its port already
// answers in its namespace: a service's, or its ready:'s (tcp, udp, or an
// http URL's when it leads to the namespace itself). The process could not bind
// it, and the readiness check would take the other socket for it. The error
// names the process holding the port when netlab can see it.
//
// An http URL may be served by another process of the lab on purpose (a proxy
// in front of the one starting, answering 502 until it is up): a port held by
// a process in the lab's cgroups is no conflict for an http check.
func (d *Driver) checkPortFree(a reconcile.StartProcess) error {
	if a.Ready == nil {
		return nil
	}
	proto, port, addr, err := d.readyPort(a.NS, a.Ready)
	if err != nil || port == 0 {
		return err
	}
	inodes, err := d.portHolders(a.NS, proto, port, addr)
	if err != nil || len(inodes) == 0 {
		return err
	}
	if a.Ready.Kind == "http" {
		if pid, _ := socketHolder(inodes); pid != 0 && d.inLabCgroups(a.Lab, pid) {
			return nil
		}
	}
	// A moment of grace: a process the plan has just stopped (an edited
	// command on the same port) may still be going away.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if inodes, err = d.portHolders(a.NS, proto, port, addr); err != nil || len(inodes) == 0 {
			return err
		}
	}
	what := fmt.Sprintf("run %s: %q", a.NS, a.Command)
	if a.Serve != nil {
		what = fmt.Sprintf("serve %s:%d", a.NS, port)
	}
	owner := "a process netlab cannot see (another PID namespace, or one that just ended)"
	if pid, comm := socketHolder(inodes); pid != 0 {
		owner = fmt.Sprintf("pid %d (%s)", pid, comm)
	}
	return fmt.Errorf("%s: %s port %d is in use by %s", what, proto, port, owner)
}

// inLabCgroups reports whether a process is in one of the lab's cgroups (never,
// without cgroups).
func (d *Driver) inLabCgroups(lab string, pid int) bool {
	base, err := d.cgroupBase()
	if err != nil || base == "" {
		return false
	}
	return strings.HasPrefix(cgroupOf(pid), cgroupRel(d.cgroupMount, filepath.Join(base, lab))+"/")
}

// readyPort is the port a readiness check looks at in the process's own
// namespace: tcp or udp, the port, and for http the address the URL leads to
// (any address of the namespace answers the other checks). Port 0: the check
// looks at no port of the namespace (a file, or a URL that leads elsewhere).
func (d *Driver) readyPort(ns string, r *reconcile.Ready) (proto string, port int, addr netip.Addr, err error) {
	switch r.Kind {
	case "tcp", "udp":
		return r.Kind, r.Port, netip.Addr{}, nil
	case "http":
		u, err := url.Parse(r.URL)
		if err != nil {
			return "", 0, netip.Addr{}, err
		}
		port, _ := strconv.Atoi(cmp.Or(u.Port(), "80"))
		if u.Hostname() == "localhost" {
			return "tcp", port, netip.IPv4Unspecified(), nil // 127.0.0.1 or ::1: see httpStatus
		}
		addr, err := netip.ParseAddr(u.Hostname())
		if err != nil {
			return "", 0, netip.Addr{}, err
		}
		if addr.IsUnspecified() {
			// http://0.0.0.0:8000/, as python3 -m http.server prints it: Linux
			// connects that to the namespace itself, as localhost.
			return "tcp", port, netip.IPv4Unspecified(), nil
		}
		local, err := d.isLocalAddr(ns, addr)
		if err != nil || !local {
			return "", 0, netip.Addr{}, err
		}
		return "tcp", port, addr.Unmap(), nil
	}
	return "", 0, netip.Addr{}, nil
}

// isLocalAddr says whether an address is the namespace's own: a loopback
// address, or one of its interfaces'.
func (d *Driver) isLocalAddr(ns string, addr netip.Addr) (bool, error) {
	if addr.IsLoopback() {
		return true, nil
	}
	h, done, err := d.lib(ns)
	if err != nil {
		return false, err
	}
	defer done()
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return false, fmt.Errorf("netns %s: list addresses: %w", ns, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr.Unmap() {
			return true, nil
		}
	}
	return false, nil
}

// portHolders returns the inodes of the sockets in a namespace that hold a
// port: for tcp those listening, for udp those bound (unconnected). With addr
// valid, only those that would answer on addr: bound to it or to any address
// (addr unspecified: any loopback or unspecified address).
//
// Equivalent to: ss -Hltn 'sport = :PORT' (ss -Hlun for udp)
func (d *Driver) portHolders(ns, proto string, port int, addr netip.Addr) ([]uint64, error) {
	var out []uint64
	err := d.RunIn(ns, func() error {
		for _, name := range []string{proto, proto + "6"} {
			// thread-self: this thread's network namespace, not the process's.
			b, err := os.ReadFile("/proc/thread-self/net/" + name)
			if os.IsNotExist(err) {
				continue // no IPv6 in this kernel
			}
			if err != nil {
				return err
			}
			for _, s := range boundSockets(b, proto) {
				if s.port == port && answersOn(s.addr, addr) {
					out = append(out, s.inode)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: list %s sockets: %w", ns, proto, err)
	}
	return out, nil
}

// answersOn says whether a socket bound to bound takes connections to want (see
// portHolders).
func answersOn(bound, want netip.Addr) bool {
	bound = bound.Unmap()
	switch {
	case !want.IsValid() || bound.IsUnspecified():
		return true
	case want.IsUnspecified():
		return bound.IsLoopback()
	}
	return bound == want
}

// boundSocket is a row of /proc/net/{tcp,udp}[6]: a socket's local address and
// port, and its inode.
type boundSocket struct {
	addr  netip.Addr
	port  int
	inode uint64
}

// boundSockets parses /proc/net/tcp, tcp6, udp or udp6 and returns the TCP
// sockets in LISTEN state, or the unconnected UDP ones.
func boundSockets(table []byte, proto string) []boundSocket {
	state := "0A" // TCP_LISTEN
	if proto == "udp" {
		state = "07" // TCP_CLOSE: a UDP socket bound and not connected
	}
	var out []boundSocket
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != state {
			continue
		}
		hexAddr, hexPort, ok := strings.Cut(f[1], ":")
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if !ok || err != nil {
			continue
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, boundSocket{addr: procNetAddr(hexAddr), port: int(p), inode: ino})
	}
	return out
}

// procNetAddr decodes an address of /proc/net/tcp: 8 or 32 hex digits, each
// 32-bit word in the host's byte order.
func procNetAddr(hexAddr string) netip.Addr {
	b, err := hex.DecodeString(hexAddr)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.Addr{}
	}
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(b[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return addr
}

// socketHolder finds a process that holds one of the sockets, and its name, by
// reading the descriptors of every process: a walk over /proc done only when a
// port is found taken, to say by whom. 0 when netlab sees none.
func socketHolder(inodes []uint64) (pid int, comm string) {
	want := map[string]bool{}
	for _, ino := range inodes {
		want["socket:["+strconv.FormatUint(ino, 10)+"]"] = true
	}
	procs, _ := os.ReadDir(procRoot)
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := procRoot + "/" + p.Name()
		fds, _ := os.ReadDir(dir + "/fd")
		for _, fd := range fds {
			if target, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && want[target] {
				comm, _ := os.ReadFile(dir + "/comm")
				return pid, strings.TrimSpace(string(comm))
			}
		}
	}
	return 0, ""
}

// readyBaseline is what a readiness check must see change: for {file: PATH},
// the file as it was before the process started, if it was there (left by an
// earlier run, or anyone else). Its mere existence proves nothing then.
type readyBaseline struct {
	file *unix.Stat_t
}

// baselineOf looks at what a process's readiness check will look at, before
// the process starts.
func baselineOf(r *reconcile.Ready) readyBaseline {
	var b readyBaseline
	if r != nil && r.Kind == "file" {
		var st unix.Stat_t
		if err := unix.Stat(r.Path, &st); err == nil {
			b.file = &st
		}
	}
	return b
}

// waitReady waits until a process started for the lab is ready (see the top of
// this file); nil at once for a process without a condition.
func (d *Driver) waitReady(ctx context.Context, a reconcile.StartProcess, c *child, base readyBaseline, logPath string) error {
	r := a.Ready
	if r == nil {
		return nil
	}
	deadline := time.Now().Add(r.Timeout)
	for {
		// A check enters the namespace: as many at once as starts.
		if err := d.takeStartSlot(ctx); err != nil {
			return fmt.Errorf("netns %s: %q: interrupted while netlab waited for it to be ready, so netlab stopped it: %w", a.NS, a.Command, err)
		}
		ready, why := d.isReady(a.NS, r, base)
		<-d.startSlots
		if ready {
			return nil
		}
		if d.entryEnded(a, c) {
			return fmt.Errorf("netns %s: %q exited before it was ready (%s); %s", a.NS, a.Command, c.how, d.state.logTail(logPath, startHeader(a.Command)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netns %s: %q: interrupted while netlab waited for it to be ready (%s), so netlab stopped it: %w", a.NS, a.Command, why, ctx.Err())
		case <-time.After(readyPoll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns %s: %q is not ready after %s (%s), so netlab stopped it; %s",
				a.NS, a.Command, r.Timeout, why, d.state.logTail(logPath, startHeader(a.Command)))
		}
	}
}

// isReady checks a condition once; when it does not hold, why says what is missing.
func (d *Driver) isReady(ns string, r *reconcile.Ready, base readyBaseline) (ready bool, why string) {
	switch r.Kind {
	case "tcp", "udp":
		inodes, err := d.portHolders(ns, r.Kind, r.Port, netip.Addr{})
		if err != nil {
			return false, err.Error()
		}
		return len(inodes) > 0, fmt.Sprintf("nothing listens on %s port %d", r.Kind, r.Port)
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
		var st unix.Stat_t
		if err := unix.Stat(r.Path, &st); err != nil {
			return false, fmt.Sprintf("%s does not exist", r.Path)
		}
		if old := base.file; old != nil && st.Dev == old.Dev && st.Ino == old.Ino && st.Mtim == old.Mtim && st.Ctim == old.Ctim {
			return false, fmt.Sprintf("%s is still the file that was there before the process started", r.Path)
		}
		return true, ""
	}
	return false, fmt.Sprintf("unknown readiness check %q", r.Kind)
}

// httpStatus GETs url from inside a namespace (its connection made there) and
// returns the status, without following redirects.
//
// The connection is made on the thread RunIn sends into the namespace, and on
// that thread only: the URL's host is an address (topology allows no names but
// localhost, tried here as 127.0.0.1, then ::1), so nothing is looked up, and
// Go's dialer does not race the families in goroutines of its own, which would
// connect from netlab's namespace.
func (d *Driver) httpStatus(ns, url string) (int, error) {
	client := &http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil, // the namespace's own address, never a proxy of the machine
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				hosts := []string{host}
				if host == "localhost" {
					hosts = []string{"127.0.0.1", "::1"}
				}
				var c net.Conn
				err = d.RunIn(ns, func() (err error) {
					dialer := net.Dialer{Timeout: time.Second, FallbackDelay: -1}
					var first error
					for _, h := range hosts {
						if c, err = dialer.DialContext(ctx, "tcp", net.JoinHostPort(h, port)); err == nil {
							return nil
						}
						first = cmp.Or(first, err)
					}
					return first
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

// stopGroup stops the process group netlab made for a process it started (its
// own session), where no cgroup holds it: SIGTERM, then SIGKILL unless the
// process ended within two seconds. Only while the process is not seen to have
// ended: once netlab has reaped it, its PID, and so the group's number, may be
// someone else's.
func stopGroup(c *child) {
	select {
	case <-c.ended:
		return // reaped: the number may be someone else's by now
	default:
	}
	unix.Kill(-c.pid, unix.SIGTERM)
	select {
	case <-c.ended:
	case <-time.After(2 * time.Second):
		unix.Kill(-c.pid, unix.SIGKILL)
	}
}

// logPath is the log of a namespace's processes and exec: commands.
func (s *stateDir) logPath(lab, ns string) string { return filepath.Join(s.labDir(lab), ns+".log") }

// openLog opens a namespace's log, shared by its processes and exec: commands,
// to append to; it returns the log's path for logTail.
func (s *stateDir) openLog(lab, ns string) (*os.File, string, error) {
	path := s.logPath(lab, ns)
	f, err := s.openFile(path, unix.O_CREAT|unix.O_APPEND|unix.O_WRONLY, 0o600)
	if err != nil {
		return nil, path, fmt.Errorf("netns %s: open log: %w", ns, err)
	}
	return f, path, nil
}

// logHeader writes the line that starts a command's output in a log, the one
// logTail looks for.
func logHeader(w io.Writer, header string) {
	fmt.Fprintf(w, "--- %s %s\n", time.Now().UTC().Format(time.RFC3339), oneLine(header))
}

// oneLine writes a header's line breaks as \n: a serve: body may have some,
// and a header broken over lines would never be found (see logTail).
func oneLine(header string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(header)
}

// ProcessLog is the end of what a process entry wrote to its namespace's log
// since it was last started (see logTail).
func (d *Driver) ProcessLog(lab, ns, command string) string {
	return d.state.logTail(d.state.logPath(lab, ns), startHeader(command))
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
		if strings.HasPrefix(l, "--- ") && strings.HasSuffix(l, " "+oneLine(header)) {
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
