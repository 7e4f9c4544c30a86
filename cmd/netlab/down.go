package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"netlab/reconcile/run"
)

func (a *app) downCmd() *cobra.Command {
	var labName string
	cmd := &cobra.Command{
		Use:   "down [FILE | --lab NAME]",
		Short: "Remove everything the lab owns, and nothing else",
		Long: `Remove every namespace, interface, address and route the lab owns, and put
back the sysctls it changed. Ownership is read from markers in the kernel, so
--lab NAME works without the file, after a crash, and twice in a row.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			switch {
			case len(args) == 1 && labName != "":
				return errors.New("down takes a FILE or --lab NAME, not both")
			case len(args) == 1:
				lab, _, err := a.loadArg(ctx, args[0])
				if err != nil {
					return err
				}
				labName = lab.Name
			case labName == "":
				return errors.New("down needs a FILE or --lab NAME")
			case strings.Contains(labName, "/") || strings.HasSuffix(labName, ".yaml") || strings.HasSuffix(labName, ".yml"):
				return fmt.Errorf("invalid lab name %q: --lab takes a lab name; did you mean \"netlab down %s\"?", labName, labName)
			default:
				if err := checkLabArg(labName); err != nil {
					return err
				}
			}
			d, err := a.openKernel()
			if err != nil {
				return err
			}
			defer d.Close()
			return run.Down(ctx, d, labName, a.runOptions(d))
		},
	}
	cmd.Flags().StringVar(&labName, "lab", "", "the name of the lab to remove, without its file")
	return cmd
}
