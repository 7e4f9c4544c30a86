package kernel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// createNetns makes a named namespace as `ip netns add` does, but marked as the
// lab's before it gets its name: the loopback's alias and up state are set while
// the namespace is still anonymous, so a crash never leaves an unmarked one behind.
//
// Equivalent to: ip netns add NAME; ip -n NAME link set lo alias netlab:LAB; ip -n NAME link set lo up
func (d *Driver) createNetns(lab, name string, ipv6 bool) error {
	if err := notHostName(name); err != nil {
		return err
	}
	path := d.netnsPath(name)
	if fileExists(path) && d.interruptedNetns(lab, name) {
		os.Remove(path) // the file of a creation killed before its namespace was mounted on it
	}
	if fileExists(path) {
		owner, _, err := d.netnsOwner(name)
		if err != nil {
			return err
		}
		if owner != lab {
			return fmt.Errorf("netns %s: %w and is not owned by lab %s", name, os.ErrExist, lab)
		}
		return nil // made by an earlier, interrupted run
	}
	if err := d.ensureNetnsDir(); err != nil {
		return err
	}
	// A crash between creating the file and mounting the namespace on it would
	// leave a plain file that looks like someone else's namespace: record first.
	if err := d.state.recordNetnsIntent(lab, name); err != nil {
		return err
	}
	defer d.state.remove(d.state.netnsIntent(lab, name))

	errc := make(chan error, 1)
	go func() {
		// This thread enters the new namespace, then goes back to netlab's own
		// and serves again: a thousand new threads cost more than the way back.
		// Should it not get back, the goroutine ends locked and the runtime
		// retires the thread.
		runtime.LockOSThread()
		h, err := d.makeNetns(lab, name, path, ipv6)
		if err == nil {
			d.mu.Lock()
			d.identity[name] = h.nsIdentity // a namespace of this run's own making
			d.mu.Unlock()
			d.keepHandle(name, h, false)
		}
		if home, err := homeNetns(); err == nil && netns.Set(home) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// makeNetns does the work of createNetns on a thread of its own, and returns
// the new namespace's handle: its sockets, opened from inside, serve every later
// step (no entering it again).
func (d *Driver) makeNetns(lab, name, path string, ipv6 bool) (*nsHandle, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("netns %s: unshare: %w", name, err)
	}
	self := "/proc/thread-self/ns/net"
	fd, err := unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netns %s: open %s: %w", name, self, err)
	}
	h, err := newHandle(netns.NsHandle(fd))
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	// The addresses and routes that follow go through the library's handle:
	// opened here, inside, it costs no visit later.
	if err := h.openSockets(true); err != nil {
		h.fd.Close()
		return nil, fmt.Errorf("netns %s: open netlink socket: %w", name, err)
	}
	fail := func(err error) (*nsHandle, error) {
		h.closeSockets()
		h.fd.Close()
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	if !ipv6 { // before lo is up and any other interface exists, so none ever starts IPv6
		if err := d.writeIPv6Sysctls(false); err != nil {
			return fail(fmt.Errorf("turn IPv6 off: %w", err))
		}
	}
	if err := setIfaceByName(h.rt, "lo", reconcile.Marker(lab), true); err != nil {
		return fail(fmt.Errorf("mark lo and set it up: %w", err))
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fail(fmt.Errorf("create %s: %w", path, err))
	}
	f.Close()
	if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fail(fmt.Errorf("bind-mount onto %s: %w", path, err))
	}
	return h, nil
}

// notHostName refuses the name "host" for a namespace netlab makes or deletes:
// plans and state call the namespace netlab runs in so (topology refuses it
// for a lab's namespace; this holds for any caller).
func notHostName(name string) error {
	if name == reconcile.Host {
		return fmt.Errorf("netns %s: the name netlab keeps for the namespace it runs in", name)
	}
	return nil
}

