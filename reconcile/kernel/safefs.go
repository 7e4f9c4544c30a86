package kernel

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A tree is a directory netlab keeps files of its own in (its state directory
// /run/netlab, the generated files under /etc/netns). Every path netlab uses in
// it goes through the tree, which proves it stays below the root (each name in
// it plain: not empty, ".", ".." and without "/") and reaches it one name at a
// time from a descriptor of the directory above, with O_NOFOLLOW: a symbolic link,
// or an object of another kind, where netlab expects its own file or directory
// is refused with a *notOwnError, never followed to what it points at. Files are
// opened without blocking (a FIFO would) and must be regular files.
//
// Plain openat with O_NOFOLLOW on each name is what openat2's
// RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH does in one call; it works on every kernel.
type tree struct {
	root  string             // absolute and clean
	where string             // the tree in messages: "its state directory", "/etc/netns"
	first func(string) error // checks the first name below the root (a lab's, say); nil: any plain name
}

// notOwnError says that an object of the wrong kind (a symlink, a FIFO, ...) is
// where netlab expects its own file or directory.
type notOwnError struct {
	path  string
	is    string // "a symlink", "a FIFO", ...
	want  string // "a directory" or "a regular file"
	where string // the tree, for the message
}

func (e *notOwnError) Error() string {
	if e.is == "a symlink" {
		return fmt.Sprintf("%s is a symlink; netlab does not follow links in %s", e.path, e.where)
	}
	return fmt.Sprintf("%s is %s, not %s; netlab does not use it", e.path, e.is, e.want)
}

// plainName reports whether s can be one name in a path: not empty, not "." or
// "..", without "/" or NUL.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// names proves that path is the root or below it and returns the names that
// lead there from the root.
func (t *tree) names(path string) ([]string, error) {
	rel, ok := strings.CutPrefix(path, t.root)
	if !ok || (rel != "" && rel[0] != '/') {
		return nil, fmt.Errorf("%q is outside %s (%s)", path, t.where, t.root)
	}
	rel = strings.TrimPrefix(rel, "/")
	if rel == "" {
		return nil, nil
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if !plainName(p) {
			return nil, fmt.Errorf("%q is not a plain path below %s (%s)", path, t.where, t.root)
		}
	}
	if t.first != nil {
		if err := t.first(parts[0]); err != nil {
			return nil, fmt.Errorf("%q: %w", path, err)
		}
	}
	return parts, nil
}

// kindOf names the kind of a file mode, for messages.
func kindOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFREG:
		return "a regular file"
	}
	return "an unknown kind of file"
}

// notOwn describes what is at name in the directory dirfd, when opening it as
// want failed with err (ELOOP, ENOTDIR, ...); other errors are returned as they are.
func (t *tree) notOwn(dirfd int, name, path, want string, err error) error {
	var st unix.Stat_t
	if serr := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil {
		if is := kindOf(st.Mode); is != want {
			return &notOwnError{path: path, is: is, want: want, where: t.where}
		}
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// openRoot opens the root directory, making it first (with perm) when create.
func (t *tree) openRoot(create bool, perm uint32) (int, error) {
	if create {
		if err := os.MkdirAll(filepath.Dir(t.root), 0o755); err != nil {
			return -1, err
		}
		if err := unix.Mkdir(t.root, perm); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, &os.PathError{Op: "mkdir", Path: t.root, Err: err}
		}
	}
	fd, err := unix.Open(t.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		parent, perr := unix.Open(filepath.Dir(t.root), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if perr != nil {
			return -1, &os.PathError{Op: "open", Path: t.root, Err: err}
		}
		defer unix.Close(parent)
		return -1, t.notOwn(parent, filepath.Base(t.root), t.root, "a directory", err)
	}
	return fd, nil
}

// openDir opens the directory at path (the root or below it), each name without
// following links; create makes the missing ones, with perm.
func (t *tree) openDir(path string, create bool, perm uint32) (int, error) {
	parts, err := t.names(path)
	if err != nil {
		return -1, err
	}
	fd, err := t.openRoot(create, perm)
	if err != nil {
		return -1, err
	}
	at := t.root
	for _, p := range parts {
		at += "/" + p
		next, err := unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(fd, p, perm); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, &os.PathError{Op: "mkdir", Path: at, Err: err}
			}
			next, err = unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			err = t.notOwn(fd, p, at, "a directory", err)
			unix.Close(fd)
			return -1, err
		}
		unix.Close(fd)
		fd = next
	}
	return fd, nil
}

// parent opens the directory of path, which must be below the root, and returns
// its descriptor and the last name of path.
func (t *tree) parent(path string) (int, string, error) {
	parts, err := t.names(path)
	if err != nil {
		return -1, "", err
	}
	if len(parts) == 0 {
		return -1, "", fmt.Errorf("%q is %s itself, not a file in it", path, t.where)
	}
	dir := strings.Join(append([]string{t.root}, parts[:len(parts)-1]...), "/")
	fd, err := t.openDir(dir, false, 0)
	return fd, parts[len(parts)-1], err
}

