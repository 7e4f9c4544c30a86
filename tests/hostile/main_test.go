// Package hostile holds the red-team cases: what a root tool must refuse or
// survive on a real machine (hostile names, symlinks, objects that existed
// before the lab, two labs at once, a command run from the wrong place). Each
// test runs the built netlab binary in a sandbox of its own (see
// harness.Sandbox); README.md says which promise each guards.
package hostile

import (
	"os"
	"testing"

	"netlab/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// writeLab writes a lab file into the test's temporary directory and returns its path.
func writeLab(t *testing.T, name, content string) string {
	t.Helper()
	path := t.TempDir() + "/" + name
	// Readable by everyone: some tests run netlab as another user.
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// kernelState is what the sandbox holds (see harness.Sandbox.KernelState): a
// refused command leaves nothing, not even its lab's lock file.
func kernelState(sb *harness.Sandbox) string {
	sb.T.Helper()
	return sb.KernelState()
}
