// Package kernel is the reconcile.Driver that talks to Linux: netlink for links,
// addresses and routes, bind-mounted namespace files like iproute2's, and
// /proc/sys for sysctls. It is the only package of netlab that imports netlink,
// netns or x/sys/unix.
//
// Every namespace is reached through its own netlink sockets (see nsHandle),
// opened inside it once, never by moving the calling goroutine's thread into it;
// the few things that need a thread inside a namespace (creating one, opening its
// sockets, sysctls) run on a throwaway goroutine locked to its OS thread.
package kernel

import (
	"cmp"
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// Options says where the driver keeps its files and which namespace is the host.
// The zero value is the real machine: /run/netns, /run/netlab and the namespace
// netlab runs in. Tests point all three into a sandbox.
type Options struct {
	NetnsDir string         // where named namespaces are bind-mounted, as `ip netns` does
	StateDir string         // where the few facts the kernel cannot hold are kept
	EtcDir   string         // per-namespace /etc files, as `ip netns exec` finds them
	Self     string         // the netlab binary, run for `__nsexec` and `serve`; "": this process's
	Host     netns.NsHandle // the namespace that counts as "host"; 0: the caller's
	Logger   *slog.Logger
	MaxFiles int // most descriptors kept open for namespaces' handles; 0: as the open-file limit allows (see fileBudget)
}

const (
	DefaultNetnsDir = "/run/netns"
	DefaultStateDir = "/run/netlab"
	DefaultEtcDir   = "/etc/netns"
)

// Driver implements reconcile.Driver. Its Apply is safe for concurrent use (a
// phase's actions run at once); Observe and the lab-level methods are called by
// one goroutine at a time.
type Driver struct {
	netnsDir string
	etcDir   string
	self     string
	state    *stateDir
	host     netns.NsHandle
	ownsHost bool // host was opened by New and is closed by Close
	log      *slog.Logger

	// Actions run concurrently (reconcile.Apply runs a phase's actions at once):
	// mu guards the maps below, sysctlMu the saved sysctls file, dyingMu the
	// wait for interfaces of deleted namespaces.
	mu       sync.Mutex
	sysctlMu sync.Mutex
	dyingMu  sync.Mutex

	netnsDirMu    sync.Mutex
	netnsDirReady bool                           // the namespace directory is a shared mount point
	handles       map[string]*nsHandle           // by namespace name; reconcile.Host for the host
	identity      map[string]nsIdentity          // the namespace each name led to when this run opened it (see open)
	idle          list.List                      // the handles no one uses, most recently used first (see use)
	files         int                            // the descriptors the handles hold
	maxFiles      int                            // the most they may hold while some are idle (see fileBudget)
	evicted       bool                           // a handle was closed to stay within maxFiles (logged once)
	held          []*nsHandle                    // handles lent by handle, held until the next Observe (see handle)
	index         map[reconcile.InterfaceKey]int // the lab's interfaces' indexes, as last seen (see withInterface)
	dying         []reconcile.InterfaceKey       // interfaces going with deleted namespaces (see waitDying)
	dyingNetns    map[uint64]string              // their namespaces by inode, to name what still holds them
	byNetns       map[uint64][]int               // the machine's processes by network namespace inode, while still true (see netnsProcesses)
	procCgroups   map[reconcile.ProcKey]string   // the cgroup of each process entry, as observed or started
	cgroupMount   string                         // the writable cgroup v2 mount; "": processes are tracked by pidfds (see cgroup.go)
	cgOnce        sync.Once
	procOnce      sync.Once
	procErr       error  // see procIsOurs
	cgBase        string // see cgroupBase
	cgErr         error
	lastRead      map[string]*nsObservation // each namespace as the last observation read it (see reconcile.Query.Reread)
	procfs        chan *procInstance        // idle private procfs instances, for sysctls (see openSysctl)
	procfsRefused atomic.Bool               // the kernel would not make one: /proc/sys serves
	startSlots    chan struct{}             // process starts and readiness checks under way (see launchProcess)
	qdiscKinds    map[string]bool           // the qdisc kinds the kernel has, as asked (see missingQdiscs)
}

// nsHandle is an open namespace: its file descriptor and two plain netlink
// sockets inside it (rtnetlink and nfnetlink, see conn) for observation and the
// requests of rtnl.go, opened on one visit of a thread to the namespace. The
// netlink library's handle, which the other actions use, is opened with them
// where a namespace is created or an action needs it, and elsewhere not at
// all; the nftables connection only where the lab has a table. A thousand
// namespaces observed by a no-op up pay for neither.
//
// Handles are kept open after use while their descriptors fit in the
// driver's maxFiles; past that the one unused for longest is closed, and
// opened again when needed (see use). A handle in use is never closed.
type nsHandle struct {
	fd netns.NsHandle
	rt *conn // rtnetlink
	nf *conn // nfnetlink
	// The namespace's identity: the inode is how /proc/PID/ns/net names it
	// (see Driver.netnsInode), and the pair tells whether its file still leads
	// to it (see Driver.replaced).
	nsIdentity

	mu  sync.Mutex      // guards nl and nft
	nl  *netlink.Handle // nil until needed (see Driver.libOf)
	nft *nftables.Conn  // nil until needed (see Driver.nftConn)
	// nftMu is held by whoever uses nft, from Driver.nftConn to its done: the
	// library's connection queues one batch for all its users and reads
	// replies without a lock of its own.
	nftMu sync.Mutex

	// Guarded by Driver.mu.
	name    string
	files   int           // the descriptors it holds
	users   int           // uses not yet done (see use); closed only when none
	idle    *list.Element // its place in Driver.idle while no one uses it
	dropped bool          // no longer in Driver.handles: closed when its last user is done
}

// openSockets opens the handle's plain sockets, and the library's handle when
// lib, in the calling thread's namespace.
func (h *nsHandle) openSockets(lib bool) error {
	var err error
	if h.rt, err = openConn(unix.NETLINK_ROUTE); err != nil {
		return err
	}
	if h.nf, err = openConn(unix.NETLINK_NETFILTER); err != nil {
		h.rt.close()
		return err
	}
	if lib {
		if h.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			h.rt.close()
			h.nf.close()
			return fmt.Errorf("open netlink handle: %w", err)
		}
	}
	return nil
}