// openAt opens name in the directory dirfd without following a link and without
// blocking, and checks that it is a regular file.
func (t *tree) openAt(dirfd int, name, path string, flags int, perm uint32) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EEXIST) {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return nil, t.notOwn(dirfd, name, path, "a regular file", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, &notOwnError{path: path, is: kindOf(st.Mode), want: "a regular file", where: t.where}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openFile opens the regular file at path (see openAt); with O_CREAT in flags it
// is made, with perm, when missing. Its directory must exist.
func (t *tree) openFile(path string, flags int, perm uint32) (*os.File, error) {
	dirfd, name, err := t.parent(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	return t.openAt(dirfd, name, path, flags, perm)
}

// readFile reads the regular file at path.
func (t *tree) readFile(path string) ([]byte, error) {
	f, err := t.openFile(path, unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// writeFile writes the regular file at path as os.WriteFile does (made when
// missing, truncated when not).
func (t *tree) writeFile(path string, data []byte, perm uint32) error {
	f, err := t.openFile(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// replaceFile writes the file at path atomically: a new file NAME.tmp (made with
// O_EXCL; a regular one left by a crash is removed first), renamed over NAME, so
// a crash leaves the old file or the new one. What is at NAME must be a regular
// file or nothing.
func (t *tree) replaceFile(path string, data []byte, perm uint32) error {
	dirfd, name, err := t.parent(path)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := t.regularOrAbsent(dirfd, name, path); err != nil {
		return err
	}
	tmp := name + ".tmp"
	f, err := t.openAt(dirfd, tmp, path+".tmp", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm)
	if errors.Is(err, unix.EEXIST) {
		if err := t.regularOrAbsent(dirfd, tmp, path+".tmp"); err != nil {
			return err
		}
		if err := unix.Unlinkat(dirfd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "remove", Path: path + ".tmp", Err: err}
		}
		f, err = t.openAt(dirfd, tmp, path+".tmp", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err = errors.Join(err, f.Close()); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return &os.PathError{Op: "rename", Path: path, Err: err}
	}
	return nil
}

// regularOrAbsent fails unless name in dirfd is a regular file or nothing.
func (t *tree) regularOrAbsent(dirfd int, name, path string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return &os.PathError{Op: "stat", Path: path, Err: err}
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return &notOwnError{path: path, is: kindOf(st.Mode), want: "a regular file", where: t.where}
	}
	return nil
}

// regularOrAbsentAt fails with a *notOwnError unless what is at path is a
// regular file or nothing.
func (t *tree) regularOrAbsentAt(path string) error {
	dirfd, name, err := t.parent(path)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	return t.regularOrAbsent(dirfd, name, path)
}

// lstat describes what is at path, without following a link there.
func (t *tree) lstat(path string) (unix.Stat_t, error) {
	var st unix.Stat_t
	dirfd, name, err := t.parent(path)
	if err != nil {
		return st, err
	}
	defer unix.Close(dirfd)
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return st, nil
}

// exists reports whether anything is at path (a link too, not followed).
func (t *tree) exists(path string) bool {
	_, err := t.lstat(path)
	return err == nil
}

// remove removes the file at path (a link itself, never what it points at).
func (t *tree) remove(path string) error { return t.unlink(path, 0) }

// removeDir removes the empty directory at path.
func (t *tree) removeDir(path string) error { return t.unlink(path, unix.AT_REMOVEDIR) }

func (t *tree) unlink(path string, flags int) error {
	dirfd, name, err := t.parent(path)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := unix.Unlinkat(dirfd, name, flags); err != nil {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}

// mkdirAll makes the directory at path and the missing ones above it, up to the
// root, with perm.
func (t *tree) mkdirAll(path string, perm uint32) error {
	fd, err := t.openDir(path, true, perm)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// readDir lists the directory at path; an entry's type is its own (a link is a
// link).
func (t *tree) readDir(path string) ([]os.DirEntry, error) {
	fd, err := t.openDir(path, false, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return f.ReadDir(-1)
}

// removeAll removes the directory at path and everything in it, links as links,
// without following any; nothing there is fine.
func (t *tree) removeAll(path string) error {
	dirfd, name, err := t.parent(path)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	return removeAllAt(dirfd, name, path)
}

func removeAllAt(dirfd int, name, path string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	entries, err := f.ReadDir(-1)
	if err != nil {
		f.Close()
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, removeAllAt(fd, e.Name(), path+"/"+e.Name()))
	}
	f.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, &os.PathError{Op: "remove", Path: path, Err: err})
	}
	return errors.Join(errs...)
}
