package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
	"netlab/topology"
)

// stateDir holds the few facts the kernel cannot: per lab, in <root>/<lab>/,
//
//	lab.json      the file the lab was brought up from (for `status`)
//	sysctls.json  the values sysctls had before the lab changed them (for `down`)
//	iptables.json what ip filter / ip nat held before the script of `plan -o
//	              commands` wrote the lab's iptables layout, until its rules are
//	              marked (iptables_script.go)
//	creating/     one file per interface being created, removed once it is marked,
//	              holding the ifindex netlab asked for: an interrupted run's unmarked
//	              interfaces are recognised by name and index
//
// and <root>/<lab>.lock, the lock that serialises runs on one lab. Everything the
// lab owns is recognised by markers in the kernel, not listed here.
//
// Every path in it goes through its tree (see safefs.go): below the root, its
// first name a valid lab's (or the lab's lock), no link followed.
type stateDir struct {
	tree

	// ensured are the labs whose directories this run made or found already:
	// a lab of a thousand veths records two thousand intents, and walking and
	// chmodding the tree again for each took 0.08 s of CPU of an up of 1000
	// (pprof). The lab's lock keeps any other netlab from removing them
	// meanwhile; forget drops the lab from it.
	ensuredMu sync.Mutex
	ensured   map[string]bool
}

func newStateDir(root string) *stateDir {
	return &stateDir{tree: tree{root: filepath.Clean(root), where: "its state directory", first: stateEntry}, ensured: map[string]bool{}}
}

// stateEntry checks the first name of a path in the state directory: a lab's
// directory, a lab's lock file, or the machine's record of host sysctls.
func stateEntry(name string) error {
	if name == hostSysctlsFile {
		return nil
	}
	return topology.CheckLabName(strings.TrimSuffix(name, ".lock"))
}

// labDir is the lab's directory. A name that could not be a lab's makes a path
// that every operation of the tree refuses (see tree.names), whatever the caller
// checked before.
func (s *stateDir) labDir(lab string) string {
	if topology.CheckLabName(lab) != nil {
		return s.root + "/\x00invalid lab name " + strconv.Quote(lab)
	}
	return s.root + "/" + lab
}

// ensure creates the lab's directory, private to root.
func (s *stateDir) ensure(lab string) error {
	if err := topology.CheckLabName(lab); err != nil {
		return err
	}
	s.ensuredMu.Lock()
	defer s.ensuredMu.Unlock()
	if s.ensured[lab] {
		return nil
	}
	if err := s.ensureRoot(); err != nil {
		return err
	}
	if err := s.mkdirAll(filepath.Join(s.labDir(lab), "creating"), 0o700); err != nil {
		return err
	}
	s.ensured[lab] = true
	return nil
}

// ensureRoot creates netlab's state directory, or makes an existing one private
// again: it holds what the lab changed and its logs. A link there is refused,
// never followed (nor its target's mode changed).
func (s *stateDir) ensureRoot() error {
	fd, err := s.openRoot(true, 0o700)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return &os.PathError{Op: "chmod", Path: s.root, Err: err}
	}
	return nil
}

// check proves, before anything is changed, that the lab's directory holds only
// what netlab puts there: regular files, and the directories of labSubdirs. A link or another kind of object anywhere in it is an error naming it.
func (s *stateDir) check(lab string) error {
	if err := topology.CheckLabName(lab); err != nil {
		return err
	}
	entries, err := s.readDir(s.labDir(lab))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.checkDir(s.labDir(lab), entries, labSubdirs)
}

// labSubdirs are the directories netlab makes in a lab's directory, with the
// depth of directories each holds: creating/ and exec/ hold files,
// processes/ a directory of files per namespace.
var labSubdirs = map[string]int{"creating": 0, "exec": 0, "processes": 1, "uts": 0}

