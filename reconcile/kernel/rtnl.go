package kernel

// The few rtnetlink requests that the netlink library has no call for, written
// by hand because they are the hot path of a large lab: a veth pair created with
// everything the kernel accepts at creation, interface attributes set by name
// (no lookup of the index first), and a link dump that decodes only what netlab
// reads, a namespace's IPv6 state from its lo among it. Each is one request on
// the namespace's own socket.

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// rtextFilterSkipStats is RTEXT_FILTER_SKIP_STATS (linux/rtnetlink.h).
const rtextFilterSkipStats = 1 << 3

// devconfDisableIPv6 is DEVCONF_DISABLE_IPV6, the index of disable_ipv6 in the
// IFLA_INET6_CONF array of an interface (linux/ipv6.h).
const devconfDisableIPv6 = 26

// vethSpec is one end of a veth pair as created.
type vethSpec struct {
	name   string
	netns  int // namespace file descriptor the end is created in
	mtu    int
	mac    net.HardwareAddr
	master int // ifindex of the bridge (in the end's namespace); 0: none
	index  int // the ifindex to create it with (see Driver.newIndex); 0: the kernel's choice
}

// addVeth creates a veth pair in one request sent on sock, both ends down: main
// with its master, peer in its own namespace. Both ends get one queue each way: a
// veth otherwise gets one per CPU and the kernel cuts the real count back to
// one right after registering it, which waits for an RCU grace period per end
// (some 40% of the cost of a veth on a 2-CPU machine). The caller marks the ends
// and brings them up (see Driver.createVeth for the order).
//
// Equivalent to: ip link add MAIN index N netns NS [txqueuelen 0] [mtu M] [address A] numtxqueues 1 numrxqueues 1 [master BR]
// type veth peer name PEER index N netns NS [mtu M] [address A] numtxqueues 1 numrxqueues 1
func addVeth(sock *conn, main, peer vethSpec) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(main.index)
	req.AddData(msg)
	for _, a := range endAttrs(main) {
		req.AddData(a)
	}
	if main.master != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(main.master))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peerMsg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	peerMsg.Index = int32(peer.index) // honoured by the kernel when the main end's is given too
	peerAttr := data.AddRtAttr(nl.VETH_INFO_PEER, peerMsg.Serialize())
	for _, a := range endAttrs(peer) {
		peerAttr.AddChild(a)
	}
	req.AddData(info)
	return sock.request(req, nil)
}

func endAttrs(e vethSpec) []*nl.RtAttr {
	attrs := []*nl.RtAttr{
		nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(e.name)),
		nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(e.netns))),
		nl.NewRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1)),
		nl.NewRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1)),
	}
	if e.master != 0 { // a bridge port's transmit queue length is 0, as Docker sets its host ends'
		attrs = append(attrs, nl.NewRtAttr(unix.IFLA_TXQLEN, nl.Uint32Attr(0)))
	}
	if e.mtu != 0 {
		attrs = append(attrs, nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(e.mtu))))
	}
	if e.mac != nil {
		attrs = append(attrs, nl.NewRtAttr(unix.IFLA_ADDRESS, e.mac))
	}
	return attrs
}

// setIfaceByName writes an interface's alias (unless "") and, with up, brings it
// up, in one request that names the interface (the kernel looks it up; no round
// trip to learn its index first).
//
// Equivalent to: ip link set dev NAME [alias ALIAS] [up]
func setIfaceByName(sock *conn, name, alias string, up bool) error {
	req := linkByName(unix.RTM_SETLINK, name, up)
	if alias != "" {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFALIAS, []byte(alias)))
	}
	return sock.request(req, nil)
}

// linkByName starts a request of type typ (RTM_SETLINK, or RTM_NEWLINK for
// attributes of the interface's kind) on the interface called name, bringing it
// up with up; the caller adds the attributes to set.
func linkByName(typ int, name string, up bool) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(typ, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	if up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	return req
}

// loopback is what a namespace's lo tells about the namespace: the lab marker
// (its alias), whether it is up, and whether IPv6 is on. Turning IPv6 off for
// all interfaces (net.ipv6.conf.all.disable_ipv6) turns it off on lo and for
// interfaces made later, so lo's own disable_ipv6 stands for the namespace's.
type loopback struct {
	alias string
	up    bool
	ipv6  bool
}