// countFiles is how many descriptors a handle holds.
func (h *nsHandle) countFiles() int {
	n := 3 // the namespace and the two plain sockets
	if h.nl != nil {
		n++
	}
	if h.nft != nil {
		n++
	}
	return n
}

// libOf returns the netlink library's handle of a namespace whose handle is
// in use, opening it on first use.
func (d *Driver) libOf(h *nsHandle) (*netlink.Handle, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nl == nil {
		nh, err := netlink.NewHandleAt(h.fd, unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("open netlink handle: %w", err)
		}
		h.nl = nh
		d.grew(h)
	}
	return h.nl, nil
}

// lib returns the netlink library's handle of a namespace (see libOf), open
// until done is called.
func (d *Driver) lib(ns string) (nh *netlink.Handle, done func(), err error) {
	h, done, err := d.useFor(ns, true)
	if err != nil {
		return nil, nil, err
	}
	if nh, err = d.libOf(h); err != nil {
		done()
		return nil, nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	return nh, done, nil
}

func (h *nsHandle) closeSockets() {
	h.rt.close()
	h.nf.close()
	if h.nl != nil {
		h.nl.Close()
	}
	if h.nft != nil {
		h.nft.CloseLasting()
	}
}

// New returns a driver. Close it when done.
func New(opts Options) (*Driver, error) {
	d := &Driver{
		netnsDir:    cmp.Or(opts.NetnsDir, DefaultNetnsDir),
		etcDir:      cmp.Or(opts.EtcDir, DefaultEtcDir),
		self:        opts.Self,
		state:       newStateDir(cmp.Or(opts.StateDir, DefaultStateDir)),
		host:        opts.Host,
		log:         opts.Logger,
		handles:     map[string]*nsHandle{},
		identity:    map[string]nsIdentity{},
		maxFiles:    opts.MaxFiles,
		index:       map[reconcile.InterfaceKey]int{},
		dyingNetns:  map[uint64]string{},
		procCgroups: map[reconcile.ProcKey]string{},
		cgroupMount: findCgroup2(),
		procfs:      make(chan *procInstance, reconcile.DefaultWorkers()),
		startSlots:  make(chan struct{}, reconcile.DefaultWorkers()),
	}
	if d.self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		d.self = self
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.maxFiles <= 0 {
		d.maxFiles = fileBudget()
	}
	if _, err := homeNetns(); err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	if d.host == 0 {
		var err error
		if d.host, err = netns.Get(); err != nil {
			return nil, fmt.Errorf("open own network namespace: %w", err)
		}
		d.ownsHost = true
	}
	return d, nil
}

// Close releases every namespace handle and netlink socket. The handles are
// closed in parallel: a thousand namespaces' three thousand descriptors took
// 11-14 ms one after the other, the end of every command.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range d.held {
		h.users--
	}
	d.held = nil
	var unused []*nsHandle
	for name, h := range d.handles {
		if h.users <= 0 {
			unused = append(unused, h)
			delete(d.handles, name)
			d.files -= h.files
		} else {
			d.dropLocked(name) // closed by its last user
		}
	}
	d.idle.Init()
	reconcile.Parallel(len(unused), reconcile.DefaultWorkers(), func(i int) { unused[i].close(unused[i].name) })
	if d.ownsHost {
		d.host.Close()
	}
	d.closeProcs()
	return nil
}

