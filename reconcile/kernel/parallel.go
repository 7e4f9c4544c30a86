package kernel

import (
	"context"
	"sync/atomic"

	"netlab/reconcile"
)

// forEach runs f on every item, reconcile.DefaultWorkers() at a time, and
// returns the error of the first item (in order) that failed. It stops
// starting new items once one has failed or ctx is done.
func forEach[T any](ctx context.Context, items []T, f func(T) error) error {
	errs := make([]error, len(items))
	var failed atomic.Bool
	reconcile.Parallel(len(items), reconcile.DefaultWorkers(), func(i int) {
		if failed.Load() || ctx.Err() != nil {
			return
		}
		if errs[i] = f(items[i]); errs[i] != nil {
			failed.Store(true)
		}
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}
