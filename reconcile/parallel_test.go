package reconcile

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Parallel calls f once for each index, never more than limit at a time, and
// uses all of them when there is work for them.
func TestParallelCallsEachIndexOnceWithinTheLimit(t *testing.T) {
	for _, tc := range []struct{ n, limit int }{{0, 4}, {1, 4}, {3, 8}, {100, 8}, {100, 1}, {5, 0}} {
		calls := make([]atomic.Int32, tc.n)
		var running, most atomic.Int32
		var mu sync.Mutex
		Parallel(tc.n, tc.limit, func(i int) {
			now := running.Add(1)
			mu.Lock()
			most.Store(max(most.Load(), now))
			mu.Unlock()
			time.Sleep(time.Millisecond)
			calls[i].Add(1)
			running.Add(-1)
		})
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Fatalf("n=%d limit=%d: index %d called %d times", tc.n, tc.limit, i, c)
			}
		}
		bound := min(tc.n, max(tc.limit, 1))
		if got := int(most.Load()); got > bound {
			t.Fatalf("n=%d limit=%d: %d calls at once", tc.n, tc.limit, got)
		}
		if tc.n >= 100 && tc.limit == 8 && most.Load() < 2 {
			t.Fatalf("n=%d limit=%d: never more than one call at once", tc.n, tc.limit)
		}
	}
}

// Under a low open-file limit, fewer workers run at once: each may hold
// several descriptors while it opens a namespace, counted nowhere yet.
func TestDefaultWorkersLeaveRoomUnderTheOpenFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	low := orig
	low.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got := DefaultWorkers()
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig)
	if want := min(4*runtime.NumCPU(), 2); got != want {
		t.Errorf("under a limit of 64 open files: %d workers, want %d", got, want)
	}
}
