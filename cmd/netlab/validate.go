package main

import (
	"fmt"
	"netlab/reconcile"

	"github.com/spf13/cobra"
)

func (a *app) validateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a lab file without touching the kernel",
		Long: `Parse and check a lab file. Every problem is reported at once as
FILE:LINE:COL: message. Exit status 0 when valid, 1 when not.`,
		Args: labFileArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, desired, err := loadLab(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "%s: valid lab %q: %s, %s, %s\n", args[0], lab.Name,
				reconcile.Plural(len(desired.Namespaces), "namespace"), reconcile.Plural(len(lab.Bridges), "bridge"), reconcile.Plural(len(lab.Links), "link"))
			return nil
		},
	}
}
