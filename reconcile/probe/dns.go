package probe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Docker's embedded DNS server, netlab's own (netlab serve --dns): it answers
// A and AAAA queries for the names it is given (not case-sensitive, with or
// without the trailing dot), PTR queries for their addresses, and either
// forwards the other names to the host's resolvers or answers SERVFAIL, as
// dockerd's resolver does when it has no resolver to ask.

// DNSConfig is what the DNS server answers.
type DNSConfig struct {
	Names     map[string][]netip.Addr // lower-case names without the trailing dot
	Forward   bool
	Upstreams []string // ADDR:PORT of the resolvers to forward to (HostResolvers)
}

// DNSTTL is the time to live of the records it answers, dockerd's.
const DNSTTL = 600

// ServeDNS answers DNS on addr, UDP and TCP, until ctx ends. ready is called
// once both sockets listen.
func ServeDNS(ctx context.Context, addr netip.AddrPort, cfg DNSConfig, ready func()) error {
	pc, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr.String())
	if err != nil {
		pc.Close()
		return err
	}
	h := newDNSHandler(cfg)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: l, Handler: h}
	errs := make(chan error, 2)
	go func() { errs <- udp.ActivateAndServe() }()
	go func() { errs <- tcp.ActivateAndServe() }()
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
		udp.Shutdown()
		tcp.Shutdown()
		return nil
	case err := <-errs:
		udp.Shutdown()
		tcp.Shutdown()
		return err
	}
}

type dnsHandler struct {
	cfg DNSConfig
	ptr map[string]string // reverse name (2.0.18.172.in-addr.arpa.) -> name
}

func newDNSHandler(cfg DNSConfig) *dnsHandler {
	h := &dnsHandler{cfg: cfg, ptr: map[string]string{}}
	for name, addrs := range cfg.Names {
		for _, a := range addrs {
			if rev, err := dns.ReverseAddr(a.String()); err == nil {
				if old, ok := h.ptr[rev]; !ok || name < old {
					h.ptr[rev] = name
				}
			}
		}
	}
	return h
}

// ServeDNS answers one query.
func (h *dnsHandler) ServeDNS(w dns.ResponseWriter, query *dns.Msg) {
	w.WriteMsg(h.answer(query, w.LocalAddr().Network()))
}

// answer is the reply to a query that came in by network ("udp" or "tcp").
func (h *dnsHandler) answer(query *dns.Msg, network string) *dns.Msg {
	if len(query.Question) != 1 || query.Opcode != dns.OpcodeQuery {
		return new(dns.Msg).SetRcode(query, dns.RcodeFormatError)
	}
	q := query.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	resp := new(dns.Msg).SetReply(query)
	resp.RecursionAvailable = true
	if addrs, known := h.cfg.Names[name]; known && q.Qclass == dns.ClassINET {
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: DNSTTL}
		for _, a := range addrs {
			switch {
			case q.Qtype == dns.TypeA && a.Is4():
				hdr.Rrtype = dns.TypeA
				resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case q.Qtype == dns.TypeAAAA && a.Is6():
				hdr.Rrtype = dns.TypeAAAA
				resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		return resp // a known name without a record of that type: no data
	}
	if target, ok := h.ptr[strings.ToLower(q.Name)]; ok && q.Qtype == dns.TypePTR {
		resp.Answer = append(resp.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: DNSTTL},
			Ptr: dns.Fqdn(target)})
		return resp
	}
	if h.cfg.Forward {
		if r := h.forward(query, network); r != nil {
			return r
		}
	}
	return new(dns.Msg).SetRcode(query, dns.RcodeServerFailure)
}

// forward asks the upstream resolvers in turn, as dockerd does: the first
// answer that is not SERVFAIL or REFUSED.
func (h *dnsHandler) forward(query *dns.Msg, network string) *dns.Msg {
	c := &dns.Client{Net: network, Timeout: 4 * time.Second}
	for _, up := range h.cfg.Upstreams {
		r, _, err := c.Exchange(query, up)
		if err != nil || r == nil || r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			continue
		}
		return r
	}
	return nil
}

// HostResolvers are the resolvers of the machine's /etc/resolv.conf, as
// ADDR:53, leaving out loopback addresses, which a lab namespace cannot reach;
// where it lists only those (systemd-resolved's 127.0.0.53), the ones
// systemd-resolved itself uses, as dockerd does. It must be called before
// entering a namespace, whose /etc/resolv.conf may be the lab's.
func HostResolvers() []string {
	for _, path := range []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"} {
		if out := resolversIn(path); len(out) > 0 {
			return out
		}
	}
	return nil
}

func resolversIn(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	cc, err := dns.ClientConfigFromReader(f)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil && !a.IsLoopback() {
			out = append(out, netip.AddrPortFrom(a, 53).String())
		}
	}
	return out
}
