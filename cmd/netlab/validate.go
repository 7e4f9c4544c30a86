package main

import (
	"fmt"
	"netlab/reconcile"

	"github.com/spf13/cobra"
)

func (a *app) validateCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate FILE|-",
		Short: "Check a lab file without touching the kernel",
		Long: `Parse and check a lab file. Every problem is reported at once as
FILE:LINE:COL: message. Exit status 0 when valid, 1 when not. FILE - is
standard input.

  -o yaml   print the lab with its ranges expanded (h[1-4] as h1 ... h4)`,
		Args: labFileArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "yaml" {
				return fmt.Errorf("unknown output format %q: want text or yaml", output)
			}
			lab, desired, err := a.loadArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "yaml" {
				return writeExpanded(a.Out, lab) // validate_yaml.go
			}
			fmt.Fprintf(a.Out, "%s: valid lab %q: %s, %s, %s\n", args[0], lab.Name,
				reconcile.Plural(len(desired.Namespaces), "namespace"), reconcile.Plural(len(lab.Bridges), "bridge"), reconcile.Plural(len(lab.Links), "link"))
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, or yaml (the lab with its ranges expanded)")
	return cmd
}
