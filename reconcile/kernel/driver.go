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
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	ownsHost bool           // host was opened by New and is closed by Close
	own      netns.NsHandle // the namespace netlab's threads are in, for a thread to go back to
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
	index         map[reconcile.InterfaceKey]int // the lab's interfaces' indexes, as last seen (see withInterface)
	dying         []reconcile.InterfaceKey       // interfaces going with deleted namespaces (see waitDying)
	dyingNetns    map[uint64]string              // their namespaces by inode, to name what still holds them
	byNetns       map[uint64][]int               // the machine's processes by network namespace inode, while still true (see netnsProcesses)
	procCgroups   map[reconcile.ProcKey]string   // the cgroup of each process entry, as observed or started
	cgroupMount   string                         // the writable cgroup v2 mount; "": processes are tracked by pidfds (see cgroup.go)
	cgOnce        sync.Once
	cgBase        string // see cgroupBase
	cgErr         error
	lastRead      map[string]*nsObservation // each namespace as the last observation read it (see reconcile.Query.Reread)
	procfs        chan *procInstance        // idle private procfs instances, for sysctls (see openSysctl)
	procfsRefused atomic.Bool               // the kernel would not make one: /proc/sys serves
	qdiscKinds    map[string]bool           // the qdisc kinds the kernel has, as asked (see missingQdiscs)
}

// nsHandle is an open namespace: its file descriptor and two plain netlink
// sockets inside it (rtnetlink and nfnetlink, see conn) for observation and the
// requests of rtnl.go, opened on one visit of a thread to the namespace. The
// netlink library's handle, which the other actions use, is opened with them
// where a namespace is created, and elsewhere only when an action needs it;
// the nftables connection only where the lab has a table. A thousand
// namespaces observed by a no-op up pay for neither.
type nsHandle struct {
	fd netns.NsHandle
	rt *conn // rtnetlink
	nf *conn // nfnetlink

	mu  sync.Mutex      // guards nl
	nl  *netlink.Handle // nil until needed (see lib)
	nft *nftables.Conn  // nil until needed (see Driver.nftConn)
}

// openSockets opens the handle's plain sockets in the calling thread's namespace.
func (h *nsHandle) openSockets() error {
	var err error
	if h.rt, err = openConn(unix.NETLINK_ROUTE); err != nil {
		return err
	}
	if h.nf, err = openConn(unix.NETLINK_NETFILTER); err != nil {
		h.rt.close()
		return err
	}
	return nil
}

// lib returns the netlink library's handle of the namespace, opening it on
// first use.
func (h *nsHandle) lib() (*netlink.Handle, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nl == nil {
		nh, err := netlink.NewHandleAt(h.fd, unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("open netlink handle: %w", err)
		}
		h.nl = nh
	}
	return h.nl, nil
}

// lib returns the netlink library's handle of a namespace (see nsHandle.lib).
func (d *Driver) lib(ns string) (*netlink.Handle, error) {
	h, err := d.handle(ns)
	if err != nil {
		return nil, err
	}
	nh, err := h.lib()
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	return nh, nil
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
		index:       map[reconcile.InterfaceKey]int{},
		dyingNetns:  map[uint64]string{},
		procCgroups: map[reconcile.ProcKey]string{},
		cgroupMount: findCgroup2(),
		procfs:      make(chan *procInstance, workers()),
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
	own, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	d.own = own
	if d.host == 0 {
		if d.host, err = netns.Get(); err != nil {
			own.Close()
			return nil, fmt.Errorf("open own network namespace: %w", err)
		}
		d.ownsHost = true
	}
	return d, nil
}

// Close releases every namespace handle and netlink socket.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name := range d.handles {
		d.closeHandleLocked(name)
	}
	if d.ownsHost {
		d.host.Close()
	}
	d.own.Close()
	d.closeProcs()
	return nil
}

// handle returns the open handle of a namespace, opening it on first use.
func (d *Driver) handle(ns string) (*nsHandle, error) {
	d.mu.Lock()
	h, ok := d.handles[ns]
	d.mu.Unlock()
	if ok {
		return h, nil
	}
	// Opened without the lock: namespaces are opened in parallel.
	fd := d.host
	if ns != reconcile.Host {
		var err error
		fd, err = openNetns(d.netnsPath(ns))
		if err != nil {
			return nil, fmt.Errorf("netns %s: open: %w", ns, err)
		}
	}
	h = &nsHandle{fd: fd}
	if err := inNetns(fd, h.openSockets); err != nil {
		if ns != reconcile.Host {
			fd.Close()
		}
		return nil, fmt.Errorf("netns %s: open netlink socket: %w", ns, err)
	}
	return d.keepHandle(ns, h), nil
}

// keepHandle records an opened handle, unless another goroutine opened one for
// the same namespace meanwhile: then that one is returned and h is closed.
func (d *Driver) keepHandle(ns string, h *nsHandle) *nsHandle {
	d.mu.Lock()
	defer d.mu.Unlock()
	if other, ok := d.handles[ns]; ok {
		h.closeSockets()
		if ns != reconcile.Host {
			h.fd.Close()
		}
		return other
	}
	d.handles[ns] = h
	return h
}

// forget closes the handle of a namespace that is being deleted.
func (d *Driver) forget(ns string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closeHandleLocked(ns)
}

func (d *Driver) closeHandleLocked(ns string) {
	h, ok := d.handles[ns]
	if !ok {
		return
	}
	h.closeSockets()
	if ns != reconcile.Host {
		h.fd.Close()
	}
	delete(d.handles, ns)
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
