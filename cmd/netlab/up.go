package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/reconcile/run"
)

func (a *app) upCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "up FILE",
		Short: "Bring the kernel to what the lab file says",
		Long: `Observe the kernel, diff it against the lab file, print the plan, apply it and
observe again to verify. Running it again changes nothing. After a failure, or
after someone changed the lab by hand, running it again puts back exactly what
differs.`,
		Args: labFileArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, d, err := a.openLab(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			err = run.Up(cmd.Context(), d, lab, a.runOptions(d))
			var step *reconcile.StepError
			if errors.As(err, &step) {
				return applyFailed(err, args[0])
			}
			return err
		},
	}
}

// applyFailed says what to do after a failed apply: run up again when the
// next run can get past the failure (a race, an interruption), or change the
// file when the kernel refused what it asks (the same request would fail again).
func applyFailed(err error, file string) error {
	if kernel.Refused(err) {
		return fmt.Errorf("%w\nthe kernel refused this request; running up again would fail the same way: change %s, or \"netlab down %s\" to remove what was made", err, file, file)
	}
	return fmt.Errorf("%w\nrun \"netlab up %s\" again to converge", err, file)
}
