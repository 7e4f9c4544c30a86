package main

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/reconcile/probe"
	"netlab/reconcile/run"
	"netlab/topology"
)

func (a *app) testCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE",
		Short: "Run the lab's checks from inside its namespaces",
		Long: `Run the checks: of a lab that is up, all at once, from inside its namespaces:
ping, tcp (connect) and http (GET, with the expected status and body), each
expected to work or, with expect: fail, to be blocked; expect: {source: ADDR}
checks the address the far end saw (what NAT did); mesh: pings every ordered
pair of namespaces and prints the matrix; throughput: measures TCP for about
two seconds with netlab's own sender and sink. Prints a table and a closing
line "N passed, M failed". A check that cannot run (its namespace is not the
lab's, or the lab is down) is an ERROR and counts as failed: a blocked check
proves nothing when there is no lab to block it. Exit status 0 when all pass,
1 otherwise.`,
		Args: labFileArg,
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, desired, err := a.loadArg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if len(lab.Checks) == 0 {
				return fmt.Errorf("%s has no checks: to test", args[0])
			}
			d, err := a.openKernel()
			if err != nil {
				return err
			}
			defer d.Close()
			// From inside one of the lab's namespaces, the checks from "host"
			// would run from that namespace and prove nothing about the host.
			// Checked before the lock: an up running this from an exec: command
			// holds it, and the test would wait for it forever.
			if err := d.CheckNetns(desired.Lab); err != nil {
				return err
			}
			// Taken before the lab is read: the checks hold its namespaces open,
			// and a down that deleted them meanwhile would fail after 10 s waiting
			// for them to go. An up or down now waits for the checks.
			lock, err := a.lock(cmd.Context(), d, desired.Lab)
			if err != nil {
				return err
			}
			defer lock.Release(false)
			plan, err := run.Plan(cmd.Context(), d, run.Lab{File: args[0], Topology: lab, Desired: desired})
			if err != nil {
				return err
			}
			if !plan.Empty() {
				fmt.Fprintf(a.Err, "Warning: the kernel differs from %s (%s); run \"netlab up %s\" first.\n",
					topology.Printable(args[0]), strings.TrimSuffix(plan.Summary(), "."), topology.Printable(args[0]))
			}

			observed, err := d.Observe(cmd.Context(), reconcile.Query{Lab: desired.Lab})
			if err != nil {
				return err
			}
			if len(observed.Namespaces) == 0 && len(observed.Interfaces) == 0 {
				return fmt.Errorf("lab %s is not up: run \"netlab up %s\" first", desired.Lab, args[0])
			}

			checks := compileChecks(lab, desired)
			results := probe.Run(cmd.Context(), checks, labNamespaces(d, observed))
			failed, notRun := a.printResults(results)
			a.printTraceHints(lab, results)
			if notRun > 0 {
				fmt.Fprintf(a.Err, "netlab: %s could not run: a namespace they need is not the lab's; run \"netlab up %s\"\n",
					reconcile.Plural(notRun, "check"), args[0])
			}
			if failed > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
}

// printResults prints the table of results, the matrices of mesh checks and the
// closing line; it returns how many failed, and how many of those could not run.
func (a *app) printResults(results []probe.Result) (failed, notRun int) {
	w := tabwriter.NewWriter(a.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CHECK\tRESULT\tDETAIL")
	for _, r := range results {
		result := "pass"
		switch {
		case r.NotRun:
			result, failed, notRun = "ERROR", failed+1, notRun+1
		case !r.Pass:
			result, failed = "FAIL", failed+1
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", topology.Printable(r.Name), result, topology.Printable(r.Detail))
	}
	w.Flush()
	printMatrices(a.Out, results) // test_extra.go
	fmt.Fprintf(a.Out, "%d passed, %d failed\n", len(results)-failed, failed)
	return failed, notRun
}

// labNamespaces enters only the namespaces the lab owns (and the host): a check
// run from a namespace of the same name that another lab or someone else made
// would prove nothing about this lab.
func labNamespaces(d *kernel.Driver, observed *reconcile.State) probe.Enter {
	return func(ns string, f func() error) error {
		if _, ok := observed.Namespaces[ns]; !ok && ns != reconcile.Host {
			return fmt.Errorf("lab %s has no namespace %s (is it up?)", observed.Lab, ns)
		}
		return d.RunIn(ns, f)
	}
}

// compileChecks turns the file's checks, as validation resolved them, into
// probes in kernel namespaces, and finds for each the namespace that owns its
// target address (where a source is observed).
func compileChecks(lab *topology.Lab, desired *reconcile.State) []probe.Check {
	owner := map[netip.Addr]string{}
	for _, k := range sortedAddrKeys(desired) {
		if _, ok := owner[k.Prefix.Addr()]; !ok {
			owner[k.Prefix.Addr()] = k.NS
		}
	}
	var out []probe.Check
	for _, c := range lab.Checks {
		if pc, ok := compileExtraCheck(lab, c, lab.KernelName); ok { // test_extra.go
			out = append(out, pc)
			continue
		}
		pc := probe.Check{
			From: lab.KernelName(c.From), Kind: c.Kind, Target: c.Target, ExpectFail: c.ExpectFail,
			ExpectStatus: c.ExpectStatus, ExpectBody: c.ExpectBody, ExpectSource: c.ExpectSource, ExpectHops: c.ExpectHops,
		}
		host := topology.CheckHost(c)
		addr, err := netip.ParseAddr(host)
		if err != nil { // a name: resolved as the namespace the check runs in would
			var ok bool
			if addr, ok = c.FromNamespace.Resolve(host); ok {
				pc.Target = topology.CheckTargetAt(c, addr)
			} else {
				pc.Unresolved = fmt.Sprintf("%s cannot resolve %s: not in /etc/netns/%s/hosts nor known to an embedded DNS there (names resolve on bridges with resolve: true and on Docker user networks)", pc.From, host, pc.From)
			}
		}
		pc.Far = owner[addr]
		name := fmt.Sprintf("%s -> %s %s", c.From, c.Kind, c.Target)
		switch {
		case c.ExpectFail:
			name += " (expect fail)"
		case c.ExpectSource.IsValid():
			name += " (source " + c.ExpectSource.String() + ")"
		case c.ExpectBody != "":
			name += fmt.Sprintf(" (body %q)", c.ExpectBody)
		}
		pc.Name = name
		out = append(out, pc)
	}
	return out
}

func sortedAddrKeys(s *reconcile.State) []reconcile.AddrKey {
	keys := make([]reconcile.AddrKey, 0, len(s.Addrs))
	for k := range s.Addrs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reconcile.AddrKey) int {
		return cmp.Or(strings.Compare(a.NS, b.NS), strings.Compare(a.Name, b.Name), strings.Compare(a.Prefix.String(), b.Prefix.String()))
	})
	return keys
}
