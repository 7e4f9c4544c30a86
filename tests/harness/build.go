package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string
	binErr    error
)

// Netlab returns the path of the netlab binary, built once per test binary from
// this module's source, in a directory everyone may read (tests run it as nobody).
func Netlab(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "netlab-bin-"); binErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "netlab"), "netlab/cmd/netlab").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build netlab: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "netlab")
}

// removeBinary deletes the built binary when the tests are over.
func removeBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}
