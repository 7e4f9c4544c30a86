// Package packet prints captured frames one line each, as `tcpdump -n -e` does,
// and filters them with a small subset of tcpdump's filter language. It decodes
// with gopacket's layers and touches no kernel: `netlab capture` reads the
// frames (reconcile/kernel.OpenCapture) and hands them here.
package packet

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Line is one frame as `tcpdump -n -e` prints it:
//
//	12:00:01.000123 02:42:ac:11:00:03 > 02:42:ac:11:00:02, ethertype IPv4 (0x0800), length 98: 172.17.0.3 > 172.17.0.2: ICMP echo request, id 7, seq 1, length 64
func Line(data []byte, ci gopacket.CaptureInfo) string {
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
	var b strings.Builder
	b.WriteString(ci.Timestamp.Format("15:04:05.000000"))
	eth, ok := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !ok {
		fmt.Fprintf(&b, " not an Ethernet frame, length %d", ci.Length)
		return b.String()
	}
	fmt.Fprintf(&b, " %s > %s, ethertype %s (0x%04x), length %d: ", eth.SrcMAC, eth.DstMAC, eth.EthernetType, uint16(eth.EthernetType), ci.Length)
	b.WriteString(body(p))
	return b.String()
}

func body(p gopacket.Packet) string {
	if arp, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
		switch arp.Operation {
		case layers.ARPRequest:
			return fmt.Sprintf("Request who-has %s tell %s, length %d", net.IP(arp.DstProtAddress), net.IP(arp.SourceProtAddress), len(arp.Contents)+len(arp.Payload))
		case layers.ARPReply:
			return fmt.Sprintf("Reply %s is-at %s, length %d", net.IP(arp.SourceProtAddress), net.HardwareAddr(arp.SourceHwAddress), len(arp.Contents)+len(arp.Payload))
		}
		return "ARP"
	}
	var src, dst string
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		src, dst = ip.SrcIP.String(), ip.DstIP.String()
	} else if ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
		src, dst = ip.SrcIP.String(), ip.DstIP.String()
	} else {
		return fmt.Sprintf("%d bytes", len(p.Data()))
	}
	if t, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok {
		return fmt.Sprintf("%s.%d > %s.%d: Flags [%s], seq %d, win %d, length %d", src, t.SrcPort, dst, t.DstPort, tcpFlags(t), t.Seq, t.Window, len(t.Payload))
	}
	if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		return fmt.Sprintf("%s.%d > %s.%d: UDP, length %d", src, u.SrcPort, dst, u.DstPort, len(u.Payload))
	}
	if ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		return fmt.Sprintf("%s > %s: ICMP %s, length %d", src, dst, icmpText(ic), len(ic.Contents)+len(ic.Payload))
	}
	if ic, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
		return fmt.Sprintf("%s > %s: ICMP6, %s, length %d", src, dst, ic.TypeCode, len(ic.Contents)+len(ic.Payload))
	}
	return fmt.Sprintf("%s > %s: ip-proto", src, dst)
}

func icmpText(ic *layers.ICMPv4) string {
	switch ic.TypeCode.Type() {
	case layers.ICMPv4TypeEchoRequest:
		return fmt.Sprintf("echo request, id %d, seq %d", ic.Id, ic.Seq)
	case layers.ICMPv4TypeEchoReply:
		return fmt.Sprintf("echo reply, id %d, seq %d", ic.Id, ic.Seq)
	case layers.ICMPv4TypeDestinationUnreachable:
		return "destination unreachable, code " + strconv.Itoa(int(ic.TypeCode.Code()))
	case layers.ICMPv4TypeTimeExceeded:
		return "time exceeded in-transit"
	}
	return ic.TypeCode.String()
}

func tcpFlags(t *layers.TCP) string {
	var f string
	for _, x := range []struct {
		on bool
		c  string
	}{{t.FIN, "F"}, {t.SYN, "S"}, {t.RST, "R"}, {t.PSH, "P"}, {t.URG, "U"}} {
		if x.on {
			f += x.c
		}
	}
	if t.ACK {
		f += "."
	}
	if f == "" {
		f = "none"
	}
	return f
}

// Filter is a compiled filter expression (see Compile).
type Filter struct{ expr node }

// Match reports whether a frame passes the filter. A nil filter passes all.
func (f *Filter) Match(data []byte) bool {
	if f == nil || f.expr == nil {
		return true
	}
	return f.expr.match(decode(data))
}

// Compile reads a filter in a subset of tcpdump's syntax (pcap-filter(7)):
// primitives arp, ip, ip6, icmp, icmp6, tcp, udp, [src|dst] host ADDR,
// [src|dst] port N, [src|dst] net CIDR, joined by and (&&), or (||), not (!)
// and parentheses. netlab evaluates it itself: there is no libpcap.
func Compile(s string) (*Filter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	p := &parser{toks: tokenize(s)}
	n, err := p.or()
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", s, err)
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("filter %q: unexpected %q", s, p.toks[p.i])
	}
	return &Filter{expr: n}, nil
}
