package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// The userland proxy, netlab's own (netlab serve --proxy): what docker-proxy
// does for a published port. It listens on the host port and relays each TCP
// connection, or each UDP client's datagrams, to the container's address and
// port. It connects as docker-proxy does, from the host without choosing a
// source address: the kernel takes the address of the route to the container,
// the bridge's own (172.17.0.1), which is what the container sees.

// UDPProxyTimeout is how long a UDP client's relay lives without traffic,
// docker-proxy's.
const UDPProxyTimeout = 90 * time.Second

// Proxy relays proto ("tcp" or "udp") from port on hostIP (invalid: 0.0.0.0
// and [::], each a socket of its own as docker-proxy's) to target, until ctx
// ends. ready is called once it listens.
func Proxy(ctx context.Context, proto string, hostIP netip.Addr, port int, target netip.AddrPort, ready func()) error {
	var where []string
	if hostIP.IsValid() {
		where = []string{netip.AddrPortFrom(hostIP, uint16(port)).String()}
	} else {
		where = []string{fmt.Sprintf("0.0.0.0:%d", port), fmt.Sprintf("[::]:%d", port)}
	}
	var closers []io.Closer
	var run []func() error
	for i, addr := range where {
		network := proto
		if !hostIP.IsValid() {
			network += map[int]string{0: "4", 1: "6"}[i] // tcp6 on [::] is IPv6 only
		}
		switch proto {
		case "tcp":
			l, err := net.Listen(network, addr)
			if err != nil {
				if i == 1 && !hostIP.IsValid() {
					continue // a namespace without IPv6: IPv4 only
				}
				closeAll(closers)
				return err
			}
			closers = append(closers, l)
			run = append(run, func() error { return proxyTCP(l, target) })
		case "udp":
			a, _ := net.ResolveUDPAddr(network, addr)
			c, err := net.ListenUDP(network, a)
			if err != nil {
				if i == 1 && !hostIP.IsValid() {
					continue
				}
				closeAll(closers)
				return err
			}
			closers = append(closers, c)
			run = append(run, func() error { return proxyUDP(c, target) })
		default:
			return fmt.Errorf("proxy: unknown protocol %q", proto)
		}
	}
	if ready != nil {
		ready()
	}
	errs := make(chan error, len(run))
	for _, f := range run {
		go func() { errs <- f() }()
	}
	select {
	case <-ctx.Done():
		closeAll(closers)
		return nil
	case err := <-errs:
		closeAll(closers)
		return err
	}
}

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

func proxyTCP(l net.Listener, target netip.AddrPort) error {
	for {
		client, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go relayTCP(client.(*net.TCPConn), target)
	}
}

// relayTCP copies both ways until both sides have closed, passing on each
// side's half-close.
func relayTCP(client *net.TCPConn, target netip.AddrPort) {
	defer client.Close()
	backend, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(target))
	if err != nil {
		fmt.Fprintf(os.Stderr, "netlab serve: proxy: cannot reach tcp/%s for %s: %v\n", target, client.RemoteAddr(), err)
		return
	}
	defer backend.Close()
	var wg sync.WaitGroup
	copyHalf := func(to, from *net.TCPConn) {
		defer wg.Done()
		io.Copy(to, from)
		to.CloseWrite()
	}
	wg.Add(2)
	go copyHalf(backend, client)
	go copyHalf(client, backend)
	wg.Wait()
}

// proxyUDP relays each client's datagrams through a socket of its own to
// target, and the replies back, until the client is silent for UDPProxyTimeout.
func proxyUDP(l *net.UDPConn, target netip.AddrPort) error {
	var mu sync.Mutex
	clients := map[netip.AddrPort]*net.UDPConn{}
	buf := make([]byte, 65535)
	for {
		n, from, err := l.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		backend, ok := clients[from]
		if !ok {
			backend, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
			if err != nil {
				mu.Unlock()
				continue
			}
			clients[from] = backend
			go func() {
				defer func() {
					mu.Lock()
					delete(clients, from)
					mu.Unlock()
					backend.Close()
				}()
				reply := make([]byte, 65535)
				for {
					backend.SetReadDeadline(time.Now().Add(UDPProxyTimeout))
					n, err := backend.Read(reply)
					if err != nil {
						return
					}
					if _, err := l.WriteToUDPAddrPort(reply[:n], from); err != nil {
						return
					}
				}
			}()
		}
		mu.Unlock()
		backend.Write(buf[:n])
	}
}
