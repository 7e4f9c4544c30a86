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

// A compose file that includes or extends another file is refused before
// anything is read: compose-go quotes the lines of a file it cannot parse in
// its errors, and netlab runs as root (include: [/etc/shadow] printed the
// password hashes). So is a .env that leads outside the compose file's
// directory.
func TestImportReadsOneComposeFile(t *testing.T) {
	secret := writeFile(t, filepath.Join(t.TempDir(), "shadow"), "root:$y$j9T$hash:19000:0:99999:7:::\n")
	for name, compose := range map[string]string{
		"include":           "include: [" + secret + "]\nservices:\n  web: {image: nginx}\n",
		"include, mapping":  "include:\n  - path: [" + secret + "]\nservices:\n  web: {image: nginx}\n",
		"include, relative": "include: [next.yml]\nservices:\n  web: {image: nginx}\n",
		"include, merged":   "x: &inc {include: [" + secret + "]}\n<<: *inc\nservices:\n  web: {image: nginx}\n",
		"a second document": "services:\n  web: {image: nginx}\n---\ninclude: [" + secret + "]\n",
		"extends":           "services:\n  web: {image: nginx, extends: {file: " + secret + ", service: x}}\n",
	} {
		path := writeFile(t, filepath.Join(t.TempDir(), "compose.yml"), compose)
		_, err := Import(context.Background(), path)
		if err == nil || strings.Contains(err.Error(), "hash") || !strings.Contains(err.Error(), "import reads one compose file") {
			t.Errorf("%s: %v, want a refusal that quotes nothing of the file", name, err)
		}
	}
	dir := t.TempDir()
	if err := os.Symlink(secret, filepath.Join(dir, ".env")); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, filepath.Join(dir, "compose.yml"), "services:\n  web: {image: nginx}\n")
	if _, err := Import(context.Background(), path); err == nil || strings.Contains(err.Error(), "hash") || !strings.Contains(err.Error(), ".env leads outside") {
		t.Errorf(".env linked outside: %v, want a refusal", err)
	}
}

// A service that extends another of the same file, and variables from the
// .env next to the compose file (named relatively), are imported.
func TestImportReadsItsOwnEnv(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, ".env"), "WEB_HOST=from-env\n")
	writeFile(t, filepath.Join(dir, "compose.yml"), "services:\n  base: {image: nginx, hostname: from-base}\n  web:\n    extends: {service: base}\n    hostname: ${WEB_HOST}\n")
	t.Chdir(dir)
	res, err := Import(context.Background(), "compose.yml")
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	for _, want := range []string{"from-base", "from-env"} {
		if !strings.Contains(string(res.Lab), want) {
			t.Errorf("the lab lacks %q:\n%s", want, res.Lab)
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
