package kernel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"netlab/reconcile"
)

// TraceSpec says what `netlab trace` sends, from where, and where the packet may go.
type TraceSpec struct {
	Lab        string
	From       string // the kernel name of the namespace to send from (reconcile.Host for the host)
	To         string // the target as the user gave it, for the report
	Dst        netip.Addr
	Port       uint16            // tcp, udp
	Protocol   string            // "tcp", "udp", "icmp"
	Namespaces []string          // every namespace the packet may cross (kernel names, the host included)
	Names      map[string]string // kernel name -> the name in the lab file ("host")
	Wait       time.Duration     // how long to wait for an answer; 0: about a second
}

// TraceTable is the name of the table `netlab trace` adds, for a moment, in each
// namespace of a lab: "netlab_trace_LAB" (an underscore, which no lab name
// has, so it never is a lab's own table "netlab-LAB").
func TraceTable(lab string) string { return "netlab_trace_" + lab }

// traceRecord is <state>/<lab>/trace.json: the namespaces a running trace has
// put its table in, written before the first one is added and removed after the
// last one is gone, so that a trace killed in between (SIGKILL) leaves a record
// of what the next up or down removes (see clearTraces).
type traceRecord struct {
	Table      string   `json:"table"`
	Namespaces []string `json:"namespaces"`
	PID        int      `json:"pid"`
}

func (s *stateDir) tracePath(lab string) string { return filepath.Join(s.labDir(lab), "trace.json") }

// clearTraces removes what a trace that did not finish left in the lab's
// namespaces. It runs whenever the lab's lock is taken (see Lock): a running
// trace holds the lock, so a table then found is a leftover.
func (d *Driver) clearTraces(lab string) error {
	var rec traceRecord
	err := d.state.readJSON(d.state.tracePath(lab), &rec)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		d.log.Debug("unreadable trace record", "lab", lab, "err", err)
		return d.state.remove(d.state.tracePath(lab))
	}
	var errs []error
	for _, ns := range rec.Namespaces {
		if ns != reconcile.Host && !fileExists(d.netnsPath(ns)) {
			continue // gone, and its table with it
		}
		if err := d.deleteTable(ns, TraceTable(lab)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove what an interrupted netlab trace left: %w", errors.Join(errs...))
	}
	d.log.Debug("removed an interrupted trace's tables", "lab", lab, "namespaces", rec.Namespaces)
	return d.state.remove(d.state.tracePath(lab))
}

// The priorities of the trace table's chains: the marking chains before every
// other chain of their hook, the watching ones after (after NAT too).
const (
	traceFirst = math.MinInt32 + 1
	traceLast  = math.MaxInt32 - 1
)

// addTraceTable adds the trace table to a namespace: chains at the front of
// prerouting and output that set nftrace on the probe's packets only (its
// protocol and its port, or its echo id, either way), and empty chains at the
// end of every hook so each namespace's part of the path shows in the events
// even where no other chain is.
//
// Equivalent to: nft -f - <<EOF
//
//	table inet netlab_trace_LAB {
//	  chain mark-prerouting { type filter hook prerouting priority -2147483647; meta l4proto tcp th sport P meta nftrace set 1; meta l4proto tcp th dport P meta nftrace set 1 }
//	  chain mark-output     { type filter hook output priority -2147483647; ...the same... }
//	  chain seen-prerouting { type filter hook prerouting priority 2147483646; }  # and input, forward, output, postrouting
//	}
//	EOF
func (d *Driver) addTraceTable(ns, name, proto string, port uint16) error {
	conn, err := d.nftConn(ns)
	if err != nil {
		return err
	}
	table := conn.AddTable(labTable(name))
	accept := nftables.ChainPolicyAccept
	chain := func(cname string, hook *nftables.ChainHook, prio int32) *nftables.Chain {
		p := nftables.ChainPriority(prio)
		return conn.AddChain(&nftables.Chain{Name: cname, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: hook, Priority: &p, Policy: &accept})
	}
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"mark-prerouting", nftables.ChainHookPrerouting}, {"mark-output", nftables.ChainHookOutput}} {
		c := chain(h.name, h.hook, traceFirst)
		for _, match := range probeMatches(proto, port) {
			exprs := append(match,
				&expr.Immediate{Register: 1, Data: []byte{1, 0, 0, 0}},
				&expr.Meta{Key: expr.MetaKeyNFTRACE, SourceRegister: true, Register: 1})
			conn.AddRule(&nftables.Rule{Table: table, Chain: c, Exprs: exprs, UserData: comment("netlab trace: this probe only")})
		}
	}
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{
		{"seen-prerouting", nftables.ChainHookPrerouting}, {"seen-input", nftables.ChainHookInput},
		{"seen-forward", nftables.ChainHookForward}, {"seen-output", nftables.ChainHookOutput},
		{"seen-postrouting", nftables.ChainHookPostrouting},
	} {
		chain(h.name, h.hook, traceLast)
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("netns %s: add table inet %s: %w", ns, name, err)
	}
	return nil
}

