package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Output files named on the command line (capture -w, import -o) are written
// by root: a symbolic link, a FIFO or a device there is refused, and what a
// link points at is left as it was.
func TestOutputFilesRefuseWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "shadow")
	if err := os.WriteFile(victim, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pcap")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.pcap")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{link: "is a symbolic link", fifo: "is a FIFO", "/dev/null": "is a device", dir: "is a directory"} {
		if f, err := createOutput(path, 0o600); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("createOutput(%s): %v, want an error saying it %s", path, err, want)
			if f != nil {
				f.Close()
			}
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "secret\n" {
		t.Errorf("the link's target was written: %q", b)
	}
}

// A regular file is emptied and written; a new one gets the mode asked for.
func TestOutputFilesAreRegularFilesWithTheirMode(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.yaml")
	if err := os.WriteFile(old, []byte("a longer content than what replaces it\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeOutput(old, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(old); string(b) != "new\n" {
		t.Errorf("rewritten file holds %q", b)
	}
	fresh := filepath.Join(dir, "capture.pcap")
	f, err := createOutput(fresh, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("a new capture file: %v, mode %v; want nobody else's", err, st.Mode())
	}
}
