package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
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
			ctx := cmd.Context()
			lab, desired, err := loadLab(args[0])
			if err != nil {
				return err
			}
			d, err := a.openKernel()
			if err != nil {
				return err
			}
			defer d.Close()
			lock, err := a.lock(d, lab.Name)
			if err != nil {
				return err
			}
			defer lock.Release(false)
			if err := d.CheckNetns(lab.Name); err != nil {
				return err
			}

			plan, err := reconcile.MakePlan(ctx, d, desired)
			if err != nil {
				return err
			}
			if err := plan.WriteText(a.Out); err != nil {
				return err
			}
			if err := d.RecordLab(lab.Name, args[0], lab.NetnsPrefix); err != nil {
				return err
			}
			if plan.Empty() {
				return nil
			}
			start := time.Now()
			progress, stop := a.progressLine("applying", len(plan.Actions))
			err = reconcile.ApplyWithProgress(ctx, d, plan, progress, a.logger())
			stop()
			if err != nil {
				return applyFailed(err, args[0])
			}
			if err := reconcile.Verify(ctx, d, desired, plan); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "Apply complete: %s in %s; the kernel matches %s.\n",
				reconcile.Plural(len(plan.Actions), "action"), time.Since(start).Round(time.Millisecond), args[0])
			return nil
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