// fileBudget is how many descriptors the namespaces' handles may hold: the
// soft limit on open files (Go raises it to the hard limit at start), less a
// quarter of it, at most 1024, for everything else (files, logs, procfs
// instances, the nftables connections being opened), and at least ten per
// worker: what the workers hold while they open a namespace is counted only
// once its handle is kept (see reconcile.DefaultWorkers). Most machines allow some
// hundred thousand, and no handle is ever closed early; where the limit is low
// (20000 in some containers, which may not raise it: no CAP_SYS_RESOURCE), a
// lab of 10,000 namespaces works within it by reopening handles.
func fileBudget() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 30
	}
	limit := int(lim.Cur)
	return max(32, limit-max(min(1024, limit/4), 10*reconcile.DefaultWorkers()))
}

// descriptorTable is what reserveFiles made the process's table of open files
// (which all its threads share) hold.
var descriptorTable struct {
	mu       sync.Mutex
	reserved int
}

// reserveFiles makes the process's descriptor table hold n descriptors, when
// that is more than it was made for and worth it (256 or more). The kernel
// grows the table by doubling as descriptors are opened, and a table that
// threads share grows only after an RCU grace period, while every thread that
// opens anything waits: reading 1000 namespaces (3000 descriptors) grew it six
// times, and that waiting was 40% of the reading (80 ms instead of 125-135).
// Growing it once to the size needed waits once (9-22 ms here). Asked for a
// little more than is open as handles are opened (creating namespaces), it
// grows fourfold, so three times up to 4096 rather than six.
func reserveFiles(n int) {
	t := &descriptorTable
	t.mu.Lock()
	defer t.mu.Unlock()
	if n <= t.reserved || n < 256 {
		return
	}
	n = max(n, 4*t.reserved)
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && uint64(n) > lim.Cur {
		n = int(lim.Cur)
	}
	// The lowest free descriptor at n-1 or above makes the table that big; it
	// is closed at once (the table never shrinks).
	if fd, err := unix.FcntlInt(uintptr(unix.Stderr), unix.F_DUPFD_CLOEXEC, n-1); err == nil {
		unix.Close(fd)
		t.reserved = n
	}
}

// ReserveFiles makes the descriptor table hold what reading every namespace
// of DefaultNetnsDir takes (see reserveFiles), for a command to call in the
// background while it reads its lab file: the grace period the table's growth
// waits for then passes during the reading.
func ReserveFiles() {
	if entries, err := os.ReadDir(DefaultNetnsDir); err == nil {
		reserveFiles(filesToRead(len(entries)))
	}
}

// filesToRead is how many descriptors reading n namespaces and the host takes:
// each handle's namespace file and two sockets, and some to spare.
func filesToRead(n int) int { return 3*(n+1) + 64 }

// use returns the open handle of a namespace, opening it if need be, and keeps
// it open until done is called (once). Opening a handle whose descriptors do
// not fit in maxFiles closes those unused for longest.
func (d *Driver) use(ns string) (h *nsHandle, done func(), err error) {
	return d.useFor(ns, false)
}

