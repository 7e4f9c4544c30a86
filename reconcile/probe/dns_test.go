package probe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestDNSAnswersForwardsAndFails: the embedded server answers its names (any
// case, A and AAAA, PTR for their addresses, no data for a known name without
// a record of that type), forwards other names to the first upstream that
// answers, and answers SERVFAIL without forwarding, as dockerd's resolver
// with no resolver to ask.
func TestDNSAnswersForwardsAndFails(t *testing.T) {
	// An upstream resolver on loopback that knows one name.
	up := newDNSHandler(DNSConfig{Names: map[string][]netip.Addr{"outside.example": {netip.MustParseAddr("198.51.100.7")}}})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: up}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })

	names := map[string][]netip.Addr{"c4": {netip.MustParseAddr("172.18.0.3"), netip.MustParseAddr("fd00::3")}, "web": {netip.MustParseAddr("172.18.0.4")}}
	h := newDNSHandler(DNSConfig{Names: names, Forward: true, Upstreams: []string{pc.LocalAddr().String()}})
	ask := func(h *dnsHandler, name string, qtype uint16) *dns.Msg {
		return h.answer(new(dns.Msg).SetQuestion(name, qtype), "udp")
	}
	if r := ask(h, "C4.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "172.18.0.3" || r.Answer[0].Header().Ttl != DNSTTL {
		t.Errorf("A C4.: %v", r)
	}
	if r := ask(h, "c4.", dns.TypeAAAA); len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::3" {
		t.Errorf("AAAA c4.: %v", r)
	}
	if r := ask(h, "web.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("AAAA web. (no IPv6 address): %v, want no data", r)
	}
	if r := ask(h, "4.0.18.172.in-addr.arpa.", dns.TypePTR); len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "web." {
		t.Errorf("PTR of 172.18.0.4: %v", r)
	}
	if r := ask(h, "outside.example.", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "198.51.100.7" {
		t.Errorf("forwarded A outside.example.: %v", r)
	}
	if r := ask(h, "nowhere.example.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("a name nobody knows: %v, want SERVFAIL (the upstream fails it too)", r)
	}
	h.cfg.Forward = false
	if r := ask(h, "outside.example.", dns.TypeA); r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
		t.Errorf("without forwarding: %v, want SERVFAIL", r)
	}
}

// TestResolversLeaveOutLoopback: the host's resolvers are read from
// resolv.conf without the loopback ones a lab namespace cannot reach.
func TestResolversLeaveOutLoopback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(path, []byte("nameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example\n"), 0o644)
	if got, want := resolversIn(path), []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("resolvers: %v, want %v", got, want)
	}
}

// TestProxyRelaysTCPAndUDP: the proxy relays TCP both ways with half-closes,
// and each UDP client's datagrams and their replies.
func TestProxyRelaysTCPAndUDP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Backends on loopback: TCP echoes until EOF, UDP echoes each datagram.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := readAll(c)
				c.Write(append([]byte("got "), b...))
			}()
		}
	}()
	ul, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := ul.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			ul.WriteToUDPAddrPort(append([]byte("got "), buf[:n]...), from)
		}
	}()

	loop := netip.MustParseAddr("127.0.0.1")
	tcpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	for _, p := range []struct {
		proto  string
		port   int
		target netip.AddrPort
	}{{"tcp", tcpPort, tl.Addr().(*net.TCPAddr).AddrPort()}, {"udp", udpPort, ul.LocalAddr().(*net.UDPAddr).AddrPort()}} {
		ready := make(chan struct{})
		go Proxy(ctx, p.proto, loop, p.port, p.target, func() { close(ready) })
		<-ready
	}

	c, err := net.Dial("tcp", netip.AddrPortFrom(loop, uint16(tcpPort)).String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, _ := readAll(c); string(got) != "got hello" {
		t.Errorf("tcp through the proxy: %q", got)
	}
	c.Close()

	u, err := net.Dial("udp", netip.AddrPortFrom(loop, uint16(udpPort)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	for _, msg := range []string{"one", "two"} {
		u.Write([]byte(msg))
		buf := make([]byte, 100)
		n, err := u.Read(buf)
		if err != nil || string(buf[:n]) != "got "+msg {
			t.Errorf("udp through the proxy: %q %v", buf[:n], err)
		}
	}
}

func readAll(c net.Conn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, nil
		}
	}
}

func freePort(t *testing.T, proto string) int {
	t.Helper()
	if proto == "tcp" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
