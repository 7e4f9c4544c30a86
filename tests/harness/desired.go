package harness

import (
	"os"
	"path/filepath"
	"testing"

	"netlab/reconcile"
	"netlab/topology"
)

// Desired compiles a lab file as netlab would: what the kernel should hold.
func Desired(t testing.TB, path string) *reconcile.State {
	t.Helper()
	lab, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := reconcile.Desired(lab)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// DesiredFromText compiles a lab file's text, written to a temporary file.
func DesiredFromText(t testing.TB, text string) *reconcile.State {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return Desired(t, path)
}