// useFor is use; a handle it opens has the library's handle when lib, opened
// on the same visit to the namespace.
func (d *Driver) useFor(ns string, lib bool) (h *nsHandle, done func(), err error) {
	d.mu.Lock()
	h, ok := d.handles[ns]
	if ok {
		d.takeLocked(h)
	}
	d.mu.Unlock()
	if !ok {
		// Opened without the lock: namespaces are opened in parallel.
		if h, err = d.open(ns, lib); err != nil {
			return nil, nil, err
		}
		h = d.keepHandle(ns, h, true)
	}
	var once sync.Once
	return h, func() { once.Do(func() { d.release(h) }) }, nil
}

// handle returns the open handle of a namespace, opening it if need be, kept
// open until the next observation begins or the namespace is deleted: for a
// use that ends at once, where no done can be called. Use use where one can.
func (d *Driver) handle(ns string) (*nsHandle, error) {
	h, _, err := d.use(ns)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.held = append(d.held, h)
	d.mu.Unlock()
	return h, nil
}

// releaseHeld ends the uses that handle lent: an observation starts, and no
// use of a handle from before it is still under way (Observe and Apply are
// never called at the same time).
func (d *Driver) releaseHeld() {
	d.mu.Lock()
	held := d.held
	d.held = nil
	d.mu.Unlock()
	for _, h := range held {
		d.release(h)
	}
}

// nsIdentity is a namespace's nsfs device and inode: what tells two namespaces
// apart, whatever names lead to them.
type nsIdentity struct{ dev, ino uint64 }

// open opens a namespace's handle: its file and sockets (see openSockets).
//
// A name this run opened before must still lead to the same namespace. A handle
// closed to save descriptors (see evictLocked) is opened again by name, and the
// name may lead elsewhere by then (`ip netns del X; ip netns add X` by someone
// else): acting on that namespace on the strength of what was read of the first
// (down kills the processes inside and unmounts it) would act on someone
// else's. Observation forgets a replaced name first (see replaced) and reads
// what it leads to now.
func (d *Driver) open(ns string, lib bool) (*nsHandle, error) {
	fd := d.host
	if ns != reconcile.Host {
		var err error
		fd, err = openNetns(d.netnsPath(ns))
		if err != nil {
			return nil, fmt.Errorf("netns %s: open: %w", ns, err)
		}
	}
	h, err := newHandle(fd)
	if err == nil {
		err = d.sameIdentity(ns, h.nsIdentity)
	}
	if err != nil {
		if ns != reconcile.Host {
			fd.Close()
		}
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	if err := inNetns(fd, func() error { return h.openSockets(lib) }); err != nil {
		if ns != reconcile.Host {
			fd.Close()
		}
		return nil, fmt.Errorf("netns %s: open netlink socket: %w", ns, err)
	}
	return h, nil
}

// newHandle is the handle of the namespace fd, with its identity; its sockets
// are opened by the caller, inside the namespace.
func newHandle(fd netns.NsHandle) (*nsHandle, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	return &nsHandle{fd: fd, nsIdentity: nsIdentity{st.Dev, st.Ino}}, nil
}

// sameIdentity records the namespace a name leads to the first time this run
// opens it, and refuses one it leads to later that is another (see open).
func (d *Driver) sameIdentity(ns string, id nsIdentity) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if known, ok := d.identity[ns]; ok && known != id {
		return fmt.Errorf("%s leads to another namespace than the one this run read; nothing done there (run again)", d.netnsPath(ns))
	}
	d.identity[ns] = id
	return nil
}

// replaced reports whether the file of a namespace this run opened now leads
// to another namespace: someone unmounted it and made one of the same name
// (`ip netns del`, `ip netns add`) since. Its handle, open or closed to save
// descriptors, must not serve the name any more: `down` would unmount the
// other namespace on the strength of the old one's marker. One stat of a file
// that is a mounted namespace (see plainNetnsFile), never an open.
func (d *Driver) replaced(ns string) bool {
	d.mu.Lock()
	known, ok := d.identity[ns]
	d.mu.Unlock()
	if !ok {
		return false
	}
	var st unix.Stat_t
	return unix.Stat(d.netnsPath(ns), &st) != nil || (nsIdentity{st.Dev, st.Ino}) != known
}

