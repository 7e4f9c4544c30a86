package topology

import (
	"strings"
	"syscall"
	"testing"
)

func TestCheckLabName(t *testing.T) {
	for _, name := range []string{"docker-bridge", "a", "0lab", strings.Repeat("x", 24)} {
		if err := CheckLabName(name); err != nil {
			t.Errorf("CheckLabName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", "../x", "../../srv/victim", "a/b", "labs/x.yaml", "x.yaml", "-x", "Lab",
		"a b", "a\x00b", strings.Repeat("x", 25)} {
		err := CheckLabName(name)
		if err == nil || !strings.HasPrefix(err.Error(), "invalid lab name ") {
			t.Errorf("CheckLabName(%q) = %v, want an invalid lab name error", name, err)
		}
	}
}

// A lab file that is not a regular file is refused before it is read: a FIFO
// would block, a device never end.
func TestLoadRefusesOtherThanRegularFiles(t *testing.T) {
	fifo := t.TempDir() + "/lab.yaml"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{fifo, t.TempDir(), "/dev/null"} {
		_, err := Load(file)
		if want := file + ": not a regular file"; err == nil || err.Error() != want {
			t.Errorf("Load(%s) = %v, want %q", file, err, want)
		}
	}
}

func TestReadNamesTheInput(t *testing.T) {
	_, err := Read(strings.NewReader("name: x\nbridges: [\n"), "-")
	if err == nil || !strings.HasPrefix(err.Error(), "-:") {
		t.Errorf("Read: %v, want errors positioned in -", err)
	}
	lab, err := Read(strings.NewReader("name: x\n"), "-")
	if err != nil || lab.Name != "x" {
		t.Errorf("Read: %v %v", lab, err)
	}
}
