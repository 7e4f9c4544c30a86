package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/topology"
)

// The live state of a lab, per namespace, like `docker network inspect`: what a
// student otherwise pieces together from ip, bridge, nft and ps.
type inspection struct {
	Lab        string            `json:"lab"`
	File       string            `json:"file,omitempty"`
	Namespaces []namespaceReport `json:"namespaces"`
}

type namespaceReport struct {
	Name       string            `json:"name"`
	Interfaces []interfaceReport `json:"interfaces"`
	Routes     []string          `json:"routes"`
	Sysctls    map[string]string `json:"sysctls,omitempty"`
	Table      string            `json:"nft_table,omitempty"`
	Rules      []ruleReport      `json:"nft_rules,omitempty"`
	Sets       []setReport       `json:"nft_sets,omitempty"`
	// Iptables are the lab's rules in Docker's iptables layout (docker:
	// {firewall: iptables}), dockerd's own included, as iptables-save
	// prints them, with the policies it sets.
	Iptables []ruleReport `json:"iptables_rules,omitempty"`
	// DockerTables are the lab's tables in Docker 29's nftables layout
	// (docker: {firewall: nftables}): ip docker-bridges, ip6 docker-bridges.
	DockerTables []tableReport   `json:"docker_nft_tables,omitempty"`
	Processes    []processReport `json:"processes,omitempty"`
}

// tableReport is one of Docker's nftables tables the lab wrote, with its
// rules (counters moving) and its maps, as nft list table shows them.
type tableReport struct {
	Table string       `json:"table"` // "ip docker-bridges"
	Rules []ruleReport `json:"rules"`
	Sets  []setReport  `json:"sets,omitempty"`
}

type interfaceReport struct {
	Name      string   `json:"name"`
	Index     int      `json:"ifindex"`
	Kind      string   `json:"kind"`
	State     string   `json:"state"`
	MTU       int      `json:"mtu"`
	MAC       string   `json:"mac"`
	Addresses []string `json:"addresses"`
	Master    string   `json:"master,omitempty"`
	Hairpin   bool     `json:"hairpin,omitempty"`
	Peer      *peer    `json:"peer,omitempty"`
}

// peer is the other end of a veth: ip link shows "eth0@if17", 17 being Index.
type peer struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Index     int    `json:"ifindex"`
}

