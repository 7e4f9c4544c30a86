package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/reconcile/probe"
	"netlab/topology"
)

func (a *app) traceCmd() *cobra.Command {
	var (
		labName          string
		tcp, udp, icmpOn bool
		output           string
		wait             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "trace [--lab NAME] FROM TO[:PORT] [--tcp|--udp|--icmp] [-o text|json]",
		Short: "Send one probe and explain where it goes and why",
		Long: `Send one packet from the namespace FROM to TO and explain its path and its
reply's: each namespace it crosses with the routing decision there, each bridge
with the port it leaves by, each nftables rule that decided (in netlab's tables
and in anyone else's, named as such) and every address translation, from the
kernel's own nftables trace events. The verdict says whether it was delivered
(and the source the far end saw), dropped (where, by which rule, in whose
table) or had no route.

FROM is a namespace of a running lab as its file names it, or "host". TO is an
address, a namespace's name or "host" (its address on FROM's network), with a
port for tcp (the default with a port) and udp; without a port the probe is an
ICMP echo request.

While it runs, netlab adds a table "netlab_trace_LAB" to each namespace of the
lab (and the host) that marks its own probe only; it is removed on exit and on
Ctrl-C, and the next up or down of the lab removes it when netlab was killed.

  netlab trace lan 192.0.2.1:8000         # a published port, from the LAN
  netlab trace c2 web                      # ping, container to container
  netlab trace lan 172.17.0.2:81 -o json   # an unpublished port`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("lab") {
				if err := checkLabArg(labName); err != nil {
					return err
				}
			}
			if output != "text" && output != "json" {
				return fmt.Errorf("unknown output format %q: use text or json", output)
			}
			proto, err := traceProto(tcp, udp, icmpOn)
			if err != nil {
				return err
			}
			return a.trace(cmd.Context(), labName, args[0], args[1], proto, wait, output)
		},
	}
	cmd.Flags().StringVar(&labName, "lab", "", "the lab FROM belongs to (needed when several labs run)")
	cmd.Flags().BoolVar(&tcp, "tcp", false, "send a TCP SYN (the default with a port)")
	cmd.Flags().BoolVar(&udp, "udp", false, "send a UDP datagram")
	cmd.Flags().BoolVar(&icmpOn, "icmp", false, "send an ICMP echo request (the default without a port)")
	cmd.Flags().DurationVar(&wait, "wait", 900*time.Millisecond, "how long to wait for the answer (a TCP SYN is sent again after 1s)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (see docs/trace.schema.json)")
	return cmd
}

// traceProto is the probe's protocol the flags choose ("": by the target).
func traceProto(tcp, udp, icmp bool) (string, error) {
	proto := ""
	for _, p := range []struct {
		on   bool
		name string
	}{{tcp, "tcp"}, {udp, "udp"}, {icmp, "icmp"}} {
		if p.on {
			if proto != "" {
				return "", errors.New("choose one of --tcp, --udp and --icmp")
			}
			proto = p.name
		}
	}
	return proto, nil
}

// trace sends the probe, holding the lab's lock (so that no up or down
// changes the lab under it, and a later one removes what a killed trace left),
// and prints what happened to it.
func (a *app) trace(ctx context.Context, labName, from, to, proto string, wait time.Duration, output string) error {
	lab, err := a.traceLab(ctx, labName, from, to, proto)
	if err != nil {
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
	// Read again under the lock: an up or down may have changed the lab while
	// this run waited for it.
	spec, err := traceSpec(ctx, d, lab, from, to, proto)
	if err != nil {
		return err
	}
	spec.Wait = wait
	t, err := d.Trace(ctx, *spec)
	if err != nil {
		return err
	}
	if output == "json" {
		enc := json.NewEncoder(a.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(t)
	}
	reconcile.RenderTrace(a.Out, t)
	return nil
}

// traceLab finds the lab FROM and TO are in (and that they are), with a
// driver of its own that it closes before the lock is waited for: its handles
// on the lab's namespaces would keep them alive while the up or down holding
// the lock deletes them, and that run would fail waiting for their interfaces
// to go.
func (a *app) traceLab(ctx context.Context, labName, from, to, proto string) (string, error) {
	d, err := a.openKernel()
	if err != nil {
		return "", err
	}
	defer d.Close()
	spec, err := traceSpec(ctx, d, labName, from, to, proto)
	if err != nil {
		return "", err
	}
	return spec.Lab, nil
}

// traceSpec resolves FROM and TO of `netlab trace` in a running lab.
func traceSpec(ctx context.Context, d *kernel.Driver, labName, from, to, proto string) (*kernel.TraceSpec, error) {
	lab, fromNS, err := findTraceNode(d, labName, from)
	if err != nil {
		return nil, err
	}
	info, _ := d.LabInfo(lab)
	observed, err := d.Observe(ctx, reconcile.Query{Lab: lab})
	if err != nil {
		return nil, err
	}
	spec := &kernel.TraceSpec{Lab: lab, From: fromNS, To: to, Names: map[string]string{reconcile.Host: topology.HostName},
		Namespaces: []string{reconcile.Host}}
	for _, ns := range slices.Sorted(maps.Keys(observed.Namespaces)) {
		spec.Namespaces = append(spec.Namespaces, ns)
		spec.Names[ns] = strings.TrimPrefix(ns, info.Prefix)
	}
	target, port := to, ""
	if i := strings.LastIndex(to, ":"); i >= 0 {
		target, port = to[:i], to[i+1:]
	}
	if port != "" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("invalid port %q in %q", port, to)
		}
		spec.Port = uint16(p)
	}
	switch {
	case proto == "":
		proto = "icmp"
		if spec.Port != 0 {
			proto = "tcp"
		}
	case proto == "icmp" && spec.Port != 0:
		return nil, fmt.Errorf("an ICMP echo has no port: %s", to)
	case proto != "icmp" && spec.Port == 0:
		return nil, fmt.Errorf("a %s probe needs a port: %s:PORT", proto, to)
	}
	spec.Protocol = proto
	if addr, err := netip.ParseAddr(target); err == nil {
		spec.Dst = addr
	} else {
		ns := reconcile.Host
		if target != topology.HostName {
			ns = info.Prefix + target
			if _, ok := observed.Namespaces[ns]; !ok {
				return nil, fmt.Errorf("%q is neither an address nor a namespace of lab %s", target, lab)
			}
		}
		if spec.Dst, err = addressFor(observed, ns, fromNS); err != nil {
			return nil, err
		}
	}
	if !spec.Dst.Is4() {
		return nil, fmt.Errorf("netlab trace sends IPv4 probes only; %s is not an IPv4 address", spec.Dst)
	}
	return spec, nil
}