// ensureNetnsDir makes the namespace directory a shared mount point, as iproute2
// does, so namespaces created later show up in mount namespaces made earlier
// (`ip netns exec` shells, other sandboxes).
func (d *Driver) ensureNetnsDir() error {
	d.netnsDirMu.Lock() // namespaces are created concurrently: bind it once, not once each
	defer d.netnsDirMu.Unlock()
	if d.netnsDirReady {
		return nil
	}
	if err := os.MkdirAll(d.netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", d.netnsDir, err)
	}
	err := unix.Mount("", d.netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(d.netnsDir, d.netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto itself: %w", d.netnsDir, err)
		}
		err = unix.Mount("", d.netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", d.netnsDir, err)
	}
	d.netnsDirReady = true
	return nil
}

// deleteNetns removes a namespace as `ip netns del` does: every process inside is
// stopped (one left there would keep it alive), then its file is unmounted, and
// the kernel destroys it with everything inside. It does so asynchronously, in
// batches (deleting a thousand namespaces' veths one by one would wait for the
// kernel a thousand times), so the other ends of its veths (takes) linger a
// moment: the driver waits for them before it observes or creates anything.
//
// Equivalent to: ip netns del NAME
func (d *Driver) deleteNetns(lab, name string, takes []reconcile.InterfaceKey) error {
	if err := notHostName(name); err != nil {
		return err
	}
	path := d.netnsPath(name)
	if !fileExists(path) {
		return nil
	}
	if d.replaced(name) {
		return fmt.Errorf("netns %s: %s now leads to another namespace than the one this run read; not deleted (run again)", name, path)
	}
	if err := d.killNetnsProcesses(lab, name); err != nil {
		return err
	}
	ino, _ := d.netnsInode(name)
	d.forget(name) // our own handle would keep it alive too
	d.mu.Lock()
	d.dying = append(d.dying, takes...)
	d.dyingNetns[ino] = name
	d.mu.Unlock()
	// A crash between the unmount and the removal would leave a plain file that
	// looks like someone else's namespace: recorded, like an interrupted creation.
	if err := d.state.recordNetnsIntent(lab, name); err != nil {
		return err
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("netns %s: unmount %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("netns %s: remove %s: %w", name, path, err)
	}
	d.state.remove(d.state.netnsIntent(lab, name))
	return nil
}

// interruptedNetns reports whether a namespace file is what an interrupted
// creation of this lab left: a plain regular file (not a link, nothing mounted
// on it), with the creation recorded.
func (d *Driver) interruptedNetns(lab, name string) bool {
	var st unix.Stat_t
	var fs unix.Statfs_t
	path := d.netnsPath(name)
	if err := unix.Lstat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if err := unix.Statfs(path, &fs); err != nil || fs.Type == unix.NSFS_MAGIC {
		return false
	}
	return d.state.exists(d.state.netnsIntent(lab, name))
}

// netnsOwner reads the marker of a named namespace: the lab that owns it ("" when
// netlab did not make it), from its loopback, which also tells whether lo is up
// and whether IPv6 is on.
func (d *Driver) netnsOwner(name string) (owner string, lo loopback, err error) {
	h, done, err := d.use(name)
	if err != nil {
		return "", loopback{}, err
	}
	defer done()
	lo, err = readLoopback(h.rt)
	if err != nil {
		return "", loopback{}, fmt.Errorf("netns %s: read lo: %w", name, err)
	}
	return ownerOf(lo.alias), lo, nil
}

// setIPv6 turns IPv6 on or off in a namespace: the defaults for interfaces made
// later, and every interface already there.
//
// Equivalent to: ip netns exec NS sysctl -w net.ipv6.conf.{all,default,IF...}.disable_ipv6=0|1
func (d *Driver) setIPv6(name string, on bool) error {
	h, done, err := d.use(name)
	if err != nil {
		return err
	}
	defer done()
	links, err := dumpIfaceRows(h.rt)
	if err != nil {
		return fmt.Errorf("netns %s: list links: %w", name, err)
	}
	err = inNetns(h.fd, func() error {
		if err := d.writeIPv6Sysctls(on); err != nil {
			return err
		}
		for _, l := range links {
			if err := d.writeDisableIPv6("conf/"+l.name, on); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netns %s: turn IPv6 %s: %w", name, map[bool]string{true: "on", false: "off"}[on], err)
	}
	return nil
}

// writeIPv6Sysctls sets disable_ipv6 for all interfaces and for new ones, in the
// namespace of the calling thread: writing "all" writes "default" too (the
// kernel does), so one write is enough.
func (d *Driver) writeIPv6Sysctls(on bool) error {
	return d.writeDisableIPv6("conf/all", on)
}

func (d *Driver) writeDisableIPv6(conf string, on bool) error {
	v := "1"
	if on {
		v = "0"
	}
	return d.writeSysctlHere("net/ipv6/"+conf+"/disable_ipv6", v)
}

// listNetns returns the names of the namespaces in the namespace directory, and
// what else is there (see netnsEntries): a regular file is a namespace only with
// a namespace mounted on it (see plainNetnsFile).
func (d *Driver) listNetns() (names []string, odd map[string]string, err error) {
	files, odd, err := d.netnsEntries()
	for _, name := range files {
		if what := d.plainNetnsFile(name); what != "" {
			odd[name] = what
			continue
		}
		names = append(names, name)
	}
	return names, odd, err
}

// netnsEntries lists the namespace directory without opening its entries
// (opening a FIFO blocks): the regular files, which are namespaces when one is
// mounted on them, and every other object (a FIFO, a directory, a symlink), in
// odd by name with what it is: no namespace of that name can be made while it
// is there.
func (d *Driver) netnsEntries() (files []string, odd map[string]string, err error) {
	entries, err := os.ReadDir(d.netnsDir)
	odd = map[string]string{}
	if os.IsNotExist(err) {
		return nil, odd, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", d.netnsDir, err)
	}
	for _, e := range entries {
		path := d.netnsPath(e.Name())
		if e.Name() == reconcile.Host {
			// Plans and state call the namespace netlab runs in "host"; one of that
			// name here (`ip netns add host`) would be read as the machine's own.
			// No lab namespace has that name (topology refuses it).
			odd[e.Name()] = fmt.Sprintf("%s is not read: netlab calls the namespace it runs in %q", path, reconcile.Host)
			continue
		}
		if e.Type().IsRegular() {
			files = append(files, e.Name())
			continue
		}
		what := "an unknown kind of file"
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil {
			what = kindOf(st.Mode)
		}
		odd[e.Name()] = fmt.Sprintf("%s is %s, not a network namespace", path, what)
	}
	return files, odd, nil
}

// plainNetnsFile says what a regular file of the namespace directory is when no
// namespace is mounted on it ("" when one is), without opening it: opening
// whatever else someone mounted there (a device) could do something.
func (d *Driver) plainNetnsFile(name string) string {
	var fs unix.Statfs_t
	path := d.netnsPath(name)
	err := unix.Statfs(path, &fs)
	if errors.Is(err, unix.ENOENT) {
		return "" // removed since the directory was read: opening it says so
	}
	if err != nil || fs.Type != unix.NSFS_MAGIC {
		return fmt.Sprintf("%s is a plain file, not a mounted network namespace", path)
	}
	return ""
}

// openNetns opens a namespace file without following a link and without
// blocking, and checks that it is a namespace: a FIFO or a plain file at its
// path is refused, never waited on.
func openNetns(path string) (netns.NsHandle, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return -1, &notNetnsError{fmt.Sprintf("%s is a symlink, not a network namespace", path)}
	}
	if err != nil {
		return -1, err
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		var st unix.Stat_t
		what := "not mounted"
		if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			what = kindOf(st.Mode)
		}
		return -1, &notNetnsError{fmt.Sprintf("%s is not a network namespace (%s)", path, what)}
	}
	// A namespace of another kind (a mount or PID namespace's file bind-mounted
	// there) is on nsfs too. Kernels before 4.11 cannot tell: entering it fails.
	if kind, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err == nil && kind != unix.CLONE_NEWNET {
		unix.Close(fd)
		return -1, &notNetnsError{fmt.Sprintf("%s is not a network namespace (another kind of namespace)", path)}
	}
	return netns.NsHandle(fd), nil
}

// notNetnsError says that a namespace's name leads to something that is not a
// network namespace: whatever it is, it is not the lab's. Other failures to
// open one (out of descriptors or memory) say nothing of whose it is.
type notNetnsError struct{ msg string }

func (e *notNetnsError) Error() string { return e.msg }

// notANetns reports whether err, from opening a namespace's handle, says the
// name leads to no network namespace: something else (notNetnsError; on
// kernels before 4.11, which cannot tell the kind of a namespace, entering
// another kind fails with EINVAL), or nothing any more (removed since the
// directory was read).
func notANetns(err error) bool {
	var n *notNetnsError
	return errors.As(err, &n) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)
}

// inNetns runs f on a thread that has entered the namespace fd, for the few things
// that netlink cannot do from outside (sysctls). If the thread cannot go back to
// its own namespace, it is left locked so the runtime retires it.
func inNetns(fd netns.NsHandle, f func() error) error {
	home, err := homeNetns()
	if err != nil {
		return fmt.Errorf("open own namespace: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(fd); err != nil {
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		err := f()
		if netns.Set(home) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// homeNetns is netlab's own network namespace, opened once, for a thread that
// entered another to go back to: every thread not locked in a visit is in it,
// since a thread that could not go back is retired. (Opening it for each visit
// cost four system calls per namespace.) New opens it, and so must be called
// from a goroutine that is not locked in another namespace, as every caller is.
// A failure (EMFILE, say) is not kept: the next call tries again. New fails
// without it, so createNetns, which asks for it from inside a new namespace,
// always finds it open.
func homeNetns() (netns.NsHandle, error) {
	opened.mu.Lock()
	defer opened.mu.Unlock()
	if opened.home.IsOpen() {
		return opened.home, nil
	}
	fd, err := netns.Get()
	if err != nil {
		return netns.None(), err
	}
	opened.home = fd
	return fd, nil
}

// opened holds homeNetns's descriptor once it has one.
var opened = struct {
	mu   sync.Mutex
	home netns.NsHandle
}{home: netns.None()}

// RunIn runs f on a thread inside a namespace of the lab (or the host): sockets
// made by f belong to that namespace. `netlab test` runs its checks with it.
func (d *Driver) RunIn(ns string, f func() error) error {
	h, done, err := d.use(ns)
	if err != nil {
		return err
	}
	defer done()
	return inNetns(h.fd, f)
}

// putBackDying gives the interfaces a wait could not finish with back to the
// next wait (of another action, or the verifying observation).
func (d *Driver) putBackDying(rest []reconcile.InterfaceKey) {
	d.mu.Lock()
	d.dying = append(d.dying, rest...)
	d.mu.Unlock()
}

// waitDying waits until the interfaces that deleted namespaces take with them are
// gone, so that what follows sees the kernel as it will be. It reports whether
// there was anything to wait for.
func (d *Driver) waitDying(ctx context.Context) (waited bool, err error) {
	d.dyingMu.Lock() // concurrent creators all wait until the wait is over
	defer d.dyingMu.Unlock()
	d.mu.Lock()
	dying := d.dying
	d.dying = nil
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		if len(d.dying) == 0 { // what holds the dying namespaces is named by the next wait's error
			clear(d.dyingNetns)
		}
		d.mu.Unlock()
	}()
	// One interface asked about at a time, by name: a dump of the host's
	// thousand interfaces every few milliseconds would slow down the very
	// teardown it waits for.
	waited = len(dying) > 0
	deadline := time.Now().Add(10 * time.Second)
	for len(dying) > 0 {
		k := dying[0]
		h, done, err := d.use(k.NS)
		if err != nil && !notANetns(err) {
			d.putBackDying(dying) // out of descriptors, say: nothing known of k
			return waited, err
		}
		if err == nil {
			_, err = getIfaceRow(h.rt, k.Name)
			done()
		}
		if err != nil {
			if h != nil && !isNotFound(err) {
				d.putBackDying(dying)
				return waited, fmt.Errorf("netns %s: find %s: %w", k.NS, k.Name, err)
			}
			dying = dying[1:] // gone (or its namespace is gone too)
			// The limit is on waiting without progress: ten thousand
			// namespaces take longer than 10 s to destroy, one at a time.
			deadline = time.Now().Add(10 * time.Second)
			continue
		}
		if time.Now().After(deadline) {
			return waited, fmt.Errorf("%d interfaces of deleted namespaces still exist, none gone for 10 s (first: %s): %s",
				len(dying), k, d.holders())
		}
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return waited, nil
}

// holders names the processes and threads still inside namespaces that were
// deleted: what keeps them (and their interfaces) alive.
func (d *Driver) holders() string {
	d.mu.Lock()
	dying := maps.Clone(d.dyingNetns)
	d.mu.Unlock()
	var found []string
	tasks, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*")
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat(task+"/ns/net", &st) != nil {
			continue
		}
		if ns, ok := dying[st.Ino]; ok {
			comm, _ := os.ReadFile(task + "/comm")
			found = append(found, fmt.Sprintf("%s holds %s (%s)", filepath.Base(task), ns, strings.TrimSpace(string(comm))))
		}
	}
	if len(found) == 0 {
		return "no process is inside them (the kernel is slow to destroy them, or a socket or mount holds them)"
	}
	return "still inside: " + strings.Join(found, ", ")
}
