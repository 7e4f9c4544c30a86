package packet

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// frame is what a filter looks at in a frame.
type frame struct {
	arp, ip4, ip6, tcp, udp, icmp, icmp6 bool
	src, dst                             netip.Addr
	sport, dport                         uint16
	hasPorts                             bool
}

func decode(data []byte) frame {
	var f frame
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.NoCopy)
	for _, l := range p.Layers() {
		switch x := l.(type) {
		case *layers.ARP:
			f.arp = true
			f.src, _ = netip.AddrFromSlice(x.SourceProtAddress)
			f.dst, _ = netip.AddrFromSlice(x.DstProtAddress)
		case *layers.IPv4:
			f.ip4 = true
			f.src, _ = netip.AddrFromSlice(x.SrcIP.To4())
			f.dst, _ = netip.AddrFromSlice(x.DstIP.To4())
		case *layers.IPv6:
			f.ip6 = true
			f.src, _ = netip.AddrFromSlice(x.SrcIP)
			f.dst, _ = netip.AddrFromSlice(x.DstIP)
		case *layers.TCP:
			f.tcp, f.hasPorts = true, true
			f.sport, f.dport = uint16(x.SrcPort), uint16(x.DstPort)
		case *layers.UDP:
			f.udp, f.hasPorts = true, true
			f.sport, f.dport = uint16(x.SrcPort), uint16(x.DstPort)
		case *layers.ICMPv4:
			f.icmp = true
		case *layers.ICMPv6:
			f.icmp6 = true
		}
	}
	return f
}

type node interface{ match(frame) bool }

type and struct{ a, b node }
type or struct{ a, b node }
type not struct{ a node }
type proto string
type host struct {
	dir  string // "", "src", "dst"
	addr netip.Addr
}
type network struct {
	dir    string
	prefix netip.Prefix
}
type port struct {
	dir string
	n   uint16
}

func (n and) match(f frame) bool { return n.a.match(f) && n.b.match(f) }
func (n or) match(f frame) bool  { return n.a.match(f) || n.b.match(f) }
func (n not) match(f frame) bool { return !n.a.match(f) }
func (p proto) match(f frame) bool {
	switch p {
	case "arp":
		return f.arp
	case "ip":
		return f.ip4
	case "ip6":
		return f.ip6
	case "tcp":
		return f.tcp
	case "udp":
		return f.udp
	case "icmp":
		return f.icmp
	case "icmp6":
		return f.icmp6
	}
	return false
}
func (h host) match(f frame) bool {
	return (h.dir != "dst" && f.src == h.addr) || (h.dir != "src" && f.dst == h.addr)
}
func (n network) match(f frame) bool {
	return (n.dir != "dst" && f.src.IsValid() && n.prefix.Contains(f.src)) || (n.dir != "src" && f.dst.IsValid() && n.prefix.Contains(f.dst))
}
func (p port) match(f frame) bool {
	return f.hasPorts && ((p.dir != "dst" && f.sport == p.n) || (p.dir != "src" && f.dport == p.n))
}

func tokenize(s string) []string {
	s = strings.NewReplacer("(", " ( ", ")", " ) ", "!", " ! ").Replace(s)
	return strings.Fields(s)
}

type parser struct {
	toks []string
	i    int
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *parser) next() string {
	t := p.peek()
	p.i++
	return t
}

func (p *parser) or() (node, error) {
	a, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peek() == "or" || p.peek() == "||" {
		p.next()
		b, err := p.and()
		if err != nil {
			return nil, err
		}
		a = or{a, b}
	}
	return a, nil
}

func (p *parser) and() (node, error) {
	a, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peek() == "and" || p.peek() == "&&" {
		p.next()
		b, err := p.unary()
		if err != nil {
			return nil, err
		}
		a = and{a, b}
	}
	return a, nil
}

func (p *parser) unary() (node, error) {
	switch t := p.next(); t {
	case "":
		return nil, errors.New("unexpected end")
	case "not", "!":
		a, err := p.unary()
		return not{a}, err
	case "(":
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, errors.New("missing )")
		}
		return a, nil
	case "arp", "ip", "ip6", "tcp", "udp", "icmp", "icmp6":
		switch p.peek() {
		case "src", "dst", "host", "net", "port": // "tcp port 80" is "tcp and port 80"
			b, err := p.unary()
			return and{proto(t), b}, err
		}
		return proto(t), nil
	case "src", "dst":
		return p.qualified(t, p.next())
	default:
		return p.qualified("", t)
	}
}

func (p *parser) qualified(dir, kind string) (node, error) {
	arg := p.next()
	switch kind {
	case "host":
		a, err := netip.ParseAddr(arg)
		if err != nil {
			return nil, fmt.Errorf("host %q: not an address", arg)
		}
		return host{dir, a}, nil
	case "net":
		n, err := netip.ParsePrefix(arg)
		if err != nil {
			return nil, fmt.Errorf("net %q: not a prefix (ADDR/LEN)", arg)
		}
		return network{dir, n.Masked()}, nil
	case "port":
		n, err := strconv.ParseUint(arg, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port %q: not a port number", arg)
		}
		return port{dir, uint16(n)}, nil
	}
	return nil, fmt.Errorf("unknown primitive %q (netlab reads: arp ip ip6 icmp icmp6 tcp udp, [src|dst] host|net|port, and or not ( ))", kind)
}
