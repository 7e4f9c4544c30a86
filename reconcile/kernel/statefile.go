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
	"time"

	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// stateDir holds the few facts the kernel cannot: per lab, in <root>/<lab>/,
//
//	lab.json      the file the lab was brought up from (for `status`)
//	sysctls.json  the values sysctls had before the lab changed them (for `down`)
//	creating/     one file per interface being created, removed once it is marked,
//	              holding the ifindex netlab asked for: an interrupted run's unmarked
//	              interfaces are recognised by name and index
//
// and <root>/<lab>.lock, the lock that serialises runs on one lab. Everything the
// lab owns is recognised by markers in the kernel, not listed here.
type stateDir struct{ root string }

func (s *stateDir) labDir(lab string) string { return filepath.Join(s.root, lab) }

// ensure creates the lab's directory, private to root.
func (s *stateDir) ensure(lab string) error {
	if err := s.ensureRoot(); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(s.labDir(lab), "creating"), 0o700)
}

// ensureRoot creates netlab's state directory, or makes an existing one private
// again: it holds what the lab changed and its logs.
func (s *stateDir) ensureRoot() error {
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return err
	}
	return os.Chmod(s.root, 0o700)
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
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path) // atomic: a crash leaves the old file or the new one
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
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
	err := readJSON(s.savedSysctlsPath(lab), &list)
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
func (s *stateDir) intentPath(lab string, k reconcile.LinkKey) string {
	return filepath.Join(s.labDir(lab), "creating", k.NS+":"+k.Name)
}

// recordIntent records, before the create, the ifindex netlab asks the kernel to
// give an interface it creates: an unmarked interface is the lab's only when its
// namespace, name and index are those recorded (see Driver.newIndex), so an
// interface made by someone else, even with the same name, is never taken.
func (s *stateDir) recordIntent(lab string, k reconcile.LinkKey, index int) error {
	if err := s.ensure(lab); err != nil {
		return err
	}
	if err := os.WriteFile(s.intentPath(lab, k), []byte(strconv.Itoa(index)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record creation of %s: %w", k, err)
	}
	return nil
}

func (s *stateDir) clearIntent(lab string, keys ...reconcile.LinkKey) {
	for _, k := range keys {
		os.Remove(s.intentPath(lab, k))
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
	return os.WriteFile(s.netnsIntent(lab, name), nil, 0o600)
}

// intents lists the interfaces whose creation was recorded but not completed,
// with the ifindex each was to get; 0 when none is recorded (a file of an older
// netlab, or a damaged one): such an interface is never the lab's by its intent.
func (s *stateDir) intents(lab string) (map[reconcile.LinkKey]int, error) {
	entries, err := os.ReadDir(filepath.Join(s.labDir(lab), "creating"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[reconcile.LinkKey]int{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "ns=") {
			continue // a namespace's (see netnsIntent)
		}
		if ns, name, ok := strings.Cut(e.Name(), ":"); ok && e.Type().IsRegular() {
			b, _ := os.ReadFile(filepath.Join(s.labDir(lab), "creating", e.Name()))
			index, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			out[reconcile.LinkKey{NS: ns, Name: name}] = max(index, 0)
		}
	}
	return out, nil
}

// Lock is a held lock on one lab.
type Lock struct {
	f    *os.File
	path string
}

// ErrLocked is returned by TryLock when another netlab holds the lab's lock.
var ErrLocked = errors.New("another netlab is working on this lab")

// lock takes the lab's lock, waiting for it unless wait is false. The lock file may
// be removed by a `down` that held it before us; then we lock the new file instead.
func (s *stateDir) lock(lab string, wait bool) (*Lock, error) {
	if err := s.ensureRoot(); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.root, err)
	}
	path := filepath.Join(s.root, lab+".lock")
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
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
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino {
			return &Lock{f: f, path: path}, nil
		}
		f.Close()
	}
}

// Release gives the lock up; with remove, the lock file goes too (after `down`).
func (l *Lock) Release(remove bool) {
	if remove {
		os.Remove(l.path)
	}
	l.f.Close()
}

// forget removes the lab's directory once nothing of the lab is left.
func (s *stateDir) forget(lab string) error {
	if err := os.RemoveAll(s.labDir(lab)); err != nil {
		return fmt.Errorf("remove state of lab %s: %w", lab, err)
	}
	return nil
}

// labs lists the labs that have a state directory.
func (s *stateDir) labs() ([]string, error) {
	entries, err := os.ReadDir(s.root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
