package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/topology"
)

// The script `netlab plan -o commands` prints is the plan as ip and sysctl
// commands; what `up` records besides the kernel objects (the lab's file, the
// values sysctls had before the lab) it records by calling these hidden
// commands, which run the same code as `up`, so that `netlab down` and
// `netlab status` work on a lab built by the script.

// The names these commands take become paths: the lab's must be a name a lab
// file could give (topology.CheckLabName), a namespace's a kernel name (the
// lab's prefix, then the namespace's).
var netnsRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func validNetns(ns string) bool {
	return ns == reconcile.Host || (netnsRE.MatchString(ns) && ns != "." && ns != "..")
}

// recordStep opens the kernel driver and holds the lab's lock, as `up` does,
// while f runs.
func (a *app) recordStep(ctx context.Context, lab string, f func(d *kernel.Driver) error) error {
	if err := topology.CheckLabName(lab); err != nil {
		return err
	}
	d, err := a.openKernel()
	if err != nil {
		return err
	}
	defer d.Close()
	lock, err := a.lock(ctx, d, lab)
	if err != nil {
		return err
	}
	defer lock.Release(false)
	if err := d.CheckNetns(lab); err != nil {
		return err
	}
	return f(d)
}

func (a *app) recordCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "__record LAB FILE",
		Short:  "Record the lab's file, as up does (for the script of plan -o commands)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, _, err := loadLab(args[1])
			if err != nil {
				return err
			}
			if lab.Name != args[0] {
				return fmt.Errorf("%s is the file of lab %s, not of lab %s", args[1], lab.Name, args[0])
			}
			return a.recordStep(cmd.Context(), lab.Name, func(d *kernel.Driver) error {
				return d.RecordLab(lab.Name, args[1], lab.NetnsPrefix)
			})
		},
	}
}

// netnsStep is a hidden command of LAB NETNS and more arguments (args in
// all): the namespace checked (a valid name, the host or one of the lab's),
// step runs as recordStep runs it.
func (a *app) netnsStep(use, short string, args int, step func(d *kernel.Driver, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use:    use,
		Short:  short + " (for the script of plan -o commands)",
		Hidden: true,
		Args:   cobra.ExactArgs(args),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !validNetns(args[1]) {
				return fmt.Errorf("invalid namespace name %q", args[1])
			}
			return a.recordStep(cmd.Context(), args[0], func(d *kernel.Driver) error {
				if err := d.CheckLabNetns(args[0], args[1]); err != nil {
					return err
				}
				return step(d, args)
			})
		},
	}
}

func (a *app) saveSysctlCmd() *cobra.Command {
	return a.netnsStep("__save-sysctl LAB NETNS NAME=VALUE", "Record the value a sysctl has before the lab sets it, as up does", 3,
		func(d *kernel.Driver, args []string) error {
			name, value, ok := strings.Cut(args[2], "=")
			if !ok {
				return fmt.Errorf("want NAME=VALUE, not %q", args[2])
			}
			return d.SaveSysctl(args[0], args[1], name, value)
		})
}

func (a *app) restoreSysctlCmd() *cobra.Command {
	return a.netnsStep("__restore-sysctl LAB NETNS NAME", "Put back the value a sysctl had before the lab, as up and down do", 3,
		func(d *kernel.Driver, args []string) error { return d.RestoreSysctl(args[0], args[1], args[2]) })
}

func (a *app) recordExecCmd() *cobra.Command {
	return a.netnsStep("__record-exec LAB NETNS INDEX COMMAND", "Record that an exec: command ran, as up does", 4,
		func(d *kernel.Driver, args []string) error {
			index, err := strconv.Atoi(args[2])
			if err != nil || index < 0 {
				return fmt.Errorf("invalid command index %q", args[2])
			}
			return d.RecordExec(args[0], args[1], index, args[3])
		})
}

func (a *app) forgetExecCmd() *cobra.Command {
	return a.netnsStep("__forget-exec LAB NETNS KEEP", "Forget the exec: commands after the first KEEP that ran, as up does", 3,
		func(d *kernel.Driver, args []string) error {
			keep, err := strconv.Atoi(args[2])
			if err != nil || keep < 0 {
				return fmt.Errorf("invalid number of commands to keep %q", args[2])
			}
			return d.KeepExecs(args[0], args[1], keep)
		})
}

func (a *app) createTableCmd() *cobra.Command {
	return a.netnsStep("__create-table LAB NETNS FAMILY", "Create Docker's table docker-bridges of a family, marked as the lab's, as up does", 3,
		func(d *kernel.Driver, args []string) error { return d.CreateDockerTable(args[0], args[1], args[2]) })
}

func (a *app) saveIptablesCmd() *cobra.Command {
	return a.netnsStep("__save-iptables LAB NETNS", "Record what ip raw / ip filter / ip nat hold before the lab's iptables-restore, as up does", 2,
		func(d *kernel.Driver, args []string) error { return d.SaveIptables(args[0], args[1]) })
}

func (a *app) markIptablesCmd() *cobra.Command {
	return a.netnsStep("__mark-iptables LAB NETNS", "Mark the rules the lab's iptables-restore just wrote as the lab's, as up does", 2,
		func(d *kernel.Driver, args []string) error {
			t, err := recordedIptables(d, args[0], args[1])
			if err != nil {
				return err
			}
			return d.MarkIptables(args[0], t)
		})
}

// recordedIptables is the iptables layout that the file __record recorded
// for the lab asks for in a namespace: the rules the script's
// iptables-restore wrote, if nothing else did.
func recordedIptables(d *kernel.Driver, lab, ns string) (*reconcile.Table, error) {
	info, ok := d.LabInfo(lab)
	if !ok {
		return nil, fmt.Errorf("lab %s has no file recorded: run netlab __record %s FILE first", lab, lab)
	}
	topo, desired, err := loadLab(info.File)
	if err != nil {
		return nil, err
	}
	if topo.Name != lab {
		return nil, fmt.Errorf("%s is now the file of lab %s, not of lab %s", info.File, topo.Name, lab)
	}
	t := desired.Iptables[ns]
	if t == nil {
		return nil, fmt.Errorf("lab %s (%s) writes no iptables rules in namespace %s", lab, info.File, ns)
	}
	return t, nil
}