// checkDir checks the entries of dir: regular files, and the named
// subdirectories with their depth of further directories (see check).
func (s *stateDir) checkDir(dir string, entries []os.DirEntry, subdirs map[string]int) error {
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		depth, ok := subdirs[e.Name()]
		if !ok || !e.IsDir() {
			if !e.Type().IsRegular() {
				return s.notOwnEntry(path, e)
			}
			continue
		}
		inside, err := s.readDir(path)
		if err != nil {
			return err
		}
		var below map[string]int
		if depth > 0 {
			below = map[string]int{}
			for _, i := range inside {
				below[i.Name()] = depth - 1
			}
		}
		if err := s.checkDir(path, inside, below); err != nil {
			return err
		}
	}
	return nil
}

func (s *stateDir) notOwnEntry(path string, e os.DirEntry) error {
	info, err := e.Info()
	if err != nil {
		return err
	}
	st, _ := info.Sys().(*syscall.Stat_t)
	is := "an unknown kind of file"
	if st != nil {
		is = kindOf(st.Mode)
	}
	return &notOwnError{path: path, is: is, want: "a regular file", where: s.where}
}

// LabInfo is what lab.json records.
type LabInfo struct {
	Name   string    `json:"name"`
	File   string    `json:"file"`
	Prefix string    `json:"netns_prefix,omitempty"`
	Since  time.Time `json:"since"`
	// Netns is the network namespace the lab was brought up from: its "host".
	Netns *NetnsID `json:"netns,omitempty"`
}

func (s *stateDir) writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return s.replaceFile(path, append(b, '\n'), 0o600) // atomic: a crash leaves the old file or the new one
}

