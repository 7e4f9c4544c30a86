package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"netlab/topology"
)

// maxComposeSize bounds a compose file as a lab file is bounded: a compose
// file of a lab is a few kilobytes, and /dev/zero is not one.
const maxComposeSize = 4 << 20

// checkFiles refuses, before compose-go reads anything, what would make the
// import read files the user did not mean to give it. netlab runs as root,
// and compose-go quotes the lines of a file it cannot parse in its errors:
// `include: [/etc/shadow]` printed root's password hashes. The compose file
// must be a regular file of at most 4 MiB (a FIFO would hang the import,
// /dev/zero fill the memory). Every file it names that compose-go would read
// (what it includes or extends, a project directory and the .env there, in
// every document of the file and, in turn, of each included or extended file)
// must lie in the compose file's directory once links are followed, named
// without variables or ~.
func checkFiles(path string) error {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return err
	}
	c := &fileCheck{root: dir, seen: map[string]bool{}}
	return c.file(path)
}

// fileCheck walks the files a compose file names, within root.
type fileCheck struct {
	root string
	seen map[string]bool
}

// file checks one compose file and, in turn, those it names.
func (c *fileCheck) file(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if c.seen[real] {
		return nil
	}
	c.seen[real] = true
	data, err := topology.ReadFile(path)
	if err != nil {
		return err
	}
	if len(data) > maxComposeSize {
		return fmt.Errorf("%s is larger than 4 MiB; a compose file is a few kilobytes", path)
	}
	dir := filepath.Dir(real)
	refs, composeFiles := []string{filepath.Join(dir, ".env")}, []string(nil)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			break // not ours to report: compose-go says what is wrong, with its position
		}
		included, dirs := includes(doc["include"])
		composeFiles = append(composeFiles, included...)
		composeFiles = append(composeFiles, extended(doc["services"])...)
		for _, d := range dirs {
			refs = append(refs, d, filepath.Join(d, ".env"))
		}
	}
	for _, ref := range append(refs, composeFiles...) {
		if err := c.inRoot(dir, ref); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	for _, f := range composeFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dir, f)
		}
		if err := c.file(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// includes are the files an include: list reads (each entry's path and
// env_file) and its entries' project directories. A value that is not a list
// is checked all the same: compose-go reports it, after it read what it names.
func includes(v any) (files, dirs []string) {
	entries, ok := v.([]any)
	if !ok {
		entries = []any{v}
	}
	for _, e := range entries {
		m, ok := e.(map[string]any)
		if !ok {
			files = append(files, stringsOf(e)...)
			continue
		}
		files = append(files, stringsOf(m["path"])...)
		files = append(files, stringsOf(m["env_file"])...)
		dirs = append(dirs, stringsOf(m["project_directory"])...)
	}
	return files, dirs
}

// extended are the files services extend (extends: {file: ...}).
func extended(v any) []string {
	services, _ := v.(map[string]any)
	var files []string
	for _, svc := range services {
		if m, ok := svc.(map[string]any); ok {
			if ext, ok := m["extends"].(map[string]any); ok {
				files = append(files, stringsOf(ext["file"])...)
			}
		}
	}
	return files
}

// stringsOf is a string, or the strings of a list.
func stringsOf(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, stringsOf(e)...)
		}
		return out
	}
	return nil
}

// inRoot refuses a file a compose file in dir names that is not in the
// root directory once links are followed. One that does not exist is left to
// compose-go to report.
func (c *fileCheck) inRoot(dir, name string) error {
	if strings.ContainsAny(name, "$~") {
		return fmt.Errorf("%q: import reads no file named with a variable or ~, only files next to the compose file", name)
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	real, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(c.root, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%q is outside %s: import reads only files next to the compose file", name, c.root)
	}
	return nil
}
