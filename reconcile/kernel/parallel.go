package kernel

import (
	"context"
	"runtime"
	"sync"
)

// workers is how many namespaces are worked on at once. Most of the time of a
// namespace goes to waiting for the kernel (netlink round trips, entering the
// namespace), so a few per CPU keep the CPUs busy without flooding rtnl.
func workers() int { return 4 * runtime.NumCPU() }

// forEach runs f on every item, up to workers() at a time, and returns the error
// of the first item (in order) that failed. It stops starting new items once one
// has failed or ctx is done.
func forEach[T any](ctx context.Context, items []T, f func(T) error) error {
	errs := make([]error, len(items))
	next := make(chan int)
	var wg sync.WaitGroup
	var failed sync.Once
	stop := make(chan struct{})
	for range min(workers(), len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if errs[i] = f(items[i]); errs[i] != nil {
					failed.Do(func() { close(stop) })
				}
			}
		}()
	}
feed:
	for i := range items {
		select {
		case next <- i:
		case <-stop:
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}