// readLoopback reads lo with one request.
//
// Equivalent to: ip -d link show lo; sysctl net.ipv6.conf.lo.disable_ipv6
func readLoopback(sock *conn) (loopback, error) {
	l, err := getIfaceRow(sock, "lo")
	return l.loopback(), err
}

// getIfaceRow reads one interface by name; an absent one is an error that
// isNotFound recognises.
//
// Equivalent to: ip -d link show NAME
func getIfaceRow(sock *conn, name string) (ifaceRow, error) {
	req := linkRequest(0)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	var links []ifaceRow
	err := sock.request(req, func(m []byte) error {
		l, err := parseIfaceRow(m)
		links = append(links, l)
		return err
	})
	if err != nil {
		return ifaceRow{}, err
	}
	if len(links) != 1 {
		return ifaceRow{}, fmt.Errorf("read %s: %d answers", name, len(links))
	}
	return links[0], nil
}

// ifaceRow is one row of a link dump (RTM_NEWLINK): an interface, with only what
// netlab reads.
type ifaceRow struct {
	index     int
	name      string
	alias     string
	kind      string // "veth", "bridge", ...; "device" for lo and others without a kind
	up        bool
	master    int // ifindex of its bridge; 0 none
	mtu       int
	mac       string
	peerIndex int // a veth's peer's ifindex (IFLA_LINK)
	peerNsid  int // the peer's namespace id as seen from here; -1: same namespace
	ipv6      bool
	qdisc     string // the kind of its root qdisc ("noqueue")

	snoopingOff bool // a bridge with multicast snooping off
	noSnooping  bool // a bridge of a kernel built without multicast snooping
}

func (l ifaceRow) loopback() loopback { return loopback{alias: l.alias, up: l.up, ipv6: l.ipv6} }

// dumpIfaceRows lists the interfaces of the socket's namespace with one dump. The
// netlink library's LinkList decodes every attribute of every interface (its
// statistics among them); a thousand namespaces' observation spent most of its
// time there.
//
// Equivalent to: ip -d link show
func dumpIfaceRows(sock *conn) ([]ifaceRow, error) {
	return retryDump(func() ([]ifaceRow, error) {
		var links []ifaceRow
		err := sock.request(linkRequest(unix.NLM_F_DUMP), func(m []byte) error {
			l, err := parseIfaceRow(m)
			links = append(links, l)
			return err
		})
		return links, err
	})
}

// linkRequest is a request for one interface or, with NLM_F_DUMP, all of them,
// without their statistics (which the kernel would gather and send).
func linkRequest(flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, flags)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(rtextFilterSkipStats)))
	return req
}

func parseIfaceRow(m []byte) (ifaceRow, error) {
	if len(m) < unix.SizeofIfInfomsg {
		return ifaceRow{}, fmt.Errorf("short link message")
	}
	info := nl.DeserializeIfInfomsg(m)
	l := ifaceRow{index: int(info.Index), up: info.Flags&unix.IFF_UP != 0, peerNsid: -1, kind: "device"}
	err := eachAttr(m[info.Len():], func(typ uint16, v []byte) (err error) {
		switch typ {
		case unix.IFLA_IFNAME:
			l.name = string(trimNul(v))
		case unix.IFLA_IFALIAS:
			l.alias = string(trimNul(v))
		case unix.IFLA_MASTER:
			l.master = int(uint32Attr(v))
		case unix.IFLA_MTU:
			l.mtu = int(uint32Attr(v))
		case unix.IFLA_ADDRESS:
			l.mac = net.HardwareAddr(v).String()
		case unix.IFLA_LINK:
			l.peerIndex = int(uint32Attr(v))
		case unix.IFLA_QDISC:
			l.qdisc = string(trimNul(v))
		case unix.IFLA_LINK_NETNSID:
			l.peerNsid = int(int32(uint32Attr(v)))
		case unix.IFLA_LINKINFO:
			return eachAttr(v, func(typ uint16, v []byte) error {
				switch typ {
				case nl.IFLA_INFO_KIND:
					l.kind = string(trimNul(v))
				case nl.IFLA_INFO_DATA: // after the kind, which says how to read it
					if l.kind == "bridge" {
						l.snoopingOff, l.noSnooping = bridgeSnooping(v)
					}
				}
				return nil
			})
		case unix.IFLA_AF_SPEC:
			l.ipv6, err = ipv6Enabled(v)
		}
		return err
	})
	return l, err
}

