package compose

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"netlab/topology"
)

// maxComposeSize bounds the compose file as a lab file is bounded: a compose
// file of a lab is a few kilobytes, and /dev/zero is not one.
const maxComposeSize = 4 << 20

// checkFiles refuses, before compose-go reads anything, what would make the
// import read files the user did not mean to give it. netlab runs as root,
// and compose-go quotes the lines of a file it cannot parse in its errors:
// `include: [/etc/shadow]` printed root's password hashes. The compose file
// must be a regular file of at most 4 MiB (a FIFO would hang the import,
// /dev/zero fill the memory); the files it includes or extends, and its
// .env, must lie in its own directory (links followed), named without
// variables or ~.
func checkFiles(path string) error {
	data, err := topology.ReadFile(path)
	if err != nil {
		return err
	}
	if len(data) > maxComposeSize {
		return fmt.Errorf("%s is larger than 4 MiB; a compose file is a few kilobytes", path)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil // not ours to report: compose-go says what is wrong, with its position
	}
	dir := filepath.Dir(path)
	refs := []string{".env"}
	includes, ok := raw["include"].([]any)
	if !ok {
		includes = []any{raw["include"]} // not a list: what it names is checked all the same
	}
	for _, inc := range includes {
		refs = append(refs, includePaths(inc)...)
	}
	services, _ := raw["services"].(map[string]any)
	for _, svc := range services {
		if m, ok := svc.(map[string]any); ok {
			if ext, ok := m["extends"].(map[string]any); ok {
				refs = append(refs, stringsOf(ext["file"])...)
			}
		}
	}
	for _, ref := range refs {
		if err := inDirectory(dir, ref); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

// includePaths are the files an include: entry reads: its path (a string,
// or the path and env_file of a mapping).
func includePaths(inc any) []string {
	m, ok := inc.(map[string]any)
	if !ok {
		return stringsOf(inc)
	}
	return append(stringsOf(m["path"]), stringsOf(m["env_file"])...)
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

// inDirectory refuses a file the compose file names that is not in dir once
// links are followed. One that does not exist is left to compose-go to report.
func inDirectory(dir, name string) error {
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
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(realDir, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%q is outside %s: import reads only files next to the compose file", name, dir)
	}
	return nil
}
