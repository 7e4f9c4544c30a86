package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
)

func (a *app) execCmd() *cobra.Command {
	var labName string
	cmd := &cobra.Command{
		Use:   "exec [--lab NAME] NODE [-- CMD...]",
		Short: "Run a command inside a lab namespace (a shell when no command is given)",
		Long: `Run a command inside a namespace of a running lab, as "ip netns exec" does:
/sys shows the namespace's interfaces, and the files of /etc/netns/NODE/ (the
lab's generated hosts file) are mounted over /etc. NODE is the name used in the
lab file; --lab is needed only when several running labs have a namespace of
that name. Exit status: the command's.

  netlab exec web -- ip addr show eth0
  netlab exec c3 -- getent hosts c4
  netlab exec web                       # an interactive shell inside web`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("lab") {
				if err := checkLabArg(labName); err != nil {
					return err
				}
			}
			node, argv := args[0], args[1:]
			if len(argv) > 0 && argv[0] == "--" { // kept by cobra once flag parsing stopped at NODE
				argv = argv[1:]
			}
			if len(argv) == 0 {
				argv = []string{cmp.Or(os.Getenv("SHELL"), "/bin/sh")}
			}
			d, err := a.openKernel()
			if err != nil {
				return err
			}
			defer d.Close()
			ns, err := findNode(d, labName, node)
			if err != nil {
				return err
			}
			// As system(3) does: while the command runs, a SIGINT or SIGQUIT from
			// the terminal is the command's (the terminal sends it to both), and
			// netlab catches and drops it: main's second signal must not end
			// netlab under an interactive shell, nor Ctrl-\ leave the command
			// running without it. Caught, not ignored: an ignored signal would
			// stay ignored in the command. A SIGTERM sent to netlab alone is
			// passed on to the command.
			signal.Notify(make(chan os.Signal, 1), os.Interrupt, syscall.SIGQUIT)
			terms := make(chan os.Signal, 1)
			signal.Notify(terms, syscall.SIGTERM)
			code, err := d.Exec(ns, argv, os.Stdin, os.Stdout, os.Stderr, terms)
			if err != nil {
				return err
			}
			return exitCode(code)
		},
	}
	cmd.Flags().StringVar(&labName, "lab", "", "the lab the namespace belongs to")
	cmd.Flags().SetInterspersed(false) // flags after NODE belong to the command
	return cmd
}

// findNode returns the kernel name of a lab's namespace called node in its file.
func findNode(d *kernel.Driver, labName, node string) (string, error) {
	labs := []string{labName}
	if labName == "" {
		var err error
		if labs, err = d.Labs(); err != nil {
			return "", err
		}
	}
	var found []string // "lab/kernel-name"
	for _, lab := range labs {
		info, _ := d.LabInfo(lab)
		ns := info.Prefix + node
		observed, err := d.Observe(context.Background(), reconcile.Query{Lab: lab})
		if err != nil {
			return "", err
		}
		if _, ok := observed.Namespaces[ns]; ok {
			found = append(found, lab+"/"+ns)
		}
	}
	switch len(found) {
	case 0:
		if labName != "" {
			return "", fmt.Errorf("lab %s has no namespace %q (is it up?)", labName, node)
		}
		return "", fmt.Errorf("no running lab has a namespace %q (see netlab status)", node)
	case 1:
		_, ns, _ := strings.Cut(found[0], "/")
		return ns, nil
	}
	slices.Sort(found)
	return "", errors.New("several labs have a namespace " + node + ": " + strings.Join(found, ", ") + "; choose one with --lab")
}
