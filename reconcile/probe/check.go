package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"netlab/reconcile"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Enter runs f on a thread inside the namespace ns (the kernel driver's RunIn).
type Enter func(ns string, f func() error) error

// Check is one check of a lab, resolved to kernel namespace names.
type Check struct {
	Name   string // as the table shows it: "c2 -> http http://172.17.0.2/"
	From   string // the namespace the check runs in
	Kind   string // "ping", "tcp" or "http"
	Target string // address, ADDR:PORT or URL

	ExpectFail   bool
	ExpectStatus int // http; 0 means 200
	ExpectBody   string
	ExpectSource netip.Addr   // the source address the far end must see
	ExpectHops   []netip.Addr // traceroute: every hop, the destination last
	// Unresolved says why a target given by name has no address from where the
	// check runs; such a check fails without sending anything.
	Unresolved string
	// Far is the namespace that owns the target address, where the source is
	// observed for ping and tcp ("" when no lab namespace owns it).
	Far string

	// Mesh and throughput checks (mesh.go, throughput.go).
	Members          []Member // mesh: every ordered pair pings
	Sink             string   // throughput: the namespace that receives; Target is ADDR:0
	MinRate, MaxRate uint64   // throughput: bits per second; 0: no bound
}

// Result is the outcome of a check.
type Result struct {
	Check
	Pass bool
	// NotRun: a namespace the check needs could not be entered, so nothing was
	// sent. It is never a pass, even for a check expected to fail: a lab that
	// is down blocks nothing.
	NotRun bool
	Detail string

	Matrix *Matrix // mesh: each pair's outcome
	Rate   float64 // throughput: bits per second measured
}

// enterError is a namespace that could not be entered: the check did not run.
type enterError struct {
	ns  string
	err error
}

func (e *enterError) Error() string { return fmt.Sprintf("cannot enter namespace %s: %v", e.ns, e.err) }
func (e *enterError) Unwrap() error { return e.err }

// recognised wraps enter so that a failure to get into the namespace (as
// opposed to f failing inside it) comes back as an *enterError.
func recognised(enter Enter) Enter {
	return func(ns string, f func() error) error {
		ran := false
		err := enter(ns, func() error { ran = true; return f() })
		if err != nil && !ran {
			return &enterError{ns: ns, err: err}
		}
		return err
	}
}

// maxParallelChecks is how many checks run at once.
const maxParallelChecks = 256

// Timeout bounds each attempt; namespaces on one machine answer in microseconds,
// so this only matters for what is meant to fail.
var Timeout = time.Second

// Run runs the checks in parallel and returns their results in the same order;
// throughput checks run after the others, one at a time, so that nothing else
// shares the links they measure.
func Run(ctx context.Context, checks []Check, enter Enter) []Result {
	results := make([]Result, len(checks))
	// Each check holds an OS thread in its namespace while it waits (up to
	// Timeout per attempt): ten thousand checks at once would pass Go's limit
	// of 10,000 threads and end netlab.
	reconcile.Parallel(len(checks), maxParallelChecks, func(i int) {
		if checks[i].Kind != "throughput" {
			results[i] = run(ctx, checks[i], enter)
		}
	})
	runThroughput(ctx, checks, enter, results) // throughput.go
	return results
}

func run(ctx context.Context, c Check, enter Enter) Result {
	enter = recognised(enter)
	var seen netip.Addr
	var detail string
	var err error
	switch {
	case c.Unresolved != "":
		// Nothing is sent, but the check still needs its namespace to be the
		// lab's: a name that cannot be resolved from nowhere proves no
		// blocking.
		err = enter(c.From, func() error { return errors.New(c.Unresolved) })
	case c.Kind == "mesh":
		return runMesh(ctx, c, enter)
	case c.Kind == "ping":
		seen, detail, err = ping(ctx, c, enter)
	case c.Kind == "tcp":
		seen, detail, err = dialTCP(ctx, c, enter)
	case c.Kind == "http":
		seen, detail, err = getHTTP(ctx, c, enter)
	case c.Kind == "traceroute":
		detail, err = checkHops(ctx, c, enter)
	default:
		err = fmt.Errorf("unknown check %q", c.Kind)
	}
	r := Result{Check: c}
	var notEntered *enterError
	switch {
	case errors.As(err, &notEntered):
		r.NotRun, r.Detail = true, notEntered.Error()
	case c.ExpectFail && err != nil:
		r.Pass, r.Detail = true, "blocked, as expected ("+short(err)+")"
	case c.ExpectFail:
		r.Detail = "reached, but it should be blocked (" + detail + ")"
	case err != nil:
		r.Detail = short(err)
	case c.ExpectSource.IsValid() && seen != c.ExpectSource:
		r.Detail = fmt.Sprintf("the far end saw %s, want %s", orUnknown(seen), c.ExpectSource)
	default:
		r.Pass, r.Detail = true, detail
		if c.ExpectSource.IsValid() {
			r.Detail += ", seen from " + seen.String()
		}
	}
	return r
}

func short(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "dial") {
		return s[i+2:]
	}
	return s
}

