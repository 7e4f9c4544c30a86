package compose

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A compose file that includes or extends a file outside its own directory
// (directly, or through a link there) is refused before anything is read:
// compose-go quotes the lines of a file it cannot parse in its errors, and
// netlab runs as root (include: [/etc/shadow] printed the password hashes).
func TestImportReadsOnlyFilesNextToTheComposeFile(t *testing.T) {
	secret := writeFile(t, filepath.Join(t.TempDir(), "shadow"), "root:$y$j9T$hash:19000:0:99999:7:::\n")
	dir := t.TempDir()
	if err := os.Symlink(secret, filepath.Join(dir, "inner.yml")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "nested.yml"), "include: ["+secret+"]\nservices:\n  api: {image: nginx}\n")
	for name, compose := range map[string]string{
		"include":             "include: [" + secret + "]\nservices:\n  web: {image: nginx}\n",
		"include, mapping":    "include:\n  - path: [" + secret + "]\nservices:\n  web: {image: nginx}\n",
		"include, link":       "include: [inner.yml]\nservices:\n  web: {image: nginx}\n",
		"include, ..":         "include: [../" + filepath.Base(filepath.Dir(secret)) + "/shadow]\nservices:\n  web: {image: nginx}\n",
		"include, a variable": "include:\n  - ${HOME}/x.yml\nservices:\n  web: {image: nginx}\n",
		"extends":             "services:\n  web: {image: nginx, extends: {file: " + secret + ", service: x}}\n",
		"a second document":   "services:\n  web: {image: nginx}\n---\ninclude: [" + secret + "]\n",
		"project_directory":   "include:\n  - {path: x.yml, project_directory: " + filepath.Dir(secret) + "}\nservices:\n  web: {image: nginx}\n",
		"an included file's":  "include: [nested.yml]\nservices:\n  web: {image: nginx}\n",
	} {
		path := writeFile(t, filepath.Join(dir, "compose.yml"), compose)
		_, err := Import(context.Background(), path)
		if err == nil || strings.Contains(err.Error(), "hash") || !strings.Contains(err.Error(), "import reads") {
			t.Errorf("%s: %v, want a refusal that quotes nothing of the file", name, err)
		}
	}
}

// A service's env_file is not read (a lab holds no environment): one that
// cannot be read (a directory) does not fail the import, as it would once read.
func TestImportReadsNoEnvFile(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, filepath.Join(dir, "compose.yml"), "services:\n  web:\n    image: nginx\n    env_file: "+t.TempDir()+"\n")
	res, err := Import(context.Background(), path)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	if !strings.Contains(string(res.Lab), "web") {
		t.Errorf("the lab lacks the service:\n%s", res.Lab)
	}
}

// The compose file is a regular file: a FIFO is refused at once (it would
// hang the import), a device too (/dev/zero would fill the memory).
func TestImportReadsARegularComposeFileOnly(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "compose.yml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, "/dev/zero"} {
		if _, err := Import(context.Background(), path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("import %s: %v, want a refusal", path, err)
		}
	}
}

// Files next to the compose file may be included and extended, named
// relatively or absolutely, the compose file itself named relatively.
func TestImportIncludesFilesNextToTheComposeFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "common.yml"), "services:\n  base: {image: nginx, hostname: from-common}\n")
	writeFile(t, filepath.Join(dir, "extra.yml"), "services:\n  api: {image: nginx, hostname: from-extra}\n")
	writeFile(t, filepath.Join(dir, "extra2.yml"), "services:\n  db: {image: nginx, hostname: from-extra2}\n")
	writeFile(t, filepath.Join(dir, "compose.yml"), "include: [extra.yml, "+filepath.Join(dir, "extra2.yml")+"]\nservices:\n  web: {extends: {file: common.yml, service: base}}\n")
	t.Chdir(dir)
	res, err := Import(context.Background(), "compose.yml")
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	for _, want := range []string{"from-common", "from-extra", "from-extra2"} {
		if !strings.Contains(string(res.Lab), want) {
			t.Errorf("the lab lacks %q:\n%s", want, res.Lab)
		}
	}
}
