package kernel

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	r "netlab/reconcile"
)

// TestSoak brings a lab up and down 200 times, then edits it 200 times, with one
// driver, and checks that nothing grows: open file descriptors, mounts, named
// namespaces, goroutines, heap. It runs in `make soak` (NETLAB_SOAK=1).
func TestSoak(t *testing.T) {
	if os.Getenv("NETLAB_SOAK") == "" {
		t.Skip("a soak test: run it with make soak")
	}
	sb := newSandbox(t)
	d := sb.driver()
	base := twoContainers().s
	edited := twoContainers().bridge("br1", "10.20.0.1/24").
		veth(r.InterfaceKey{NS: "c1", Name: "eth1"}, r.InterfaceKey{NS: r.Host, Name: "vc1b"}, "br1", "10.20.0.2/24").s

	measure := func() map[string]int {
		fds, _ := os.ReadDir("/proc/self/fd")
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		netns, _ := os.ReadDir(sb.netnsDir)
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return map[string]int{
			"fds": len(fds), "mounts": strings.Count(string(mounts), "\n"), "namespaces": len(netns),
			"goroutines": runtime.NumGoroutine(), "heap KB": int(m.HeapInuse / 1024),
		}
	}
	// Warm up once, so lazily made things (handles, the namespace directory's
	// mount) are there before the first measurement.
	up(t, d, base)
	down(t, d, "spine")
	before := measure()
	start := time.Now()
	for range 200 {
		up(t, d, base)
		down(t, d, "spine")
	}
	up(t, d, base)
	for i := range 200 {
		if i%2 == 0 {
			up(t, d, edited)
		} else {
			up(t, d, base)
		}
	}
	down(t, d, "spine")
	after := measure()
	t.Logf("400 cycles in %v; before %v, after %v", time.Since(start).Round(time.Millisecond), before, after)
	for k, b := range before {
		limit := b // nothing may grow...
		if k == "heap KB" {
			limit = b + b/2 + 1024 // ...but the heap, within what a garbage collector leaves
		}
		if after[k] > limit {
			t.Errorf("%s grew over 400 cycles: %d -> %d", k, b, after[k])
		}
	}
}
