package kernel

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// traceAnalysis turns the kernel's trace events into the path of a probe.
type traceAnalysis struct {
	d     *Driver
	spec  TraceSpec
	port  uint16
	ids   map[int]string // namespace id in the host -> kernel name
	table string
	rules map[ruleKey]ruleInfo
	links map[string]map[uint32]ifaceRow // per namespace, by index
	hooks map[ruleKey]string             // a chain's hook (handle 0 in the key)
}

type ruleKey struct {
	ns, table, chain string
	family           uint8
	handle           uint64
}

type ruleInfo struct {
	text string
	nat  string // dnat, snat, masquerade, redirect: the rule translates
}

// packet is what a trace event shows of the packet's headers.
type packet struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16 // tcp, udp; the echo id in sport for icmp
	icmpType     uint8
	tcpFlags     uint8
}

func parsePacket(e traceEvent) (packet, bool) {
	var p packet
	n := e.network
	switch {
	case len(n) >= 20 && n[0]>>4 == 4:
		p.proto = n[9]
		p.src = netip.AddrFrom4([4]byte(n[12:16]))
		p.dst = netip.AddrFrom4([4]byte(n[16:20]))
	case len(n) >= 40 && n[0]>>4 == 6:
		p.proto = n[6]
		p.src = netip.AddrFrom16([16]byte(n[8:24]))
		p.dst = netip.AddrFrom16([16]byte(n[24:40]))
	default:
		return p, false
	}
	t := e.trans
	switch p.proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
		if len(t) >= 4 {
			p.sport, p.dport = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
		}
		if p.proto == unix.IPPROTO_TCP && len(t) >= 14 {
			p.tcpFlags = t[13]
		}
	case unix.IPPROTO_ICMP:
		if len(t) >= 6 {
			p.icmpType = t[0]
			p.sport = binary.BigEndian.Uint16(t[4:6])
		}
	}
	return p, true
}

func (p packet) String() string {
	switch p.proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
		return fmt.Sprintf("%s -> %s", netip.AddrPortFrom(p.src, p.sport), netip.AddrPortFrom(p.dst, p.dport))
	case unix.IPPROTO_ICMP:
		what := map[uint8]string{8: "echo request", 0: "echo reply"}[p.icmpType]
		return fmt.Sprintf("%s -> %s icmp %s id %d", p.src, p.dst, what, p.sport)
	}
	return fmt.Sprintf("%s -> %s", p.src, p.dst)
}

// endpoint is the address (and port) of one end, as the far end would print it.
func (p packet) source() string {
	if p.proto == unix.IPPROTO_TCP || p.proto == unix.IPPROTO_UDP {
		return netip.AddrPortFrom(p.src, p.sport).String()
	}
	return p.src.String()
}

func (p packet) dest() string {
	if p.proto == unix.IPPROTO_TCP || p.proto == unix.IPPROTO_UDP {
		return netip.AddrPortFrom(p.dst, p.dport).String()
	}
	return p.dst.String()
}

// direction says whether a packet is the probe (1), its reply (2), or another
// packet of the same connection (0): only the first of each way is traced.
func (a *traceAnalysis) direction(p packet) int {
	switch a.spec.Protocol {
	case "icmp":
		if p.proto != unix.IPPROTO_ICMP || p.sport != a.port {
			return 0
		}
		return map[uint8]int{8: 1, 0: 2}[p.icmpType]
	case "udp":
		if p.proto != unix.IPPROTO_UDP {
			return 0
		}
	default:
		if p.proto != unix.IPPROTO_TCP {
			return 0
		}
		const syn, ack, rst = 0x02, 0x10, 0x04
		switch {
		case p.sport == a.port && p.tcpFlags&syn != 0 && p.tcpFlags&ack == 0:
			return 1
		case p.dport == a.port && (p.tcpFlags&(syn|ack) == syn|ack || p.tcpFlags&rst != 0):
			return 2
		}
		return 0
	}
	switch a.port {
	case p.sport:
		return 1
	case p.dport:
		return 2
	}
	return 0
}

// step is one event of the probe or its reply, decoded.
type step struct {
	ns   string
	ev   traceEvent
	pkt  packet
	hook string
	ours string // the trace table's chain ("" for another table's)
}