// probeMatches are the matches of the probe's packets, both ways: its port as
// source or destination (NAT changes the other end's), or its echo id.
func probeMatches(proto string, port uint16) [][]expr.Any {
	l4 := func(p byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
		}
	}
	field := func(offset uint32) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		}
	}
	switch proto {
	case "icmp":
		return [][]expr.Any{append(l4(unix.IPPROTO_ICMP), field(4)...)} // the echo id, in requests and replies
	case "udp":
		return [][]expr.Any{append(l4(unix.IPPROTO_UDP), field(0)...), append(l4(unix.IPPROTO_UDP), field(2)...)}
	default:
		return [][]expr.Any{append(l4(unix.IPPROTO_TCP), field(0)...), append(l4(unix.IPPROTO_TCP), field(2)...)}
	}
}

// Trace sends one probe and explains its path. The caller holds the lab's
// lock. Every table it adds is removed before it returns, also when ctx ends
// (SIGINT); a trace killed outright leaves its record, and the next run that
// takes the lock removes the tables (see clearTraces).
func (d *Driver) Trace(ctx context.Context, spec TraceSpec) (*reconcile.Trace, error) {
	if spec.Wait == 0 {
		spec.Wait = 900 * time.Millisecond // under the first SYN retransmission (1 s): one packet each way
	}
	table := TraceTable(spec.Lab)
	if err := d.clearTraces(spec.Lab); err != nil {
		return nil, err
	}
	ids, err := d.traceNsids(spec.Namespaces)
	if err != nil {
		return nil, err
	}
	port, err := d.freePort(spec)
	if err != nil {
		return nil, err
	}

	// The listener first: the events of the first packet must not be missed.
	hostH, err := d.handle(reconcile.Host)
	if err != nil {
		return nil, err
	}
	var mon *traceMonitor
	if err := inNetns(hostH.fd, func() error {
		var err error
		mon, err = openTraceMonitor()
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen to nftables trace events: %w", err)
	}
	stop := make(chan struct{})
	go mon.run(stop)
	defer func() {
		close(stop)
		<-mon.done
		mon.close()
	}()

	if err := d.state.writeJSON(d.state.tracePath(spec.Lab), traceRecord{Table: table, Namespaces: spec.Namespaces, PID: os.Getpid()}); err != nil {
		return nil, err
	}
	var added []string
	defer func() {
		var errs []error
		for _, ns := range added {
			if err := d.deleteTable(ns, table); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			d.state.remove(d.state.tracePath(spec.Lab))
		}
	}()
	for _, ns := range spec.Namespaces {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		added = append(added, ns)
		if err := d.addTraceTable(ns, table, spec.Protocol, port); err != nil {
			return nil, err
		}
	}
	// What the rules of other tables say is read now, while they are as the
	// probe meets them.
	answer, src, err := d.sendProbe(ctx, spec, port)
	if err != nil {
		return nil, err
	}
	time.Sleep(50 * time.Millisecond) // the last events of a refused or answered probe
	events, errs := mon.snapshot()
	an := &traceAnalysis{d: d, spec: spec, port: port, ids: ids, table: table, rules: map[ruleKey]ruleInfo{}, links: map[string]map[uint32]ifaceRow{}}
	t := an.build(events, answer, src)
	for _, err := range errs {
		t.Notes = append(t.Notes, err.Error())
	}
	return t, nil
}

// traceNsids returns the id each namespace has in the host (where the monitor
// listens), giving one to those that have none: the monitor hears only
// namespaces with an id. The host's own events carry none (-1).
//
// Equivalent to: ip netns set NAME auto
func (d *Driver) traceNsids(namespaces []string) (map[int]string, error) {
	host, err := d.lib(reconcile.Host)
	if err != nil {
		return nil, err
	}
	ids := map[int]string{-1: reconcile.Host}
	for _, ns := range namespaces {
		h, err := d.handle(ns)
		if err != nil {
			return nil, err
		}
		id, err := host.GetNetNsIdByFd(int(h.fd))
		if err == nil && id < 0 {
			if err = host.SetNetNsIdByFd(int(h.fd), -1); err == nil {
				id, err = host.GetNetNsIdByFd(int(h.fd))
			}
		}
		if err != nil {
			return nil, fmt.Errorf("netns %s: find its id in the host: %w", ns, err)
		}
		if id >= 0 {
			ids[id] = ns
		}
	}
	return ids, nil
}

// freePort picks the probe's source port (or echo id): a random one that is
// free in the namespace it is sent from.
func (d *Driver) freePort(spec TraceSpec) (uint16, error) {
	for range 20 {
		port := uint16(40000 + rand.IntN(20000))
		if spec.Protocol == "icmp" {
			return port, nil
		}
		free := false
		err := d.RunIn(spec.From, func() error {
			network := spec.Protocol + "4"
			if spec.Dst.Is6() {
				network = spec.Protocol + "6"
			}
			var err error
			if spec.Protocol == "udp" {
				var c net.PacketConn
				c, err = net.ListenPacket(network, fmt.Sprintf(":%d", port))
				if err == nil {
					c.Close()
				}
			} else {
				var l net.Listener
				l, err = net.Listen(network, fmt.Sprintf(":%d", port))
				if err == nil {
					l.Close()
				}
			}
			free = err == nil
			return nil
		})
		if err != nil {
			return 0, err
		}
		if free {
			return port, nil
		}
	}
	return 0, errors.New("no free port for the probe")
}

// sendProbe sends the probe from its namespace and says what came back.
func (d *Driver) sendProbe(ctx context.Context, spec TraceSpec, port uint16) (answer, src string, err error) {
	ctx, cancel := context.WithTimeout(ctx, spec.Wait)
	defer cancel()
	err = d.RunIn(spec.From, func() error {
		switch spec.Protocol {
		case "icmp":
			answer, src = pingOnce(ctx, spec.Dst, port)
		case "udp":
			answer, src = udpOnce(ctx, spec.Dst, spec.Port, port)
		default:
			answer, src = tcpOnce(ctx, spec.Dst, spec.Port, port)
		}
		return nil
	})
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return "", "", ctx.Err()
	}
	return answer, src, err
}

