package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// Which wanted sysctls the kernel does not have (reconcile.State.MissingSysctls),
// so that a misspelt key or a module not loaded refuses the plan before the
// first change, instead of failing at its step with the lab half built. Each is
// looked up where it will be written, or where the kernel has its equivalent:
//   - in a namespace that exists, there;
//   - for an interface that does not exist yet (net.ipv4.conf.IF.*,
//     net.ipv6.conf.IF.*, net.ipv4.neigh.IF.*, net.ipv6.neigh.IF.*), in the
//     `default` entry of the same directory, which every new interface copies;
//   - for a namespace the plan creates, in a throwaway namespace made for the
//     purpose: a new namespace lacks some sysctls that the first one has (a
//     few net.core ones, those of modules that register only there), so the
//     host would be the wrong place to look. It is made once per plan, and
//     only when a new namespace has sysctls; it costs about a millisecond
//     and goes with its thread.

// missingSysctls fills s.MissingSysctls with the wanted sysctls the kernel does
// not have. Those already read exist; only the others are looked up.
func (d *Driver) missingSysctls(q reconcile.Query, s *reconcile.State) error {
	var inNew []reconcile.SysctlKey
	for _, k := range q.Sysctls {
		if _, ok := s.Sysctls[k]; ok || leaving(q, k.NS) {
			continue
		}
		if _, ok := s.Namespaces[k.NS]; !ok && k.NS != reconcile.Host {
			inNew = append(inNew, k)
			continue
		}
		h, done, err := d.use(k.NS)
		if err != nil {
			return err
		}
		var missing bool
		var near string
		err = inNetns(h.fd, func() (err error) {
			missing, near, err = d.sysctlMissingHere(k)
			return err
		})
		done()
		if err != nil {
			return fmt.Errorf("netns %s: look up sysctl %s: %w", k.NS, k.Name(), err)
		}
		if missing {
			s.MissingSysctls = addMissing(s.MissingSysctls, k, near)
		}
	}
	if len(inNew) == 0 {
		return nil
	}
	return inThrowawayNetns(func() error {
		for _, k := range inNew {
			missing, near, err := d.sysctlMissingHere(k)
			if err != nil {
				return fmt.Errorf("netns %s (not made yet): look up sysctl %s: %w", k.NS, k.Name(), err)
			}
			if missing {
				s.MissingSysctls = addMissing(s.MissingSysctls, k, near)
			}
		}
		return nil
	})
}

func addMissing(m map[reconcile.SysctlKey]string, k reconcile.SysctlKey, near string) map[reconcile.SysctlKey]string {
	if m == nil {
		m = map[reconcile.SysctlKey]string{}
	}
	m[k] = near
	return m
}

// inThrowawayNetns runs f on a thread in a new, empty network namespace that
// nothing names: it goes when the thread does. The thread is never unlocked,
// so the runtime ends it when f returns (the CNI NewNS recipe).
func inThrowawayNetns(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("make a throwaway namespace: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// sysctlInterface returns the index of the interface component of a per-interface
// sysctl path (net/ipv4/conf/eth0/forwarding: 3), or -1.
func sysctlInterface(parts []string) int {
	if len(parts) >= 5 && parts[0] == "net" && (parts[1] == "ipv4" || parts[1] == "ipv6") &&
		(parts[2] == "conf" || parts[2] == "neigh") && parts[3] != "all" && parts[3] != "default" {
		return 3
	}
	return -1
}

// sysctlMissingHere reports whether the calling thread's namespace lacks the
// sysctl at path (an interface that does not exist yet counts as its `default`
// entry), and if so the nearest existing name at the first component that is
// not there, as a whole path ("" when nothing is near). One that root may
// write but not read is refused (see writeOnlySysctl).
func (d *Driver) sysctlMissingHere(k reconcile.SysctlKey) (missing bool, near string, err error) {
	parts := strings.Split(k.Path, "/")
	look := slices.Clone(parts)
	if i := sysctlInterface(parts); i >= 0 {
		ok, err := d.sysctlExistsHere(strings.Join(parts[:i+1], "/"))
		if err != nil {
			return false, "", err
		}
		if !ok {
			look[i] = "default"
		}
	}
	ok, err := d.sysctlExistsHere(strings.Join(look, "/"))
	if errors.Is(err, errWriteOnly) {
		return false, "", writeOnlySysctl(k)
	}
	if ok || err != nil {
		return false, "", err
	}
	for i := range look {
		ok, err := d.sysctlExistsHere(strings.Join(look[:i+1], "/"))
		if err != nil {
			return false, "", err
		}
		if ok {
			continue
		}
		names, err := d.sysctlNamesHere(strings.Join(look[:i], "/"))
		if err != nil {
			return false, "", err
		}
		if best := nearest(look[i], names); best != "" {
			guess := slices.Clone(parts)
			guess[i] = best
			return true, strings.Join(guess, "/"), nil
		}
		break
	}
	return true, "", nil
}

// errWriteOnly: a sysctl that exists and cannot be opened for reading
// (net.ipv4.route.flush).
var errWriteOnly = errors.New("write-only sysctl")

// sysctlExistsHere reports whether a sysctl file or directory exists in the
// calling thread's namespace. One that exists but cannot be opened for reading
// is errWriteOnly.
func (d *Driver) sysctlExistsHere(path string) (bool, error) {
	f, err := d.openSysctl(path, unix.O_RDONLY)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
		return false, nil
	case errors.Is(err, fs.ErrPermission):
		return true, errWriteOnly
	case err != nil:
		return false, err
	}
	return true, f.Close()
}

// sysctlNamesHere lists a sysctl directory of the calling thread's namespace.
func (d *Driver) sysctlNamesHere(dir string) ([]string, error) {
	f, err := d.openSysctl(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// nearest returns the name closest to want by edit distance, when it is close
// enough to be a typo (at most a third of want's length, at least 1 edit):
// "ip_forwarding" gives "ip_forward". Ties go to the first in sorted order.
func nearest(want string, names []string) string {
	slices.Sort(names)
	best, bestDist := "", max(1, len(want)/3)+1
	for _, n := range names {
		if dist := editDistance(want, n); dist < bestDist {
			best, bestDist = n, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