func (a *traceAnalysis) build(events []traceEvent, answer, src string) *reconcile.Trace {
	t := &reconcile.Trace{
		Lab: a.spec.Lab, From: a.name(a.spec.From), To: a.spec.To, Protocol: a.spec.Protocol,
		Answer: answer, Path: []reconcile.TraceHop{}, Reply: []reconcile.TraceHop{},
	}
	var req, rep []step
	seen := map[int]bool{}
	for _, e := range events {
		ns, ok := a.ids[e.nsid]
		if !ok {
			continue // a namespace that is not the lab's
		}
		p, ok := parsePacket(e)
		if !ok {
			continue
		}
		dir := a.direction(p)
		if dir == 0 {
			continue
		}
		s := step{ns: ns, ev: e, pkt: p, hook: a.hook(ns, e)}
		a.d.log.Debug("trace event", "netns", ns, "table", e.table, "chain", e.chain, "type", e.typ, "handle", e.handle,
			"verdict", e.verdict, "policy", e.policy, "iif", e.iif, "oif", e.oif, "packet", p.String(), "dir", dir)
		if e.table == a.table {
			s.ours = e.chain
			if strings.HasPrefix(e.chain, "mark-") {
				continue
			}
		}
		// A retransmission starts again where the first one did: only the
		// first is followed.
		if s.ours == "seen-output" && seen[dir] && ns == a.firstNS(dir, req, rep) {
			continue
		}
		if dir == 1 {
			req = append(req, s)
		} else {
			rep = append(rep, s)
		}
		seen[dir] = true
	}
	var reqEnd ending
	t.Path, reqEnd = a.hops(req)
	t.Reply, _ = a.hops(rep)
	if len(req) > 0 {
		t.Probe = req[0].pkt.String()
	} else {
		// It never left: the sending namespace's routing says why.
		t.Probe = cmpOr(src, a.name(a.spec.From)) + " -> " + a.spec.Dst.String() + " " + a.spec.Protocol
		from := reconcile.TraceHop{Namespace: a.name(a.spec.From), Arrived: t.Probe, Rules: []reconcile.TraceHit{}, NAT: []reconcile.TraceNAT{}}
		from.Route = a.route(a.spec.From, &step{pkt: packet{dst: a.spec.Dst}}, "")
		t.Path = append(t.Path, from)
	}
	a.verdict(t, req, reqEnd)
	return t
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (a *traceAnalysis) firstNS(dir int, req, rep []step) string {
	if dir == 1 && len(req) > 0 {
		return req[0].ns
	}
	if dir == 2 && len(rep) > 0 {
		return rep[0].ns
	}
	return ""
}

// ending is how a direction's events end.
type ending struct {
	drop  *reconcile.TraceHit
	local *step // the event of its delivery (the input hook)
	last  *step
}

// hops groups one direction's events by namespace, in the order met.
func (a *traceAnalysis) hops(steps []step) ([]reconcile.TraceHop, ending) {
	hops := []reconcile.TraceHop{}
	var end ending
	for i := 0; i < len(steps); {
		j := i
		for j < len(steps) && steps[j].ns == steps[i].ns {
			j++
		}
		hops = append(hops, a.hop(steps[i:j], &end))
		i = j
	}
	if len(steps) > 0 {
		end.last = &steps[len(steps)-1]
	}
	return hops, end
}

func (a *traceAnalysis) hop(steps []step, end *ending) reconcile.TraceHop {
	ns := steps[0].ns
	h := reconcile.TraceHop{Namespace: a.name(ns), Arrived: steps[0].pkt.String(), Rules: []reconcile.TraceHit{}, NAT: []reconcile.TraceNAT{}}
	if steps[0].ev.iif != 0 {
		h.In = a.ifname(ns, steps[0].ev.iif)
	}
	var routed *step // the packet as routing saw it
	for i := range steps {
		s := &steps[i]
		if s.ev.oif != 0 {
			h.Out = a.ifname(ns, s.ev.oif)
		}
		h.Left = s.pkt.String()
		switch s.ours {
		case "seen-prerouting":
			routed = s
			continue
		case "seen-output":
			if routed == nil {
				routed = s
			}
			continue
		case "seen-input":
			h.Local, h.Out, h.Left = true, "", ""
			end.local = s
			continue
		case "seen-forward", "seen-postrouting":
			continue
		}
		hit := a.hit(s)
		passed := s.ev.typ == unix.NFT_TRACETYPE_RETURN || (s.ev.typ == unix.NFT_TRACETYPE_POLICY && hit.Verdict != "drop") ||
			(s.ev.typ == unix.NFT_TRACETYPE_RULE && s.ev.handle == 0 && s.ev.verdict == unix.NFT_CONTINUE)
		if passed {
			continue // a chain that let it pass (the kernel reports its end as a rule without a handle) says nothing
		}
		h.Rules = append(h.Rules, hit)
		if hit.Verdict == "drop" {
			end.drop = &hit
		}
		if info := a.rule(s); info.nat != "" && i+1 < len(steps) {
			before, after := s.pkt.dest(), steps[i+1].pkt.dest()
			if info.nat != "dnat" && info.nat != "redirect" {
				before, after = s.pkt.source(), steps[i+1].pkt.source()
			}
			h.NAT = append(h.NAT, reconcile.TraceNAT{Kind: info.nat, Rule: info.text, Table: s.ev.table, Chain: s.ev.chain,
				Before: before, After: after})
		}
	}
	if h.In != "" && h.In == h.Out && a.isBridge(ns, h.In) && !a.forBridge(ns, h.In, steps) {
		// Switched between two ports of the bridge (br_netfilter shows it to
		// the inet hooks): no routing decision, the frame's own MAC decides.
		h.Bridge = a.fdb(ns, h.In, lastMAC(steps))
		h.Bridge.Switched = true
		return h
	}
	if routed != nil {
		h.Route = a.route(ns, routed, h.In)
		if h.Route != nil && h.Route.Dev != "" && !h.Local && a.isBridge(ns, h.Route.Dev) {
			h.Bridge = a.bridge(ns, h.Route, routed.pkt.dst)
		}
	}
	return h
}

// lastMAC is the destination MAC of the last frame header the events show.
func lastMAC(steps []step) string {
	mac := ""
	for _, s := range steps {
		if len(s.ev.ll) >= 6 {
			mac = net.HardwareAddr(s.ev.ll[0:6]).String()
		}
	}
	return mac
}

// forBridge reports whether the frame came to the bridge's own MAC, so the
// namespace routed it (back out of the bridge, as a hairpin does) rather than
// the bridge switching it between two ports.
func (a *traceAnalysis) forBridge(ns, bridge string, steps []step) bool {
	for _, s := range steps {
		if len(s.ev.ll) >= 6 {
			for _, l := range a.links[ns] {
				if l.name == bridge {
					return strings.EqualFold(l.mac, net.HardwareAddr(s.ev.ll[0:6]).String())
				}
			}
			return false
		}
	}
	return false
}

func (a *traceAnalysis) isBridge(ns, name string) bool {
	for _, l := range a.links[ns] {
		if l.name == name {
			return l.kind == "bridge"
		}
	}
	return false
}

// name is a namespace's name in the lab file.
func (a *traceAnalysis) name(ns string) string {
	if n, ok := a.spec.Names[ns]; ok {
		return n
	}
	if ns == reconcile.Host {
		return "host"
	}
	return ns
}

// ifname names an interface of a namespace by its index.
func (a *traceAnalysis) ifname(ns string, index uint32) string {
	links, ok := a.links[ns]
	if !ok {
		links = map[uint32]ifaceRow{}
		if h, done, err := a.d.use(ns); err == nil {
			if all, err := dumpIfaceRows(h.rt); err == nil {
				for _, l := range all {
					links[uint32(l.index)] = l
				}
			}
			done()
		}
		a.links[ns] = links
	}
	if l, ok := links[index]; ok {
		return l.name
	}
	return fmt.Sprintf("if%d", index)
}

// route asks the namespace how it routes the packet, as it saw it after
// prerouting (or made it), with the full prefix that matched.
//
// Equivalent to: ip -n NS route get DST from SRC iif IN fibmatch
func (a *traceAnalysis) route(ns string, s *step, in string) *reconcile.TraceRoute {
	h, done, err := a.d.lib(ns)
	if err != nil {
		return nil
	}
	defer done()
	opts := &netlink.RouteGetOptions{FIBMatch: true}
	if in != "" {
		opts.Iif = in
		opts.SrcAddr = net.IP(s.pkt.src.AsSlice())
	}
	routes, err := h.RouteGetWithOptions(net.IP(s.pkt.dst.AsSlice()), opts)
	if err != nil || len(routes) == 0 {
		r := &reconcile.TraceRoute{Type: "unreachable", Error: fmt.Sprintf("no route to %s", s.pkt.dst)}
		if err != nil {
			r.Error += ": " + err.Error()
		}
		return r
	}
	rt := routes[0]
	r := &reconcile.TraceRoute{Type: routeType(rt.Type)}
	dst := "default"
	if rt.Dst != nil {
		if ones, bits := rt.Dst.Mask.Size(); ones != 0 || bits == 0 {
			dst = rt.Dst.String()
		}
	}
	parts := []string{dst}
	if r.Type != "unicast" {
		parts = []string{r.Type, dst}
	}
	if rt.Gw != nil {
		r.Gateway = rt.Gw.String()
		parts = append(parts, "via", r.Gateway)
	}
	if rt.LinkIndex > 0 {
		r.Dev = a.ifname(ns, uint32(rt.LinkIndex))
		parts = append(parts, "dev", r.Dev)
	}
	r.Match = strings.Join(parts, " ")
	switch rt.Type {
	case unix.RTN_UNREACHABLE, unix.RTN_BLACKHOLE, unix.RTN_PROHIBIT:
		r.Error = r.Match
	}
	return r
}

func routeType(t int) string {
	switch t {
	case unix.RTN_UNICAST:
		return "unicast"
	case unix.RTN_LOCAL:
		return "local"
	case unix.RTN_BROADCAST:
		return "broadcast"
	case unix.RTN_UNREACHABLE:
		return "unreachable"
	case unix.RTN_BLACKHOLE:
		return "blackhole"
	case unix.RTN_PROHIBIT:
		return "prohibit"
	}
	return fmt.Sprintf("type %d", t)
}

// bridge looks the next hop up in a bridge's forwarding database, when the
// route's device is a bridge: its MAC from the neighbour table, then the port
// the bridge learned it on.
//
// Equivalent to: ip -n NS neigh show dev BR to NEXTHOP
func (a *traceAnalysis) bridge(ns string, r *reconcile.TraceRoute, dst netip.Addr) *reconcile.TraceBridge {
	next := r.Gateway
	if next == "" {
		next = dst.String() // on the bridge's own subnet
	}
	mac := ""
	if h, done, err := a.d.lib(ns); err == nil {
		if neighs, err := h.NeighList(a.index(ns, r.Dev), unix.AF_INET); err == nil {
			for _, n := range neighs {
				if n.IP.Equal(net.ParseIP(next)) && n.HardwareAddr != nil {
					mac = n.HardwareAddr.String()
				}
			}
		}
		done()
	}
	return a.fdb(ns, r.Dev, mac)
}

// fdb finds the port of a bridge that a MAC was learned on; none: the frame
// is flooded to every port.
//
// Equivalent to: bridge -n NS fdb show br BR | grep MAC
func (a *traceAnalysis) fdb(ns, bridge, mac string) *reconcile.TraceBridge {
	b := &reconcile.TraceBridge{Name: bridge, MAC: mac}
	h, done, err := a.d.lib(ns)
	if err != nil {
		return b
	}
	defer done()
	if mac == "" {
		return b
	}
	index := a.index(ns, bridge)
	fdb, err := h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return b
	}
	for _, n := range fdb {
		if n.MasterIndex == index && n.HardwareAddr.String() == mac && n.LinkIndex != index {
			b.Port, b.Learned = a.ifname(ns, uint32(n.LinkIndex)), true
		}
	}
	return b
}

