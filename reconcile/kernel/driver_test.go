package kernel

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fdSize is the size of the process's descriptor table (FDSize in
// /proc/self/status).
func fdSize(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "FDSize:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no FDSize in /proc/self/status")
	return 0
}

// fileLimit is the soft limit on open files: no descriptor reaches it.
func fileLimit(t *testing.T) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	return int(min(lim.Cur, 1<<20))
}

// reserveFiles grows the descriptor table to the size asked for, and does
// nothing when the table is already big enough.
func TestReserveFilesGrowsTheTable(t *testing.T) {
	want := min(4*fdSize(t)+1000, fileLimit(t))
	reserveFiles(want)
	if got := fdSize(t); got < want {
		t.Fatalf("table holds %d descriptors after reserving %d", got, want)
	}
	before := fdSize(t)
	reserveFiles(want / 2)
	if got := fdSize(t); got != before {
		t.Fatalf("reserving less grew the table from %d to %d", before, got)
	}
}

// reserveFiles never closes a descriptor that is open where it probes.
func TestReserveFilesLeavesOpenDescriptors(t *testing.T) {
	want := min(4*fdSize(t)+1000, fileLimit(t))
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Dup3(int(f.Fd()), want-1, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(want - 1)
	reserveFiles(want)
	var st unix.Stat_t
	if err := unix.Fstat(want-1, &st); err != nil {
		t.Fatalf("descriptor %d was closed: %v", want-1, err)
	}
}