// bridgeSnooping reads a bridge's IFLA_INFO_DATA: whether multicast snooping is
// off, or absent: a kernel built without it sends no such attribute (and
// ignores it when set).
func bridgeSnooping(data []byte) (off, absent bool) {
	absent = true
	eachAttr(data, func(typ uint16, v []byte) error {
		if typ == nl.IFLA_BR_MCAST_SNOOPING && len(v) == 1 {
			off, absent = v[0] == 0, false
		}
		return nil
	})
	return off, absent
}

// setBridgeByName sets a bridge's multicast snooping and, with up, brings it up
// after, in one request that names the bridge: the kernel applies the bridge's
// own attributes before the interface's flags.
//
// Equivalent to: ip link set dev NAME [up] type bridge mcast_snooping 0|1
func setBridgeByName(sock *conn, name string, snooping, up bool) error {
	req := linkByName(unix.RTM_NEWLINK, name, up)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	on := byte(0)
	if snooping {
		on = 1
	}
	data.AddRtAttr(nl.IFLA_BR_MCAST_SNOOPING, []byte{on})
	req.AddData(info)
	return sock.request(req, nil)
}

// ipv6Enabled reads disable_ipv6 from an IFLA_AF_SPEC attribute; no IPv6 part
// (IPv6 not built into the kernel) reads as off.
func ipv6Enabled(afSpec []byte) (on bool, err error) {
	err = eachAttr(afSpec, func(family uint16, v []byte) error {
		if family != unix.AF_INET6 {
			return nil
		}
		return eachAttr(v, func(typ uint16, v []byte) error {
			if typ == unix.IFLA_INET6_CONF && len(v) >= 4*(devconfDisableIPv6+1) {
				on = binary.NativeEndian.Uint32(v[4*devconfDisableIPv6:]) == 0
			}
			return nil
		})
	})
	return on, err
}

// eachAttr calls f with the type (its nested and byte-order flags cleared) and
// the value of each netlink attribute in b, until f returns an error. Unlike
// nl.ParseRouteAttr it allocates nothing: the dumps of a thousand namespaces
// carry some hundred thousand attributes, read on every observation.
func eachAttr(b []byte, f func(typ uint16, v []byte) error) error {
	for len(b) >= unix.SizeofRtAttr {
		size := int(binary.NativeEndian.Uint16(b[0:2]))
		if size < unix.SizeofRtAttr || size > len(b) {
			return fmt.Errorf("netlink: malformed attribute (%d bytes of %d)", size, len(b))
		}
		if err := f(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[unix.SizeofRtAttr:size]); err != nil {
			return err
		}
		b = b[min(nlmAlign(size), len(b)):]
	}
	return nil
}

// uint32Attr is a 32-bit attribute in the host's byte order; a shorter one
// (which the kernel never sends) reads as 0.
func uint32Attr(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(v)
}