// keepHandle records an opened handle, in use when inUse, unless another
// goroutine opened one for the same namespace meanwhile: then that one is
// returned (in use when inUse) and h is closed.
func (d *Driver) keepHandle(ns string, h *nsHandle, inUse bool) *nsHandle {
	d.mu.Lock()
	if other, ok := d.handles[ns]; ok {
		h.close(ns)
		if inUse {
			d.takeLocked(other)
		}
		d.mu.Unlock()
		return other
	}
	h.name, h.files = ns, h.countFiles()
	d.handles[ns] = h
	d.files += h.files
	open := d.files
	if inUse {
		h.users = 1
	} else {
		d.idleLocked(h)
	}
	d.evictLocked()
	d.mu.Unlock()
	reserveFiles(open + 64) // not under d.mu: growing the table can wait for a grace period
	return h
}

// takeLocked starts a use of a handle.
func (d *Driver) takeLocked(h *nsHandle) {
	if h.idle != nil {
		d.idle.Remove(h.idle)
		h.idle = nil
	}
	h.users++
}

// release ends a use of a handle: once no one uses it, it is idle (or closed,
// when its namespace was forgotten meanwhile).
func (d *Driver) release(h *nsHandle) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h.users--; h.users > 0 {
		return
	}
	if h.dropped {
		h.close(h.name)
		return
	}
	d.idleLocked(h)
	d.evictLocked()
}

// idleLocked puts an unused handle first among the idle ones. The host's
// handle is never closed early.
func (d *Driver) idleLocked(h *nsHandle) {
	if h.name != reconcile.Host {
		h.idle = d.idle.PushFront(h)
	}
}

// grew counts a descriptor a handle in use opened.
func (d *Driver) grew(h *nsHandle) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h.files++
	if !h.dropped {
		d.files++
	}
}

// evictLocked closes the idle handles unused for longest while the handles
// hold more than maxFiles descriptors.
func (d *Driver) evictLocked() {
	for d.files > d.maxFiles && d.idle.Len() > 0 {
		h := d.idle.Remove(d.idle.Back()).(*nsHandle)
		h.idle = nil
		if !d.evicted {
			d.evicted = true
			d.log.Debug("more namespaces than open files allow: the least recently used are closed and opened again when needed",
				"open files for namespaces", d.maxFiles, "open namespaces", len(d.handles))
		}
		d.dropLocked(h.name)
	}
}

// forget closes the handle of a namespace that is being deleted, or whose name
// leads elsewhere now (once no one uses it), and what this run knew of the
// namespace its name led to (see open).
func (d *Driver) forget(ns string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropLocked(ns)
	delete(d.identity, ns)
}

// dropLocked removes a namespace's handle from the open ones and closes it, at
// once or when its last user is done. Uses lent by handle end here.
func (d *Driver) dropLocked(ns string) {
	h, ok := d.handles[ns]
	if !ok {
		return
	}
	delete(d.handles, ns)
	d.files -= h.files
	h.dropped = true
	if h.idle != nil {
		d.idle.Remove(h.idle)
		h.idle = nil
	}
	d.held = slices.DeleteFunc(d.held, func(o *nsHandle) bool {
		if o == h {
			h.users--
			return true
		}
		return false
	})
	if h.users <= 0 {
		h.close(ns)
	}
}

// close closes a handle's sockets, and its namespace file unless it is the host's.
func (h *nsHandle) close(ns string) {
	h.closeSockets()
	if ns != reconcile.Host {
		h.fd.Close()
	}
}

// netnsPath is the file of a named namespace. A name that is not one plain
// name (empty, ".", "..", a "/") makes a path nothing can open or create.
func (d *Driver) netnsPath(name string) string {
	if !plainName(name) {
		return d.netnsDir + "/\x00invalid namespace name " + strconv.Quote(name)
	}
	return filepath.Join(d.netnsDir, name)
}

// CheckPrivileges fails with a clear message unless the process may manage network
// namespaces: CAP_NET_ADMIN for netlink, CAP_SYS_ADMIN for namespaces and mounts.
func CheckPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read own capabilities: %w", err)
	}
	var missing []string
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}} {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %v; run it as root (sudo netlab ...)", ErrNotPrivileged, missing)
	}
	return nil
}

// ErrNotPrivileged is returned by CheckPrivileges.
var ErrNotPrivileged = errors.New("netlab needs root privileges to change network namespaces")

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// isDir reports whether path is a directory (not following a last link).
func isDir(path string) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}