func orUnknown(a netip.Addr) string {
	if !a.IsValid() {
		return "nothing"
	}
	return a.String()
}

var icmpID atomic.Uint32

// ping sends ICMP echo requests from c.From and waits for the reply. To check
// the source, a raw socket in the far namespace watches the request arrive.
func ping(ctx context.Context, c Check, enter Enter) (netip.Addr, string, error) {
	target, err := netip.ParseAddr(c.Target)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("bad address %q", c.Target)
	}
	network, listen, echo, reply := "ip4:icmp", "0.0.0.0", icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
	proto := 1
	if target.Is6() {
		network, listen, echo, reply, proto = "ip6:ipv6-icmp", "::", ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	id := int(icmpID.Add(1)+uint32(os.Getpid())) & 0xffff

	var watcher *icmp.PacketConn
	if c.ExpectSource.IsValid() && c.Far != "" {
		if err := enter(c.Far, func() (err error) { watcher, err = icmp.ListenPacket(network, listen); return err }); err != nil {
			return netip.Addr{}, "", fmt.Errorf("watch in %s: %w", c.Far, err)
		}
		defer watcher.Close()
	}
	var conn *icmp.PacketConn
	if err := enter(c.From, func() (err error) { conn, err = icmp.ListenPacket(network, listen); return err }); err != nil {
		return netip.Addr{}, "", err
	}
	defer conn.Close()

	start := time.Now()
	for seq := 1; seq <= 3; seq++ {
		msg := icmp.Message{Type: echo, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("netlab test")}}
		b, _ := msg.Marshal(nil)
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: target.AsSlice()}); err != nil {
			return netip.Addr{}, "", err
		}
		if waitEcho(conn, proto, reply, id, seq, Timeout/3) {
			seen := netip.Addr{}
			if watcher != nil {
				seen = watchEcho(watcher, proto, echo, id)
			}
			return seen, fmt.Sprintf("reply in %s", time.Since(start).Round(10*time.Microsecond)), nil
		}
		if ctx.Err() != nil {
			return netip.Addr{}, "", ctx.Err()
		}
	}
	return netip.Addr{}, "", fmt.Errorf("no reply")
}

// waitEcho reads until the reply to (id, seq) arrives or the timeout passes; a
// raw socket sees every ICMP packet of its namespace, so others are skipped.
func waitEcho(conn *icmp.PacketConn, proto int, want icmp.Type, id, seq int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for {
		conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return false
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != want {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
			return true
		}
	}
}

// watchEcho returns the source of the first echo request with our id that the
// far namespace received.
func watchEcho(conn *icmp.PacketConn, proto int, echo icmp.Type, id int) netip.Addr {
	conn.SetReadDeadline(time.Now().Add(Timeout / 3))
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return netip.Addr{}
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != echo {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
			a, _ := netip.ParseAddr(from.String())
			return a
		}
	}
}

// dialTCP connects from c.From. To check the source, netlab listens on the
// target port in the far namespace (or asks its own tcp-echo server who it sees).
func dialTCP(ctx context.Context, c Check, enter Enter) (netip.Addr, string, error) {
	var seenc chan netip.Addr
	if c.ExpectSource.IsValid() && c.Far != "" {
		var l net.Listener
		_, port, _ := net.SplitHostPort(c.Target)
		err := enter(c.Far, func() (err error) { l, err = net.Listen("tcp", ":"+port); return err })
		var notEntered *enterError
		if errors.As(err, &notEntered) {
			return netip.Addr{}, "", err
		}
		if err == nil {
			defer l.Close()
			seenc = make(chan netip.Addr, 1)
			go func() {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				seenc <- addrOf(conn.RemoteAddr())
				conn.Close()
			}()
		}
	}
	conn, err := dial(ctx, c.From, c.Target, enter)
	if err != nil {
		return netip.Addr{}, "", err
	}
	defer conn.Close()
	if seenc != nil {
		select {
		case a := <-seenc:
			return a, "connected", nil
		case <-time.After(Timeout):
			return netip.Addr{}, "connected", fmt.Errorf("connected, but not to netlab's listener in %s", c.Far)
		}
	}
	if c.ExpectSource.IsValid() { // someone serves the port: ask if it is netlab's echo server
		conn.SetDeadline(time.Now().Add(Timeout))
		fmt.Fprintln(conn, WhoAmI)
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if host, ok := strings.CutPrefix(strings.TrimSpace(line), "you are "); ok {
			if ap, err := netip.ParseAddrPort(host); err == nil {
				return ap.Addr().Unmap(), "connected", nil
			}
		}
		return netip.Addr{}, "connected", fmt.Errorf("connected, but the server does not say who it sees (serve it with netlab serve --tcp-echo)")
	}
	return netip.Addr{}, "connected", nil
}