func trimNul(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// addrEntry is an interface address as an address dump describes it.
type addrEntry struct {
	index  int
	prefix netip.Prefix
}

// dumpAddrs lists the IPv4 addresses of the socket's namespace and, with ipv6,
// the IPv6 ones: a dump of each family.
//
// Equivalent to: ip addr show
func dumpAddrs(sock *conn, ipv6 bool) ([]addrEntry, error) {
	return retryDump(func() ([]addrEntry, error) {
		var addrs []addrEntry
		err := dumpFamilies(sock, unix.RTM_GETADDR, ipv6, func(family int) nl.NetlinkRequestData { return nl.NewIfAddrmsg(family) }, func(m []byte) error {
			if len(m) < unix.SizeofIfAddrmsg {
				return fmt.Errorf("short address message")
			}
			msg := nl.DeserializeIfAddrmsg(m)
			// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the same,
			// or the far end's on a point-to-point link.
			var local, address netip.Addr
			err := eachAttr(m[unix.SizeofIfAddrmsg:], func(typ uint16, v []byte) error {
				switch typ {
				case unix.IFA_LOCAL:
					local, _ = netip.AddrFromSlice(v)
				case unix.IFA_ADDRESS:
					address, _ = netip.AddrFromSlice(v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			ip := local
			if !ip.IsValid() {
				ip = address
			}
			if ip.IsValid() {
				addrs = append(addrs, addrEntry{index: int(msg.Index), prefix: netip.PrefixFrom(ip.Unmap(), int(msg.Prefixlen))})
			}
			return nil
		})
		return addrs, err
	})
}

// routeEntry is a route as a route dump describes it, with what netlab reads.
type routeEntry struct {
	family    int
	protocol  int
	scope     int
	typ       int
	index     int          // the output interface (RTA_OIF)
	to        netip.Prefix // the destination; length 0 for a default route
	via       netip.Addr
	src       netip.Addr // the preferred source (RTA_PREFSRC)
	metric    int
	multipath bool
}

// dumpMainRoutes lists the IPv4 routes of the main table of the socket's
// namespace and, with ipv6, the IPv6 ones: a dump of each family, in which the
// other tables' routes are skipped undecoded.
//
// Equivalent to: ip route show; ip -6 route show
func dumpMainRoutes(sock *conn, ipv6 bool) ([]routeEntry, error) {
	return retryDump(func() ([]routeEntry, error) {
		var routes []routeEntry
		err := dumpFamilies(sock, unix.RTM_GETROUTE, ipv6, func(family int) nl.NetlinkRequestData { return &nl.RtMsg{RtMsg: unix.RtMsg{Family: uint8(family)}} }, func(m []byte) error {
			if len(m) < unix.SizeofRtMsg {
				return fmt.Errorf("short route message")
			}
			msg := nl.DeserializeRtMsg(m)
			if msg.Family != unix.AF_INET && msg.Family != unix.AF_INET6 || msg.Table != unix.RT_TABLE_MAIN {
				return nil // multicast routing, other tables (local, ids past 255)
			}
			r := routeEntry{family: int(msg.Family), protocol: int(msg.Protocol), scope: int(msg.Scope), typ: int(msg.Type)}
			r.to = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if msg.Family == unix.AF_INET6 {
				r.to = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			err := eachAttr(m[unix.SizeofRtMsg:], func(typ uint16, v []byte) error {
				switch typ {
				case unix.RTA_DST:
					if ip, ok := netip.AddrFromSlice(v); ok {
						r.to = netip.PrefixFrom(ip.Unmap(), int(msg.Dst_len))
					}
				case unix.RTA_OIF:
					r.index = int(uint32Attr(v))
				case unix.RTA_GATEWAY:
					ip, _ := netip.AddrFromSlice(v)
					r.via = ip.Unmap()
				case unix.RTA_PREFSRC:
					ip, _ := netip.AddrFromSlice(v)
					r.src = ip.Unmap()
				case unix.RTA_PRIORITY:
					r.metric = int(uint32Attr(v))
				case unix.RTA_MULTIPATH:
					r.multipath = true
				}
				return nil
			})
			routes = append(routes, r)
			return err
		})
		return routes, err
	})
}

// dumpFamilies dumps addresses or routes of IPv4, then (with ipv6) of IPv6,
// calling each with every message: two dumps, not one of AF_UNSPEC, because the kernel
// answers AF_UNSPEC by dumping each family in turn under the rtnl lock
// (rtnl_dump_all), while each family's own dump runs without it. A thousand
// namespaces read in parallel waited for each other's dumps on that lock.
// Only messages of the family asked for are passed on: a kernel without IPv6
// answers a dump of AF_INET6 as one of AF_UNSPEC. (Both message types start
// with their family, one byte.)
func dumpFamilies(sock *conn, typ int, ipv6 bool, header func(family int) nl.NetlinkRequestData, each func(m []byte) error) error {
	families := []int{unix.AF_INET, unix.AF_INET6}
	if !ipv6 {
		families = families[:1]
	}
	for _, family := range families {
		req := nl.NewNetlinkRequest(typ, unix.NLM_F_DUMP)
		req.AddData(header(family))
		err := sock.request(req, func(m []byte) error {
			if len(m) == 0 || int(m[0]) != family {
				return nil
			}
			return each(m)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
