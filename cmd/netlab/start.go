package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
)

// startCmd starts one process entry of a lab as up does, for the script of
// plan -o commands: inside the entry's cgroup, so that plan then sees it running
// and down stops it with everything it forked.
func (a *app) startCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "__start LAB NETNS -- (sh -c COMMAND | netlab serve ...)",
		Short:  "Start a process of the lab as up does (for the script of plan -o commands)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !validNetns(args[1]) {
				return fmt.Errorf("invalid namespace name %q", args[1])
			}
			p, err := reconcile.ProcessFromArgv(args[1], args[2:])
			if err != nil {
				return err
			}
			return a.recordStep(cmd.Context(), args[0], func(d *kernel.Driver) error {
				return d.Apply(cmd.Context(), reconcile.StartProcess{Lab: args[0], Process: p})
			})
		},
	}
}