// dial connects from a namespace: the socket is made inside it. A refused
// connection is tried again for up to Timeout, as a server that `up` has just
// started may not listen yet.
func dial(ctx context.Context, ns, addr string, enter Enter) (net.Conn, error) {
	var conn net.Conn
	deadline := time.Now().Add(Timeout)
	for {
		err := enter(ns, func() (err error) {
			d := net.Dialer{Timeout: Timeout}
			conn, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			return conn, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func addrOf(a net.Addr) netip.Addr {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// getHTTP makes one GET request from c.From over a connection made inside it,
// and checks the status and body. netlab's own server says who it saw.
func getHTTP(ctx context.Context, c Check, enter Enter) (netip.Addr, string, error) {
	u, err := url.Parse(c.Target)
	if err != nil || u.Scheme != "http" {
		return netip.Addr{}, "", fmt.Errorf("bad URL %q", c.Target)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	conn, err := dial(ctx, c.From, host, enter)
	if err != nil {
		return netip.Addr{}, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(Timeout))
	req, _ := http.NewRequest("GET", c.Target, nil)
	req.Header.Set("Connection", "close")
	if err := req.Write(conn); err != nil {
		return netip.Addr{}, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return netip.Addr{}, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	text := string(body)
	want := c.ExpectStatus
	if want == 0 {
		want = 200
	}
	detail := fmt.Sprintf("%d %q", resp.StatusCode, truncate(strings.TrimSpace(text), 40))
	if resp.StatusCode != want {
		return netip.Addr{}, detail, fmt.Errorf("status %d, want %d", resp.StatusCode, want)
	}
	if c.ExpectBody != "" && !strings.Contains(text, c.ExpectBody) {
		return netip.Addr{}, detail, fmt.Errorf("body %q does not contain %q", truncate(text, 40), c.ExpectBody)
	}
	var seen netip.Addr
	if peer := resp.Header.Get(PeerHeader); peer != "" {
		if ap, err := netip.ParseAddrPort(peer); err == nil {
			seen = ap.Addr().Unmap()
		}
	} else if c.ExpectSource.IsValid() {
		return netip.Addr{}, detail, fmt.Errorf("the server does not say who it saw (serve it with netlab serve)")
	}
	return seen, detail, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// checkHops runs a traceroute and compares its hops with the expected ones.
func checkHops(ctx context.Context, c Check, enter Enter) (string, error) {
	hops, err := traceroute(ctx, c, enter)
	detail := "hops " + hopList(hops)
	if err == nil && c.ExpectHops != nil && !slices.Equal(hops, c.ExpectHops) {
		err = fmt.Errorf("hops %s, want %s", hopList(hops), hopList(c.ExpectHops))
	}
	return detail, err
}

// traceroute finds the routers on the way to the target as traceroute -I does:
// echo requests with a time-to-live of 1, 2, 3... each router that drops one
// answers "time exceeded" from its own address, and the target answers the
// echo. A hop that does not answer is the invalid address (printed "*").
func traceroute(ctx context.Context, c Check, enter Enter) ([]netip.Addr, error) {
	target, err := netip.ParseAddr(c.Target)
	if err != nil || !target.Is4() {
		return nil, fmt.Errorf("traceroute needs an IPv4 address, got %q", c.Target)
	}
	var conn *icmp.PacketConn
	if err := enter(c.From, func() (err error) { conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0"); return err }); err != nil {
		return nil, err
	}
	defer conn.Close()
	id := int(icmpID.Add(1)+uint32(os.Getpid())) & 0xffff
	var hops []netip.Addr
	for ttl := 1; ttl <= 16; ttl++ {
		if ctx.Err() != nil {
			return hops, ctx.Err()
		}
		if err := conn.IPv4PacketConn().SetTTL(ttl); err != nil {
			return hops, err
		}
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: ttl, Data: []byte("netlab traceroute")}}
		b, _ := msg.Marshal(nil)
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: target.AsSlice()}); err != nil {
			return hops, err
		}
		hop, reached := waitHop(conn, id, ttl, Timeout/2)
		hops = append(hops, hop)
		if reached {
			return hops, nil
		}
	}
	return hops, fmt.Errorf("did not reach %s in 16 hops", target)
}

// waitHop waits for the answer to the echo request (id, seq): the target's reply,
// or a router's time-exceeded message quoting the request.
func waitHop(conn *icmp.PacketConn, id, seq int, timeout time.Duration) (netip.Addr, bool) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for {
		conn.SetReadDeadline(deadline)
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return netip.Addr{}, false
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil {
			continue
		}
		addr, _ := netip.ParseAddr(from.String())
		switch body := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == ipv4.ICMPTypeEchoReply && body.ID == id && body.Seq == seq {
				return addr, true
			}
		case *icmp.TimeExceeded:
			// The quoted packet: its IP header, then the first bytes of our echo request.
			q := body.Data
			if len(q) < 20 {
				continue
			}
			ihl := int(q[0]&0x0f) * 4
			if len(q) >= ihl+8 && q[ihl] == 8 && int(q[ihl+4])<<8|int(q[ihl+5]) == id && int(q[ihl+6])<<8|int(q[ihl+7]) == seq {
				return addr, false
			}
		}
	}
}

func hopList(hops []netip.Addr) string {
	s := make([]string, len(hops))
	for i, h := range hops {
		s[i] = "*"
		if h.IsValid() {
			s[i] = h.String()
		}
	}
	return strings.Join(s, " > ")
}
