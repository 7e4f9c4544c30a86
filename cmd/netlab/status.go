package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/reconcile/run"
	"netlab/topology"
)

// statusDrifted is the exit status of `status` when a lab drifted from its file.
const statusDrifted = 2

// labStatus is one row of `netlab status`.
type labStatus struct {
	Name       string   `json:"name"`
	File       string   `json:"file,omitempty"`
	Namespaces int      `json:"namespaces"`
	Interfaces int      `json:"interfaces"`
	Drift      string   `json:"drift"`           // "no", "yes", or why it is unknown
	Drifted    []string `json:"drifted"`         // the plan lines that would repair it
	Error      string   `json:"error,omitempty"` // why the drift could not be computed
}

func (a *app) statusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "List running labs, their objects and any drift from their files",
		Long: `List the running labs (or the one named), how many namespaces and interfaces
each owns, and whether the kernel drifted from the lab's file: what "netlab up
FILE" would do to repair it.

Exit status: 0 when no lab drifted, 2 when one has (scripts can test it, as
with "netlab plan --detailed-exitcode"), 1 on an error, such as a lab name
that is not running.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rows, labErr, err := forLabs(a, cmd.Context(), output, args, labStatusOf)
			if err != nil {
				return err
			}
			if labErr != nil && len(rows) == 0 {
				return labErr
			}
			if output == "json" {
				err = writeJSON(a.Out, append([]labStatus{}, rows...)) // no labs: []
			} else {
				err = a.printStatus(rows, len(args) == 1)
			}
			if err != nil {
				return err
			}
			if labErr != nil {
				return labErr
			}
			for _, r := range rows {
				if r.Drift == "yes" {
					return exitCode(statusDrifted)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// labStatusOf observes one lab and, if its file is still there and valid, plans it
// to see whether the kernel drifted from the file.
func labStatusOf(ctx context.Context, d *kernel.Driver, name string) (labStatus, error) {
	row := labStatus{Name: name, Drifted: []string{}}
	// From another network namespace (netlab exec c2 -- netlab status), "host"
	// would be c2: its processes and interfaces are not the lab's host side.
	if err := d.CheckNetns(name); err != nil {
		row.Drift, row.Error = "unknown", err.Error()
		return row, nil
	}
	observed, err := d.Observe(ctx, reconcile.Query{Lab: name})
	if err != nil {
		return row, err
	}
	row.Namespaces, row.Interfaces = len(observed.Namespaces), len(observed.Interfaces)
	info, ok := d.LabInfo(name)
	if !ok {
		row.Drift = "unknown"
		row.Error = "no record of the lab's file (brought up by an older netlab, or its state was removed)"
		return row, nil
	}
	row.File = info.File
	lab, desired, err := loadLab(info.File)
	if err != nil {
		row.Drift = "unknown"
		row.Error = err.Error()
		return row, nil
	}
	if desired.Lab != name {
		// Planning it would show another lab's actions as this one's drift.
		row.Drift = "unknown"
		row.Error = fmt.Sprintf("its file %s now names lab %s", info.File, desired.Lab)
		return row, nil
	}
	plan, err := run.Plan(ctx, d, run.Lab{File: info.File, Topology: lab, Desired: desired})
	if err != nil {
		row.Drift = "unknown"
		row.Error = err.Error()
		return row, nil
	}
	row.Drift = "no"
	if !plan.Empty() {
		row.Drift = "yes"
		for _, act := range plan.Actions {
			row.Drifted = append(row.Drifted, reconcile.Line(act))
		}
	}
	return row, nil
}

func (a *app) printStatus(rows []labStatus, details bool) error {
	if len(rows) == 0 {
		fmt.Fprintln(a.Out, "No labs are running.")
		return nil
	}
	w := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LAB\tFILE\tNAMESPACES\tINTERFACES\tDRIFT")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", topology.Printable(r.Name), topology.Printable(r.File), r.Namespaces, r.Interfaces, r.Drift)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(a.Out, "\n%s: drift unknown: %s\n", topology.Printable(r.Name), topology.PrintableLines(r.Error))
		}
		if details || r.Drift == "yes" {
			if len(r.Drifted) > 0 {
				fmt.Fprintf(a.Out, "\n%s drifted from its file; `netlab up %s` would:\n", topology.Printable(r.Name), topology.Printable(r.File))
				for _, l := range r.Drifted {
					fmt.Fprintf(a.Out, "  %s\n", l)
				}
			}
		}
	}
	return nil
}