func (a *traceAnalysis) index(ns, name string) int {
	for _, l := range a.links[ns] {
		if l.name == name {
			return l.index
		}
	}
	return 0
}

// verdict says what became of the probe.
func (a *traceAnalysis) verdict(t *reconcile.Trace, req []step, end ending) {
	switch {
	case end.local != nil:
		p := end.local.pkt
		far := a.name(end.local.ns)
		t.Verdict = reconcile.VerdictDelivered
		t.Far = &reconcile.TraceEnd{Namespace: far, Interface: a.ifname(end.local.ns, end.local.ev.iif), Source: p.source(), Dest: p.dest()}
		t.Detail = fmt.Sprintf("delivered to %s (%s) as %s; %s saw the source %s", far, t.Far.Interface, p.dest(), far, p.source())
	case end.drop != nil:
		t.Verdict = reconcile.VerdictDropped
		t.Drop = end.drop
		t.At = end.drop.Namespace
		t.Detail = fmt.Sprintf("dropped in %s, %s hook, by %s %s chain %s: %s [%s]", end.drop.Namespace, end.drop.Hook,
			end.drop.Family, end.drop.Table, end.drop.Chain, end.drop.Rule, end.drop.Owner)
	case len(req) == 0:
		t.Verdict = reconcile.VerdictNoRoute
		t.At = t.From
		t.Detail = fmt.Sprintf("the probe never left %s: %s", t.From, t.Answer)
		if r := t.Path[0].Route; r != nil && r.Error != "" {
			t.Detail = fmt.Sprintf("the probe never left %s: %s (%s)", t.From, r.Error, t.Answer)
		} else if !strings.Contains(t.Answer, "route") && !strings.Contains(t.Answer, "unreachable") {
			t.Verdict = reconcile.VerdictLost
		}
	default:
		last := t.Path[len(t.Path)-1]
		t.At = last.Namespace
		if last.Route != nil && last.Route.Error != "" {
			t.Verdict = reconcile.VerdictNoRoute
			t.Detail = fmt.Sprintf("%s has no route for it: %s", last.Namespace, last.Route.Error)
			return
		}
		t.Verdict = reconcile.VerdictLost
		out := last.Out
		if out == "" && last.Route != nil {
			out = last.Route.Dev
		}
		t.Detail = fmt.Sprintf("last seen leaving %s by %s, and not seen again (no neighbour answering, rp_filter, or a namespace that is not the lab's)", last.Namespace, out)
	}
}