// addressFor picks the address of namespace ns that from reaches: one on a
// network from has an address on, else its first IPv4 address.
func addressFor(s *reconcile.State, ns, from string) (netip.Addr, error) {
	var mine, theirs []netip.Prefix
	for _, k := range sortedAddrKeys(s) {
		if !k.Prefix.Addr().Is4() {
			continue
		}
		switch k.NS {
		case ns:
			theirs = append(theirs, k.Prefix)
		case from:
			mine = append(mine, k.Prefix)
		}
	}
	for _, t := range theirs {
		for _, m := range mine {
			if m.Masked() == t.Masked() {
				return t.Addr(), nil
			}
		}
	}
	if len(theirs) == 0 {
		return netip.Addr{}, fmt.Errorf("%s has no IPv4 address in the lab", ns)
	}
	return theirs[0].Addr(), nil
}

// findTraceNode finds the lab and kernel namespace of FROM: a namespace name
// (as exec's NODE), or "host" of the one running lab (or of --lab).
func findTraceNode(d *kernel.Driver, labName, node string) (lab, ns string, err error) {
	if node != topology.HostName {
		ns, err := findNode(d, labName, node)
		if err != nil {
			return "", "", err
		}
		if labName != "" {
			return labName, ns, nil
		}
		labs, err := d.Labs()
		if err != nil {
			return "", "", err
		}
		for _, l := range labs {
			info, _ := d.LabInfo(l)
			observed, err := d.Observe(context.Background(), reconcile.Query{Lab: l})
			if err == nil && info.Prefix+node == ns {
				if _, ok := observed.Namespaces[ns]; ok {
					return l, ns, nil
				}
			}
		}
		return "", "", fmt.Errorf("no running lab has a namespace %q", node)
	}
	if labName != "" {
		return labName, reconcile.Host, nil
	}
	labs, err := d.Labs()
	if err != nil {
		return "", "", err
	}
	switch len(labs) {
	case 0:
		return "", "", errors.New("no labs are running")
	case 1:
		return labs[0], reconcile.Host, nil
	}
	return "", "", fmt.Errorf("several labs are running (%s): choose one with --lab", strings.Join(labs, ", "))
}

// traceHint is the `netlab trace` command that explains a check that failed:
// the same source and target (a URL's host and port), the same protocol.
func traceHint(lab string, c *topology.Check) string {
	to := c.Target
	switch c.Kind {
	case "ping", "traceroute", "tcp":
	case "http":
		u, err := url.Parse(c.Target)
		if err != nil {
			return ""
		}
		to = u.Hostname() + ":" + cmp.Or(u.Port(), "80")
	default:
		return ""
	}
	return fmt.Sprintf("netlab trace --lab %s %s %s", lab, c.From, to)
}

// printTraceHints says, for each check that failed, the `netlab trace` that
// shows why.
func (a *app) printTraceHints(lab *topology.Lab, results []probe.Result) {
	for i, r := range results {
		if r.Pass || r.NotRun || i >= len(lab.Checks) {
			continue
		}
		if hint := traceHint(lab.Name, lab.Checks[i]); hint != "" {
			fmt.Fprintf(a.Err, "hint: to see where %s goes: %s\n", topology.Printable(r.Name), topology.Printable(hint))
		}
	}
}
