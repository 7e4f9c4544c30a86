package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/run"
)

func (a *app) planCmd() *cobra.Command {
	var output string
	var detailed bool
	cmd := &cobra.Command{
		Use:   "plan FILE",
		Short: "Show what `up` would change, without changing anything",
		Long: `Observe the kernel, diff it against the lab file and print the ordered actions
that "netlab up" would take, one per line, then a summary.

  -o text      + netns web / ~ link web:eth0 mtu 1500 -> 9000 / - route ... (default)
  -o json      the same as one JSON document
  -o commands  the same as an equivalent shell script of ip and sysctl commands

With --detailed-exitcode the exit status is 0 when there is nothing to do, 2 when
there are changes and 1 on error.`,
		Args: labFileArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			render, err := planRenderer(output)
			if err != nil {
				return err
			}
			lab, d, err := a.openLab(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer d.Close()
			if err := d.CheckNetns(lab.Desired.Lab); err != nil {
				return err
			}
			plan, err := run.Plan(cmd.Context(), d, lab)
			if err != nil {
				return err
			}
			if err := render(plan, a.Out); err != nil {
				return err
			}
			if detailed && !plan.Empty() {
				return exitCode(2)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or commands")
	cmd.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 2 when there are changes, 0 when none")
	return cmd
}

func planRenderer(format string) (func(*reconcile.Plan, io.Writer) error, error) {
	switch format {
	case "text":
		return (*reconcile.Plan).WriteText, nil
	case "json":
		return (*reconcile.Plan).WriteJSON, nil
	case "commands":
		return (*reconcile.Plan).WriteCommands, nil
	}
	return nil, fmt.Errorf("unknown output format %q: want text, json or commands", format)
}