type ruleReport struct {
	Table   string `json:"table,omitempty"` // iptables' table (filter, nat, raw)
	Chain   string `json:"chain"`
	Rule    string `json:"rule"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// setReport is a set or map of the lab's table: published ports are its elements.
type setReport struct {
	Kind     string   `json:"kind"` // "set" or "map"
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Elements []string `json:"elements"`
}

type processReport struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
}

func (a *app) inspectCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "inspect [NAME] [-o text|json]",
		Short: "Show a running lab's live state: interfaces and their veth peers, routes, rules with counters, processes",
		Long: `Show what the kernel holds for a running lab, namespace by namespace, like
"docker network inspect": each interface with its kind, state, MTU, MAC,
addresses and bridge, and for a veth its peer (ip link shows eth0@if17: the peer
is interface 17 of the other namespace, named here); the routes (the kernel's
own included); the sysctls the lab sets; the lab's nftables rules with their
packet counters, and the elements of its sets (published ports); its rules in
Docker's iptables layout (docker: {firewall: iptables}) as iptables-save prints
them, with their counters; and the lab's processes. Without NAME, every
running lab.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reports, labErr, err := forLabs(a, cmd.Context(), output, args, inspectLab)
			if err != nil {
				return err
			}
			if labErr != nil && len(reports) == 0 {
				return labErr
			}
			if output == "json" {
				if len(args) == 1 {
					return writeJSON(a.Out, reports[0])
				}
				if err := writeJSON(a.Out, reports); err != nil {
					return err
				}
				return labErr
			}
			if len(reports) == 0 {
				fmt.Fprintln(a.Out, "No labs are running.")
			}
			for i, r := range reports {
				if i > 0 {
					fmt.Fprintln(a.Out)
				}
				writeInspection(a.Out, r)
			}
			return labErr
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// inspectLab observes a lab. With its file (recorded by up) the rules are shown
// as netlab wrote them and the lab's sysctls are read.
func inspectLab(ctx context.Context, d *kernel.Driver, lab string) (inspection, error) {
	out := inspection{Lab: lab}
	if err := d.CheckNetns(lab); err != nil {
		return out, err // from elsewhere, "host" would be another namespace
	}
	q := reconcile.Query{Lab: lab}
	if info, ok := d.LabInfo(lab); ok {
		out.File = info.File
		if _, desired, err := loadLab(info.File); err == nil && desired.Lab == lab {
			q.Sysctls, q.Tables, q.Iptables, q.DockerTables = desired.SysctlKeys(), desired.Tables, desired.Iptables, desired.DockerTables
		}
	}
	s, err := d.Observe(ctx, q)
	if err != nil {
		return out, err
	}
	namespaces := append([]string{reconcile.Host}, slices.Sorted(maps.Keys(s.Namespaces))...)
	for _, ns := range namespaces {
		rep := namespaceReport{Name: ns, Interfaces: []interfaceReport{}, Sysctls: map[string]string{}}
		for _, l := range s.Interfaces {
			if l.NS == ns {
				rep.Interfaces = append(rep.Interfaces, interfaceOf(s, l))
			}
		}
		slices.SortFunc(rep.Interfaces, func(a, b interfaceReport) int { return cmp.Compare(a.Index, b.Index) })
		if ns != reconcile.Host || len(rep.Interfaces) > 0 {
			if rep.Routes, err = d.Routes(ns); err != nil {
				return out, err
			}
		}
		for k, v := range s.Sysctls {
			if k.NS == ns {
				rep.Sysctls[k.Name()] = reconcile.NormalizeSysctlValue(v)
			}
		}
		if t := s.Tables[ns]; t != nil {
			nt := nftReport(t)
			rep.Table, rep.Rules, rep.Sets = nt.Table, nt.Rules, nt.Sets
		}
		rep.Iptables = iptablesReport(s.Iptables[ns])
		for _, family := range []string{reconcile.FamilyIP, reconcile.FamilyIP6} {
			if t := s.DockerTables[reconcile.TableKey{NS: ns, Family: family}]; t != nil {
				rep.DockerTables = append(rep.DockerTables, nftReport(t))
			}
		}
		for _, p := range s.Processes {
			if p.NS == ns {
				for _, pid := range p.PIDs {
					rep.Processes = append(rep.Processes, processReport{PID: pid, Command: p.Command})
				}
			}
		}
		slices.SortFunc(rep.Processes, func(a, b processReport) int { return cmp.Compare(a.PID, b.PID) })
		if ns == reconcile.Host && len(rep.Interfaces) == 0 && rep.Table == "" && len(rep.Processes) == 0 && len(rep.Sysctls) == 0 && len(rep.Iptables) == 0 && len(rep.DockerTables) == 0 {
			continue // the lab has nothing in the host
		}
		out.Namespaces = append(out.Namespaces, rep)
	}
	return out, nil
}

// nftReport lists a table's rules with their counters and its sets' elements.
func nftReport(t *reconcile.Table) tableReport {
	family := t.NftFamily()
	out := tableReport{Table: family + " " + t.Name}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			out.Rules = append(out.Rules, ruleReport{Chain: c.Name, Rule: r.TextIn(family), Packets: r.Packets, Bytes: r.Bytes})
		}
	}
	for _, set := range t.Sets {
		out.Sets = append(out.Sets, setReport{Kind: set.Kind(), Name: set.Name, Type: set.TypeName(), Elements: set.ElementTexts()})
	}
	return out
}

// iptablesReport lists a layout's policies and rules: ":FORWARD DROP",
// "-A FORWARD -j DOCKER-USER".
func iptablesReport(t *reconcile.Table) []ruleReport {
	if t == nil {
		return nil
	}
	var out []ruleReport
	for _, c := range t.Chains {
		if c.Policy != "" {
			out = append(out, ruleReport{Table: c.Table, Chain: c.Name, Rule: ":" + c.Name + " " + c.Policy})
		}
		for _, r := range c.Rules {
			out = append(out, ruleReport{Table: c.Table, Chain: c.Name, Rule: r.IptablesText(c.Name), Packets: r.Packets, Bytes: r.Bytes})
		}
	}
	return out
}