func (s *stateDir) readJSON(path string, v any) error {
	b, err := s.readFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// savedSysctl is one entry of sysctls.json.
type savedSysctl struct {
	NS    string `json:"netns"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

func (s *stateDir) savedSysctlsPath(lab string) string {
	return filepath.Join(s.labDir(lab), "sysctls.json")
}

func (s *stateDir) savedSysctls(lab string) (map[reconcile.SysctlKey]string, error) {
	var list []savedSysctl
	err := s.readJSON(s.savedSysctlsPath(lab), &list)
	if os.IsNotExist(err) {
		return map[reconcile.SysctlKey]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read saved sysctls of lab %s: %w", lab, err)
	}
	out := make(map[reconcile.SysctlKey]string, len(list))
	for _, e := range list {
		out[reconcile.SysctlKey{NS: e.NS, Path: e.Path}] = e.Value
	}
	return out, nil
}

func (s *stateDir) writeSavedSysctls(lab string, saved map[reconcile.SysctlKey]string) error {
	if err := s.ensure(lab); err != nil {
		return err
	}
	list := make([]savedSysctl, 0, len(saved))
	for k, v := range saved {
		list = append(list, savedSysctl{NS: k.NS, Path: k.Path, Value: v})
	}
	slices.SortFunc(list, func(a, b savedSysctl) int {
		return strings.Compare(a.NS+"/"+a.Path, b.NS+"/"+b.Path)
	})
	return s.writeJSON(filepath.Join(s.labDir(lab), "sysctls.json"), list)
}

// intentPath is the marker file of an interface being created.
func (s *stateDir) intentPath(lab string, k reconcile.InterfaceKey) string {
	return filepath.Join(s.labDir(lab), "creating", k.NS+":"+k.Name)
}

// recordIntent records, before the create, the ifindex netlab asks the kernel to
// give an interface it creates: an unmarked interface is the lab's only when its
// namespace, name and index are those recorded (see Driver.newIndex), so an
// interface made by someone else, even with the same name, is never taken.
func (s *stateDir) recordIntent(lab string, k reconcile.InterfaceKey, index int) error {
	if err := s.ensure(lab); err != nil {
		return err
	}
	if err := s.writeFile(s.intentPath(lab, k), []byte(strconv.Itoa(index)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record creation of %s: %w", k, err)
	}
	return nil
}

func (s *stateDir) clearIntent(lab string, keys ...reconcile.InterfaceKey) {
	for _, k := range keys {
		s.remove(s.intentPath(lab, k))
	}
}

// netnsIntent is the marker file of a namespace being created ("ns=" cannot
// start an interface's "NS:NAME", namespace names having no "=").
func (s *stateDir) netnsIntent(lab, name string) string {
	return filepath.Join(s.labDir(lab), "creating", "ns="+name)
}

func (s *stateDir) recordNetnsIntent(lab, name string) error {
	if err := s.ensure(lab); err != nil {
		return err
	}
	return s.writeFile(s.netnsIntent(lab, name), nil, 0o600)
}

// intents lists the interfaces whose creation was recorded but not completed,
// with the ifindex each was to get; 0 when none is recorded (a file of an older
// netlab, or a damaged one): such an interface is never the lab's by its intent.
func (s *stateDir) intents(lab string) (map[reconcile.InterfaceKey]int, error) {
	entries, err := s.readDir(filepath.Join(s.labDir(lab), "creating"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[reconcile.InterfaceKey]int{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "ns=") {
			continue // a namespace's (see netnsIntent)
		}
		if ns, name, ok := strings.Cut(e.Name(), ":"); ok && e.Type().IsRegular() {
			b, _ := s.readFile(filepath.Join(s.labDir(lab), "creating", e.Name()))
			index, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			out[reconcile.InterfaceKey{NS: ns, Name: name}] = max(index, 0)
		}
	}
	return out, nil
}

// lockPath is the lab's lock file, beside its directory (the name is checked
// by the caller, as for labDir).
func (s *stateDir) lockPath(lab string) string { return s.root + "/" + lab + ".lock" }

// Lock is a held lock on one lab.
type Lock struct {
	f     *os.File
	path  string
	lab   string
	state *stateDir
}

// ErrLocked is returned by TryLock when another netlab holds the lab's lock.
var ErrLocked = errors.New("another netlab is working on this lab")

// lock takes the lab's lock, waiting for it unless wait is false. The lock file may
// be removed by a `down` that held it before us; then we lock the new file instead.
func (s *stateDir) lock(lab string, wait bool) (*Lock, error) {
	if err := topology.CheckLabName(lab); err != nil {
		return nil, err
	}
	var notOwn *notOwnError
	if err := s.ensureRoot(); errors.As(err, &notOwn) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("create %s: %w", s.root, err)
	}
	path := s.lockPath(lab)
	for {
		f, err := s.openFile(path, unix.O_CREAT|unix.O_RDWR, 0o600)
		if errors.As(err, &notOwn) {
			return nil, err
		} else if err != nil {
			return nil, fmt.Errorf("open lock %s: %w", path, err)
		}
		how := unix.LOCK_EX
		if !wait {
			how |= unix.LOCK_NB
		}
		if err := unix.Flock(int(f.Fd()), how); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("lab %s: %w (lock %s)", lab, ErrLocked, path)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// Still the file at path? If a finishing `down` removed it, try again.
		var held unix.Stat_t
		if now, err := s.lstat(path); err == nil && unix.Fstat(int(f.Fd()), &held) == nil && held.Ino == now.Ino {
			return &Lock{f: f, path: path, lab: lab, state: s}, nil
		}
		f.Close()
	}
}

// Release gives the lock up; with remove, the lock file goes too (after `down`).
// So does the lock of a lab that has no state directory: a refused `up` (a
// conflict, a missing sysctl) leaves no trace. Removing a lock file is safe
// while it is held: a run waiting on it finds it gone and locks the new one
// (see lock).
func (l *Lock) Release(remove bool) {
	if remove || !l.state.exists(l.state.labDir(l.lab)) {
		l.state.remove(l.path)
	}
	l.f.Close()
}

// forget removes the lab's directory once nothing of the lab is left.
func (s *stateDir) forget(lab string) error {
	if err := topology.CheckLabName(lab); err != nil {
		return err
	}
	s.ensuredMu.Lock()
	delete(s.ensured, lab)
	s.ensuredMu.Unlock()
	if err := s.removeAll(s.labDir(lab)); err != nil {
		return fmt.Errorf("remove state of lab %s: %w", lab, err)
	}
	return nil
}

// labs lists the labs that have a state directory: real directories (not links)
// whose names are valid lab names.
func (s *stateDir) labs() ([]string, error) {
	entries, err := s.readDir(s.root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && topology.CheckLabName(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
