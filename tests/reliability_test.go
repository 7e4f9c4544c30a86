package tests

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"netlab/tests/harness"
)

// TestTwoLabsSideBySide: two labs brought up at the same time do not interfere,
// and taking one down leaves the other exactly as it was.
func TestTwoLabsSideBySide(t *testing.T) {
	sb := harness.NewSandbox(t)
	var wg sync.WaitGroup
	results := map[string]harness.Result{}
	var mu sync.Mutex
	for _, lab := range []string{"../labs/docker-bridge-lowlevel.yaml", "../labs/router-nat.yaml"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := sb.Exec("netlab", "up", lab)
			mu.Lock()
			results[lab] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	for lab, res := range results {
		if res.Code != 0 {
			t.Fatalf("up %s beside another lab: exit %d\n%s%s", lab, res.Code, res.Stdout, res.Stderr)
		}
	}
	sb.OK("netlab", "test", "../labs/docker-bridge-lowlevel.yaml")
	sb.OK("netlab", "test", "../labs/router-nat.yaml")
	router := sb.OK("netlab", "inspect", "router-nat", "-o", "json")
	sb.OK("netlab", "down", "../labs/docker-bridge-lowlevel.yaml")
	if got := sb.OK("netlab", "plan", "../labs/router-nat.yaml"); got != "No changes.\n" {
		t.Errorf("down of one lab changed the other:\n%s", got)
	}
	if after := sb.OK("netlab", "inspect", "router-nat", "-o", "json"); countersFree(after) != countersFree(router) {
		t.Errorf("router-nat's state changed when docker-bridge went down")
	}
	sb.OK("netlab", "test", "../labs/router-nat.yaml")
}

// countersFree drops the counters from inspect's JSON: traffic changes them.
func countersFree(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, `"packets"`) && !strings.Contains(l, `"bytes"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStateFilesArePrivate: netlab's state directory is 0700 and its files 0600.
func TestStateFilesArePrivate(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", "../labs/docker-bridge-lowlevel.yaml")
	out := sb.OK("sh", "-c", "find /run/netlab -printf '%m %y %p\\n'")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		mode, kind, path := fields[0], fields[1], fields[2]
		want := map[string]string{"d": "700", "f": "600"}[kind]
		if mode != want {
			t.Errorf("%s: mode %s, want %s", path, mode, want)
		}
	}
}

// TestKernelRefusalNamesTheStepAndDownCleansUp: an action the kernel refuses (a
// sysctl value out of its range) fails with its step named, leaves a state
// down removes completely, and never a panic.
func TestKernelRefusalNamesTheStepAndDownCleansUp(t *testing.T) {
	sb := harness.NewSandbox(t)
	before := sb.KernelState()
	lab := filepath.Join(t.TempDir(), "fault.yaml")
	// The sysctl exists (a sysctl that does not is refused at plan time, see
	// tests/hostile), but the kernel refuses the value: a TTL is 1 to 255.
	os.WriteFile(lab, []byte(`name: fault
namespaces:
  a:
    interfaces: {eth0: {addresses: [10.1.0.1/24]}}
    sysctls: {net.ipv4.ip_default_ttl: 300}
  b:
    interfaces: {eth0: {addresses: [10.1.0.2/24]}}
links:
  - [a:eth0, b:eth0]
`), 0o644)
	res := sb.Exec("netlab", "up", lab)
	if res.Code != 1 || !strings.Contains(res.Stderr, "(+ sysctl  a: net.ipv4.ip_default_ttl = 300)") ||
		!strings.Contains(res.Stderr, "invalid argument") || strings.Contains(res.Stderr, "panic") {
		t.Errorf("up with a value the kernel refuses: exit %d\n%s", res.Code, res.Stderr)
	}
	sb.OK("netlab", "down", lab)
	if after := sb.KernelState(); after != before {
		t.Errorf("down after a refused step left a trace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
