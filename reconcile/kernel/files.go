package kernel

import (
	"errors"
	"fmt"
	"netlab/reconcile"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Generated files under /etc/netns (a namespace's hosts file): read, written
// and deleted through a no-follow tree.

// etc is the directory of generated files, /etc/netns: its paths go through a
// tree (see safefs.go), so no link in it is followed.
func (d *Driver) etc() *tree {
	root := filepath.Clean(d.etcDir)
	return &tree{root: root, where: root}
}

// observeFiles reads the files under the /etc/netns directory: the lab's (by the
// marker on their first line) and, for conflicts, those netlab did not write.
// Where the directory of a namespace, its file or netlab's temporary file is a
// link or another kind of object, the file is someone else's: a conflict for a
// lab that wants it, never followed.
func (d *Driver) observeFiles(s *reconcile.State) error {
	etc := d.etc()
	dirs, err := etc.readDir(etc.root)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", d.etcDir, err)
	}
	for _, dir := range dirs {
		for _, name := range generatedFiles {
			d.observeFile(s, etc, dir, reconcile.FileKey{NS: dir.Name(), Name: name})
		}
	}
	return nil
}

// generatedFiles are the names of the files netlab writes under /etc/netns/NS.
var generatedFiles = []string{"hosts", "resolv.conf"}

// observeFile reads one generated file of a namespace's directory.
func (d *Driver) observeFile(s *reconcile.State, etc *tree, dir os.DirEntry, k reconcile.FileKey) {
	if !dir.IsDir() {
		s.ForeignFiles[k] = true // a link, or a file, where the directory goes
		return
	}
	path := filepath.Join(etc.root, k.NS, k.Name)
	var notOwn *notOwnError
	if err := etc.regularOrAbsentAt(path + ".tmp"); errors.As(err, &notOwn) {
		s.ForeignFiles[k] = true
		return
	}
	b, err := etc.readFile(path)
	if errors.As(err, &notOwn) {
		s.ForeignFiles[k] = true
		return
	}
	if err != nil {
		return
	}
	content := string(b)
	first, _, _ := strings.Cut(content, "\n")
	switch {
	case first == reconcile.FileMarker(s.Lab):
		s.Files[k] = content
	case !strings.HasPrefix(first, "# "+reconcile.MarkerPrefix):
		s.ForeignFiles[k] = true
	}
}

// writeFile writes a generated file atomically, readable by everyone (it is an
// /etc/hosts).
//
// Equivalent to: mkdir -p /etc/netns/NS && cat >/etc/netns/NS/hosts
func (d *Driver) writeFile(a reconcile.WriteFile) error {
	etc := d.etc()
	dir := filepath.Join(etc.root, a.NS)
	if err := etc.mkdirAll(dir, 0o755); err != nil {
		return err
	}
	return etc.replaceFile(filepath.Join(dir, a.Name), []byte(a.Content), 0o644)
}

// deleteFile removes a generated file, and its directory once empty.
//
// Equivalent to: rm -f /etc/netns/NS/hosts; rmdir /etc/netns/NS
func (d *Driver) deleteFile(k reconcile.FileKey) error {
	etc := d.etc()
	dir := filepath.Join(etc.root, k.NS)
	if err := etc.remove(filepath.Join(dir, k.Name)); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := etc.removeDir(dir); err != nil && !os.IsNotExist(err) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}