func interfaceOf(s *reconcile.State, l *reconcile.Interface) interfaceReport {
	r := interfaceReport{Name: l.Name, Index: l.Index, Kind: l.Kind, State: "down", MTU: l.MTU, MAC: l.MAC,
		Addresses: []string{}, Master: l.Master, Hairpin: l.Hairpin}
	if l.Up {
		r.State = "up"
	}
	for k := range s.Addrs {
		if k.InterfaceKey == l.InterfaceKey {
			r.Addresses = append(r.Addresses, k.Prefix.String())
		}
	}
	slices.Sort(r.Addresses)
	if l.Kind == reconcile.KindVeth && l.Peer != (reconcile.InterfaceKey{}) {
		r.Peer = &peer{Namespace: l.Peer.NS, Name: l.Peer.Name, Index: l.PeerIndex}
	}
	return r
}

// writeInspection prints a lab's state for a person, with what a terminal
// would act on (in a process's command line) escaped.
func writeInspection(out io.Writer, r inspection) {
	var b strings.Builder
	defer func() { io.WriteString(out, topology.PrintableLines(b.String())) }()
	w := &b
	fmt.Fprintf(w, "Lab %s", r.Lab)
	if r.File != "" {
		fmt.Fprintf(w, " (from %s)", r.File)
	}
	fmt.Fprintln(w)
	for _, ns := range r.Namespaces {
		fmt.Fprintf(w, "\n%s\n", ns.Name)
		if len(ns.Interfaces) > 0 {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, i := range ns.Interfaces {
				name := i.Name
				if i.Peer != nil {
					name += fmt.Sprintf("@if%d", i.Peer.Index)
				}
				var notes []string
				if i.Master != "" {
					notes = append(notes, "master "+i.Master)
				}
				if i.Hairpin {
					notes = append(notes, "hairpin")
				}
				if i.Peer != nil {
					notes = append(notes, fmt.Sprintf("peer %s:%s", i.Peer.Namespace, i.Peer.Name))
				}
				fmt.Fprintf(tw, "  %d: %s\t%s\t%s\tmtu %d\t%s\t%s\t%s\n", i.Index, name, i.Kind, i.State, i.MTU, i.MAC,
					strings.Join(i.Addresses, " "), strings.Join(notes, ", "))
			}
			tw.Flush()
		}
		if len(ns.Routes) > 0 {
			fmt.Fprintln(w, "  routes:")
			for _, rt := range ns.Routes {
				fmt.Fprintf(w, "    %s\n", rt)
			}
		}
		if len(ns.Sysctls) > 0 {
			fmt.Fprintln(w, "  sysctls:")
			for _, k := range slices.Sorted(maps.Keys(ns.Sysctls)) {
				fmt.Fprintf(w, "    %s = %s\n", k, ns.Sysctls[k])
			}
		}
		if ns.Table != "" {
			writeNftTable(w, tableReport{Table: ns.Table, Rules: ns.Rules, Sets: ns.Sets}, "")
		}
		for _, t := range ns.DockerTables {
			writeNftTable(w, t, " (Docker 29's layout; nft list table prints the same)")
		}
		if len(ns.Iptables) > 0 {
			fmt.Fprintln(w, "  iptables (Docker's layout; iptables-save prints the same):")
			for _, r := range ns.Iptables {
				if strings.HasPrefix(r.Rule, ":") {
					fmt.Fprintf(w, "    %-6s %s\n", r.Table, r.Rule)
					continue
				}
				fmt.Fprintf(w, "    %-6s %s  [%s, %s]\n", r.Table, r.Rule, reconcile.Plural(int(r.Packets), "packet"), reconcile.Plural(int(r.Bytes), "byte"))
			}
		}
		if len(ns.Processes) > 0 {
			fmt.Fprintln(w, "  processes:")
			for _, p := range ns.Processes {
				fmt.Fprintf(w, "    %d  %s\n", p.PID, p.Command)
			}
		}
	}
}

func writeNftTable(w io.Writer, t tableReport, note string) {
	fmt.Fprintf(w, "  nft table %s%s:\n", t.Table, note)
	for _, r := range t.Rules {
		fmt.Fprintf(w, "    %-15s %s  [%s, %s]\n", r.Chain, r.Rule, reconcile.Plural(int(r.Packets), "packet"), reconcile.Plural(int(r.Bytes), "byte"))
	}
	for _, set := range t.Sets {
		fmt.Fprintf(w, "    %s %s (type %s):\n", set.Kind, set.Name, set.Type)
		for _, e := range set.Elements {
			fmt.Fprintf(w, "      %s\n", e)
		}
	}
}
