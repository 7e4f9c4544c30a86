package kernel

import (
	"context"
	"runtime"

	"golang.org/x/sync/errgroup"
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
	g, failed := errgroup.WithContext(ctx) // done once an item failed, or ctx is
	g.SetLimit(workers())
	for i := range items {
		if failed.Err() != nil {
			break
		}
		g.Go(func() error {
			errs[i] = f(items[i])
			return errs[i]
		})
	}
	g.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}
