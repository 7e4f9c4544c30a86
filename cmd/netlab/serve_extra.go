package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"netlab/reconcile"
	"netlab/reconcile/kernel"
	"netlab/reconcile/probe"
	"netlab/topology"
)

// extraServers are the servers of `netlab serve` that labs get from Docker's
// features: the embedded DNS server (--dns) and the userland proxy (--proxy).
type extraServers struct {
	dnsPort int
	names   []string
	forward bool
	proxy   string
	to      string
}

func (x *extraServers) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&x.dnsPort, "dns", 0, "answer DNS on 127.0.0.11:PORT, UDP and TCP (Docker's embedded DNS server)")
	f.StringArrayVar(&x.names, "name", nil, "with --dns: a name and an address it answers, NAME=ADDR (repeat it)")
	f.BoolVar(&x.forward, "forward", false, "with --dns: ask the machine's resolvers for other names (else SERVFAIL)")
	f.StringVar(&x.proxy, "proxy", "", "relay [IP:]PORT/PROTO (no IP: 0.0.0.0 and [::]) to --to, as docker-proxy does")
	f.StringVar(&x.to, "to", "", "with --proxy: the container's ADDR:PORT")
}

// run runs the DNS server or the proxy when their flags are given; other
// says whether --http or --tcp-echo is given too.
func (x *extraServers) run(cmd *cobra.Command, a *app, other bool) (bool, error) {
	switch {
	case x.dnsPort == 0 && x.proxy == "":
		if len(x.names) > 0 || x.forward || x.to != "" {
			return true, errors.New("--name and --forward go with --dns, --to with --proxy")
		}
		return false, nil
	case other || (x.dnsPort != 0 && x.proxy != ""):
		return true, errors.New("serve runs one server: give one of --http, --tcp-echo, --dns or --proxy")
	case x.dnsPort != 0:
		return true, x.serveDNS(cmd, a)
	}
	return true, x.serveProxy(cmd, a)
}

func (x *extraServers) serveDNS(cmd *cobra.Command, a *app) error {
	if x.dnsPort < 1 || x.dnsPort > 65535 || x.to != "" {
		return errors.New("want --dns PORT (1 to 65535) [--name NAME=ADDR]... [--forward]")
	}
	args := []string{"serve", "--dns", fmt.Sprint(x.dnsPort)}
	for _, n := range x.names {
		args = append(args, "--name", n)
	}
	svc, err := reconcile.ServiceFromArgs(args)
	if err != nil {
		return fmt.Errorf("--name: want NAME=ADDR: %w", err)
	}
	cfg := probe.DNSConfig{Names: map[string][]netip.Addr{}, Forward: x.forward}
	for _, n := range svc.DNS.Names {
		cfg.Names[n.Name] = append(cfg.Names[n.Name], n.Addr)
	}
	if x.forward {
		cfg.Upstreams = hostResolvers()
	}
	addr := netip.AddrPortFrom(topology.ResolverAddr, uint16(x.dnsPort))
	return probe.ServeDNS(cmd.Context(), addr, cfg, func() {
		fmt.Fprintf(a.Err, "netlab serve: dns on %s (udp, tcp): %d names; forward to %v\n", addr, len(cfg.Names), cfg.Upstreams)
	})
}

func (x *extraServers) serveProxy(cmd *cobra.Command, a *app) error {
	ip, port, proto, err := reconcile.ParseProxyListen(x.proxy)
	if err != nil {
		return err
	}
	to, err := netip.ParseAddrPort(x.to)
	if err != nil || to.Port() == 0 {
		return fmt.Errorf("--to %q: want the container's ADDR:PORT", x.to)
	}
	return probe.Proxy(cmd.Context(), proto, ip, port, to, func() {
		fmt.Fprintf(a.Err, "netlab serve: proxy %s to %s\n", x.proxy, to)
	})
}

// hostResolversEnv carries the machine's resolvers from `__nsexec`, which
// reads them before the namespace's own /etc/resolv.conf is mounted over the
// machine's, to `serve --dns --forward`.
const hostResolversEnv = "NETLAB_HOST_RESOLVERS"

// dialsOut says whether `netlab serve` with args makes sockets after it
// starts: the proxy, and the DNS server (its forwarded queries).
func dialsOut(args []string) bool {
	return len(args) > 2 && (args[2] == "--proxy" || args[2] == "--dns")
}

// nsExecSelf enters the namespace and executes netlab serve again there, so
// that every thread of the server is in it (a thread Go starts later is made
// from the process's first thread, which is then inside).
func nsExecSelf(netnsPath, etcDir string, args []string) error {
	os.Setenv(hostResolversEnv, strings.Join(probe.HostResolvers(), ","))
	return kernel.NsExec(netnsPath, etcDir, args)
}

// hostResolvers are the machine's resolvers: those __nsexec read, or when
// serve runs by itself, those of the /etc/resolv.conf it sees.
func hostResolvers() []string {
	if v, ok := os.LookupEnv(hostResolversEnv); ok {
		return strings.FieldsFunc(v, func(r rune) bool { return r == ',' })
	}
	return probe.HostResolvers()
}
