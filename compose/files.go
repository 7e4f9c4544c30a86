package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"netlab/topology"
)

// maxComposeSize bounds a compose file as a lab file is bounded: a compose
// file of a lab is a few kilobytes, and /dev/zero is not one.
const maxComposeSize = 4 << 20

// checkFiles refuses, before compose-go reads anything, what would make the
// import read files the user did not mean to give it. netlab runs as root,
// and compose-go quotes the lines of a file it cannot parse in its errors:
// `include: [/etc/shadow]` printed root's password hashes. So the import reads
// one compose file and the .env next to it, nothing else:
//   - the compose file is a regular file of at most 4 MiB (a FIFO would hang
//     the import, /dev/zero fill the memory);
//   - `include:` and `extends: {file: ...}` are refused, in every document of
//     the file: compose-go resolves the paths of included files against
//     directories of its own choosing (the working directory, a
//     project_directory), which a check of paths could only guess.
//     `docker compose config` merges them into one file to import;
//   - the .env, if there is one, lies in the compose file's directory once
//     links are followed.
func checkFiles(path string) error {
	data, err := topology.ReadFile(path)
	if err != nil {
		return err
	}
	if len(data) > maxComposeSize {
		return fmt.Errorf("%s is larger than 4 MiB; a compose file is a few kilobytes", path)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break // the end (io.EOF), or not ours to report: compose-go says what is wrong, with its position
		}
		if what := otherFiles(doc); what != "" {
			return fmt.Errorf("%s: %s: import reads one compose file; merge the others into it first (docker compose config > one.yml)", path, what)
		}
	}
	return envInDirectory(path)
}

// otherFiles names what in a compose document reads another compose file:
// "" for nothing.
func otherFiles(doc map[string]any) string {
	if doc["include"] != nil {
		return "include:"
	}
	services, _ := doc["services"].(map[string]any)
	for name, svc := range services {
		m, _ := svc.(map[string]any)
		if ext, ok := m["extends"].(map[string]any); ok && ext["file"] != nil {
			return fmt.Sprintf("service %s: extends: {file: ...}", topology.Printable(name))
		}
	}
	return ""
}

// envInDirectory refuses a .env next to the compose file that leads outside
// its directory (a link to /etc/shadow).
func envInDirectory(path string) error {
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return err
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(filepath.Join(dir, ".env"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if filepath.Dir(real) != dir {
		return fmt.Errorf("%s: .env leads outside %s: import reads only files next to the compose file", path, dir)
	}
	if st, err := os.Stat(real); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s: .env is not a regular file", path)
	}
	return nil
}