func errnoText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ECONNREFUSED:
			return "refused (the far end answered with a reset or port unreachable)"
		case unix.EHOSTUNREACH:
			return "no route to host"
		case unix.ENETUNREACH:
			return "network unreachable"
		case unix.EACCES, unix.EPERM:
			return "refused by a rule of the sending namespace"
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return "no answer (timeout)"
	}
	return err.Error()
}

func tcpOnce(ctx context.Context, dst netip.Addr, dport, sport uint16) (answer, src string) {
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{Port: int(sport)}}
	c, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, dport).String())
	if err != nil {
		return errnoText(err), ""
	}
	src = c.LocalAddr().String()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // a reset, not a FIN exchange
	}
	c.Close()
	return "connected", src
}

func udpOnce(ctx context.Context, dst netip.Addr, dport, sport uint16) (answer, src string) {
	c, err := net.DialUDP("udp", &net.UDPAddr{Port: int(sport)}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, dport)))
	if err != nil {
		return errnoText(err), ""
	}
	defer c.Close()
	src = c.LocalAddr().String()
	if _, err := c.Write([]byte("netlab trace\n")); err != nil {
		return errnoText(err), src
	}
	deadline, _ := ctx.Deadline()
	c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	if _, err := c.Read(buf); err != nil {
		return errnoText(err), src
	}
	return "answered", src
}

func pingOnce(ctx context.Context, dst netip.Addr, id uint16) (answer, src string) {
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return errnoText(err), ""
	}
	defer c.Close()
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(id), Seq: 1, Data: []byte("netlab trace")}}
	b, _ := msg.Marshal(nil)
	if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return errnoText(err), ""
	}
	deadline, _ := ctx.Deadline()
	c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return errnoText(err), ""
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == ipv4.ICMPTypeEchoReply && body.ID == int(id) {
				return "echo reply from " + from.String(), ""
			}
		case *icmp.DstUnreach:
			if inner := body.Data; len(inner) >= 28 && inner[9] == unix.IPPROTO_ICMP && int(inner[24])<<8|int(inner[25]) == int(id) {
				return fmt.Sprintf("destination unreachable (code %d) from %s", m.Code, from), ""
			}
		}
	}
}
