package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/spf13/cobra"

	"netlab/packet"
	"netlab/reconcile"
	"netlab/topology"
)

func (a *app) captureCmd() *cobra.Command {
	var (
		labName, file, filter string
		count                 int
	)
	cmd := &cobra.Command{
		Use:   "capture [--lab NAME] NS:IF [-w FILE.pcap] [-c COUNT] [--filter EXPR]",
		Short: "Capture the packets of an interface of a lab namespace",
		Long: `Capture on an interface of a running lab: NS:IF, where NS is a namespace as the
lab file names it or "host" (a bridge, a veth's host end, the host's own
interfaces). Prints one line per packet, as "tcpdump -n -e" does, or with -w
writes a pcap file that tcpdump and Wireshark read. Ends after -c packets, or on
Ctrl-C. It opens a packet socket inside the namespace (no tcpdump needed) and
leaves nothing behind.

--filter takes a subset of tcpdump's filter language, evaluated by netlab:
arp ip ip6 icmp icmp6 tcp udp, [src|dst] host ADDR, [src|dst] net CIDR,
[src|dst] port N, joined by and, or, not and parentheses.

  netlab capture host:docker0                     # what crosses the bridge
  netlab capture web:eth0 -c 4 --filter icmp
  netlab capture lan:eth0 -w /tmp/lan.pcap        # then: tcpdump -r /tmp/lan.pcap`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("lab") {
				if err := checkLabArg(labName); err != nil {
					return err
				}
			}
			node, ifname, ok := strings.Cut(args[0], ":")
			if !ok || node == "" || ifname == "" {
				return fmt.Errorf("capture %q: want NS:IF, as web:eth0 or host:docker0", args[0])
			}
			match, err := packet.Compile(filter)
			if err != nil {
				return err
			}
			d, err := a.openKernel()
			if err != nil {
				return err
			}
			defer d.Close()
			_, ns, err := findTraceNode(d, labName, node)
			if err != nil {
				return err
			}
			h, err := d.OpenCapture(ns, ifname)
			if err != nil {
				return err
			}
			// Ctrl-C closes the socket: the read in progress returns, and
			// what was captured is flushed.
			ctx := cmd.Context()
			done := make(chan struct{})
			defer close(done)
			go func() {
				select {
				case <-ctx.Done():
				case <-done:
				}
				h.Close()
			}()
			var w *pcapgo.Writer
			if file != "" {
				f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return err
				}
				defer f.Close()
				w = pcapgo.NewWriterNanos(f)
				if err := w.WriteFileHeader(uint32(h.GetCaptureLength()), layers.LinkTypeEthernet); err != nil {
					return err
				}
			}
			where := topology.Printable(node + ":" + ifname)
			if ns == reconcile.Host {
				where = "host:" + topology.Printable(ifname)
			}
			fmt.Fprintf(a.Err, "netlab: capturing on %s", where)
			if file != "" {
				fmt.Fprintf(a.Err, " into %s", topology.Printable(file))
			}
			fmt.Fprintln(a.Err, "; Ctrl-C stops")
			n := 0
			for count <= 0 || n < count {
				data, ci, err := h.ReadPacketData()
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					return fmt.Errorf("capture on %s: %w", where, err)
				}
				if !match.Match(data) {
					continue
				}
				n++
				if w != nil {
					if err := w.WritePacket(ci, data); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintln(a.Out, packet.Line(data, ci))
			}
			fmt.Fprintf(a.Err, "netlab: %s captured\n", reconcile.Plural(n, "packet"))
			return nil
		},
	}
	cmd.Flags().StringVar(&labName, "lab", "", "the lab the namespace belongs to (needed when several labs have it)")
	cmd.Flags().StringVarP(&file, "write", "w", "", "write the packets to a pcap file instead of printing them")
	cmd.Flags().IntVarP(&count, "count", "c", 0, "stop after this many packets (0: until Ctrl-C)")
	cmd.Flags().StringVar(&filter, "filter", "", "capture only what matches (a subset of tcpdump's filter syntax)")
	return cmd
}
