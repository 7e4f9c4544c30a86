package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/spf13/cobra"

	"netlab/packet"
	"netlab/reconcile"
	"netlab/reconcile/kernel"
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
			return a.capture(cmd.Context(), captureRequest{lab: labName, where: args[0], file: file, filter: filter, count: count})
		},
	}
	cmd.Flags().StringVar(&labName, "lab", "", "the lab the namespace belongs to (needed when several labs have it)")
	cmd.Flags().StringVarP(&file, "write", "w", "", "write the packets to a pcap file (- for standard output) instead of printing them")
	cmd.Flags().IntVarP(&count, "count", "c", 0, "stop after this many packets (0: until Ctrl-C)")
	cmd.Flags().StringVar(&filter, "filter", "", "capture only what matches (a subset of tcpdump's filter syntax)")
	return cmd
}

// captureRequest is what `netlab capture` was asked.
type captureRequest struct {
	lab, where, file, filter string
	count                    int
}

// capture opens a packet socket on the interface and prints or writes what
// it reads until the count is reached or ctx ends (Ctrl-C).
func (a *app) capture(ctx context.Context, req captureRequest) error {
	node, ifname, ok := strings.Cut(req.where, ":")
	if !ok || node == "" || ifname == "" {
		return fmt.Errorf("capture %q: want NS:IF, as web:eth0 or host:docker0", req.where)
	}
	match, err := packet.Compile(req.filter)
	if err != nil {
		return err
	}
	d, err := a.openKernel()
	if err != nil {
		return err
	}
	defer d.Close()
	_, ns, err := findTraceNode(d, req.lab, node)
	if err != nil {
		return err
	}
	h, err := d.OpenCapture(ns, ifname)
	if err != nil {
		return err
	}
	// Ctrl-C closes the socket: the read in progress returns, and what was
	// captured is flushed.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		h.Close()
	}()
	w, closeFile, err := openPcap(req.file, h.GetCaptureLength(), a.Out)
	if err != nil {
		return err
	}
	defer closeFile()
	where := topology.Printable(node + ":" + ifname)
	if ns == reconcile.Host {
		where = "host:" + topology.Printable(ifname)
	}
	fmt.Fprintf(a.Err, "netlab: capturing on %s", where)
	switch req.file {
	case "":
	case "-":
		fmt.Fprint(a.Err, " into standard output")
	default:
		fmt.Fprintf(a.Err, " into %s", topology.Printable(req.file))
	}
	fmt.Fprintln(a.Err, "; Ctrl-C stops")
	n, err := a.readPackets(ctx, h, match, w, req.count)
	if err != nil {
		return fmt.Errorf("capture on %s: %w", where, err)
	}
	fmt.Fprintf(a.Err, "netlab: %s captured\n", reconcile.Plural(n, "packet"))
	return nil
}

// openPcap creates the pcap file to write to, when one is asked for (nil:
// print the packets); "-" writes it to stdout (capture -w - | tcpdump -r -).
func openPcap(file string, snaplen int, stdout io.Writer) (*pcapgo.Writer, func(), error) {
	if file == "" {
		return nil, func() {}, nil
	}
	out, closeOut := stdout, func() {}
	if file != "-" {
		f, err := createOutput(file, 0o600)
		if err != nil {
			return nil, nil, err
		}
		out, closeOut = f, func() { f.Close() }
	}
	w := pcapgo.NewWriterNanos(out)
	if err := w.WriteFileHeader(uint32(snaplen), layers.LinkTypeEthernet); err != nil {
		closeOut()
		return nil, nil, err
	}
	return w, closeOut, nil
}

// readPackets reads packets until count of them matched (0: no limit) or
// ctx ends, writing each to w, or printing it when w is nil.
func (a *app) readPackets(ctx context.Context, h *kernel.Capture, match *packet.Filter, w *pcapgo.Writer, count int) (int, error) {
	n := 0
	for count <= 0 || n < count {
		data, ci, err := h.ReadPacketData()
		if err != nil {
			if ctx.Err() != nil {
				return n, nil
			}
			return n, err
		}
		if !match.Match(data) {
			continue
		}
		n++
		if w != nil {
			if err := w.WritePacket(ci, data); err != nil {
				return n, err
			}
			continue
		}
		fmt.Fprintln(a.Out, packet.Line(data, ci))
	}
	return n, nil
}
