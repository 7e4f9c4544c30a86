// Package harness keeps netlab's tests off the machine's own network: it re-runs
// test binaries inside a throwaway network and mount namespace, and checks with a
// leak canary that the machine's own namespace is the same after the run.
package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// Env is set to "1" in the re-run test binary (inside the sandbox) and to "skip"
// when the tests cannot run here (not root, outside CI).
const Env = "NETLAB_TEST_SANDBOX"

// Main is the TestMain of packages whose tests need the kernel. Outside the
// sandbox it re-runs the test binary inside new network, mount and PID
// namespaces (its /proc remounted, so it sees and signals only its own
// processes; whatever the tests start dies with it) and compares the machine's
// own namespace before and after; under CI, missing privileges are a failure,
// never a skip.
func Main(m *testing.M) {
	runHelper()
	switch {
	case os.Getenv(Env) == "1":
		// PID 1 of the sandbox's PID namespace: /proc must show that namespace.
		if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err != nil {
			fmt.Fprintln(os.Stderr, "mount /proc in the sandbox:", err)
			os.Exit(1)
		}
		code := m.Run()
		removeBinary()
		os.Exit(code)
	case os.Getenv(Env) != "":
		code := m.Run()
		removeBinary()
		os.Exit(code)
	case os.Geteuid() != 0 && os.Getenv("CI") != "":
		fmt.Fprintln(os.Stderr, "kernel tests need root under CI (they run in a throwaway network namespace)")
		os.Exit(1)
	case os.Geteuid() != 0:
		os.Setenv(Env, "skip")
		os.Exit(m.Run())
	}
	before, err := machineSnapshot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "leak canary:", err)
		os.Exit(1)
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), Env+"=1")
	// New network and mount namespaces for the child; Go makes its mounts private.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Unshareflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS}
	code := 0
	if err := cmd.Run(); err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	after, err := machineSnapshot()
	if err != nil || after != before {
		fmt.Fprintf(os.Stderr, "LEAK: the machine's own network namespace changed during the tests\nbefore: %s\nafter:  %s\n", before, after)
		code = 1
	}
	os.Exit(code)
}

// Require skips a test that needs the sandbox when it is not in one.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv(Env) != "1" {
		t.Skip("needs root: run `sudo make test` (the tests run in a throwaway network namespace)")
	}
}

// machineSnapshot describes what a test could leak onto the machine: the
// interfaces of its own namespace, namespaces in /run/netns, netlab's state in
// /run/netlab, files in /etc/netns, and live processes started for a lab.
func machineSnapshot() (string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return "", err
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	for _, dir := range []string{"/run/netns", "/run/netlab", "/etc/netns"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			names = append(names, dir+"/"+e.Name())
		}
	}
	// Processes in the machine's own PID namespace only: those of a sandbox
	// (another package's tests, running meanwhile) die with its namespace.
	ownPIDNS, _ := os.Readlink("/proc/self/ns/pid")
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if pidns, _ := os.Readlink(p + "/ns/pid"); pidns != ownPIDNS {
			continue
		}
		stat, _ := os.ReadFile(p + "/stat")
		env, _ := os.ReadFile(p + "/environ")
		if bytes.Contains(env, []byte("NETLAB_LAB=")) && !bytes.Contains(stat, []byte(") Z ")) {
			names = append(names, "process:"+filepath.Base(p))
		}
	}
	slices.Sort(names)
	return strings.Join(names, " "), nil
}
