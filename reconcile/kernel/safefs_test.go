package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// outside is a directory beside the state directory, with a file in it: what a
// planted link points at. Its listing, contents and modes must never change.
func outside(t *testing.T) (dir string, snapshot func() string) {
	dir = t.TempDir()
	if err := os.WriteFile(dir+"/file", []byte("keep\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	return dir, func() string {
		var b strings.Builder
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			data, _ := os.ReadFile(p)
			b.WriteString(p + " " + fi.Mode().String() + " " + string(data) + "\n")
			return nil
		})
		return b.String()
	}
}

// TestStateDirRefusesBadLabNames: no lab name that is not a lab file's name
// reaches a path; nothing outside the state directory is made or removed.
func TestStateDirRefusesBadLabNames(t *testing.T) {
	base := t.TempDir()
	s := newStateDir(base + "/state")
	victim := base + "/victim"
	os.MkdirAll(victim+"/sub", 0o755)
	os.WriteFile(victim+"/sub/file", []byte("keep"), 0o644)
	for _, lab := range []string{"..", ".", "", "../victim", "../../victim", "a/b", "a/../../victim", "x\x00y", "Lab"} {
		if err := s.ensure(lab); err == nil {
			t.Errorf("ensure(%q): no error", lab)
		}
		if l, err := s.lock(lab, false); err == nil {
			l.Release(true)
			t.Errorf("lock(%q): no error", lab)
		}
		if err := s.forget(lab); err == nil {
			t.Errorf("forget(%q): no error", lab)
		}
		if err := s.check(lab); err == nil {
			t.Errorf("check(%q): no error", lab)
		}
		if err := s.writeSavedSysctls(lab, nil); err == nil {
			t.Errorf("writeSavedSysctls(%q): no error", lab)
		}
		if _, err := s.savedSysctls(lab); err == nil {
			t.Errorf("savedSysctls(%q): no error", lab)
		}
		if err := s.recordNetnsIntent(lab, "x"); err == nil {
			t.Errorf("recordNetnsIntent(%q): no error", lab)
		}
	}
	entries, _ := os.ReadDir(base)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if n := strings.Join(names, " "); n != "state victim" && n != "victim" {
		t.Errorf("beside the state directory: %v, want [state victim] or [victim]", names)
	}
	if b, err := os.ReadFile(victim + "/sub/file"); err != nil || string(b) != "keep" {
		t.Errorf("victim changed: %q %v", b, err)
	}
	if _, err := os.Stat(base + "/victim.lock"); err == nil {
		t.Errorf("a lock file was made outside the state directory")
	}
}

// TestStateDirNeverFollowsLinks: a link planted anywhere in the state directory
// is refused with an error naming it, and what it points at is untouched.
func TestStateDirNeverFollowsLinks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(root, target string) string // returns the path of the link
	}{
		{"root", func(root, target string) string { os.Symlink(target, root); return root }},
		{"lab", func(root, target string) string {
			os.MkdirAll(root, 0o700)
			os.Symlink(target, root+"/lab")
			return root + "/lab"
		}},
		{"lab.json", func(root, target string) string {
			os.MkdirAll(root+"/lab", 0o700)
			os.Symlink(target+"/file", root+"/lab/lab.json")
			return root + "/lab/lab.json"
		}},
		{"sysctls.json", func(root, target string) string {
			os.MkdirAll(root+"/lab", 0o700)
			os.Symlink(target+"/file", root+"/lab/sysctls.json")
			return root + "/lab/sysctls.json"
		}},
		{"creating", func(root, target string) string {
			os.MkdirAll(root+"/lab", 0o700)
			os.Symlink(target, root+"/lab/creating")
			return root + "/lab/creating"
		}},
		{"intent", func(root, target string) string {
			os.MkdirAll(root+"/lab/creating", 0o700)
			os.Symlink(target+"/file", root+"/lab/creating/ns=x")
			return root + "/lab/creating/ns=x"
		}},
		{"lock", func(root, target string) string {
			os.MkdirAll(root, 0o700)
			os.Symlink(target+"/file", root+"/lab.lock")
			return root + "/lab.lock"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir() + "/state"
			target, snapshot := outside(t)
			link := tc.plant(root, target)
			before := snapshot()
			s := newStateDir(root)
			want := link + " is a symlink; netlab does not follow links in its state directory"
			errs := map[string]error{}
			if l, err := s.lock("lab", false); err == nil {
				l.Release(false)
			} else {
				errs["lock"] = err
			}
			errs["check"] = s.check("lab")
			_, errs["savedSysctls"] = s.savedSysctls("lab")
			errs["writeSavedSysctls"] = s.writeSavedSysctls("lab", nil)
			errs["recordNetnsIntent"] = s.recordNetnsIntent("lab", "x")
			errs["writeJSON"] = s.writeJSON(s.labDir("lab")+"/lab.json", 1)
			_, errs["labs"] = s.labs()
			named := false
			for op, err := range errs {
				var notOwn *notOwnError
				if errors.As(err, &notOwn) {
					if !strings.HasSuffix(err.Error(), ": "+want) && err.Error() != want {
						t.Errorf("%s: %v, want %q", op, err, want)
					}
					named = true
				}
			}
			if !named || (errs["check"] == nil && tc.name != "lock") {
				t.Errorf("no operation refused the link; check says %v", errs["check"])
			}
			if after := snapshot(); after != before {
				t.Errorf("the link's target changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestTreeRefusesOtherKinds: a FIFO where netlab's file goes is refused at once
// (opening it would block), a stale temporary file is replaced, and removing a
// link removes the link.
func TestTreeRefusesOtherKinds(t *testing.T) {
	root := t.TempDir()
	tr := &tree{root: root, where: root}
	os.Mkdir(root+"/d", 0o755)
	if err := syscall.Mkfifo(root+"/d/hosts", 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.readFile(root + "/d/hosts"); err == nil || err.Error() != root+"/d/hosts is a FIFO, not a regular file; netlab does not use it" {
		t.Errorf("read a FIFO: %v", err)
	}
	if err := tr.replaceFile(root+"/d/hosts", []byte("x"), 0o644); err == nil {
		t.Errorf("replaced a FIFO")
	}
	os.WriteFile(root+"/d/a.tmp", []byte("stale"), 0o600)
	if err := tr.replaceFile(root+"/d/a", []byte("new"), 0o644); err != nil {
		t.Errorf("replace with a stale temporary file: %v", err)
	}
	if b, _ := os.ReadFile(root + "/d/a"); string(b) != "new" {
		t.Errorf("replaced file holds %q", b)
	}
	target, snapshot := outside(t)
	before := snapshot()
	os.Symlink(target+"/file", root+"/d/link")
	if err := tr.remove(root + "/d/link"); err != nil {
		t.Errorf("remove a link: %v", err)
	}
	os.Symlink(target, root+"/d/dirlink")
	if err := tr.removeAll(root + "/d"); err != nil {
		t.Errorf("removeAll: %v", err)
	}
	if after := snapshot(); after != before {
		t.Errorf("the link's target changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for _, p := range []string{root + "/..", root + "/../x", "/etc/passwd", root + "x/y", root + "/a//b"} {
		if _, err := tr.readFile(p); err == nil || errors.Is(err, os.ErrNotExist) {
			t.Errorf("readFile(%q): %v, want a refusal", p, err)
		}
	}
}
