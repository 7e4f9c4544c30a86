// Package probe is what netlab does inside a lab's namespaces besides configuring
// them: the small built-in servers of `serve:` (netlab serve), and the checks of
// `netlab test` (ping, TCP, HTTP) written in Go, so a lab needs no ping, curl or
// python on the machine.
//
// It never enters a namespace itself: the caller passes an Enter function (the
// kernel driver's), which runs code on a thread inside a namespace. Sockets made
// there stay in that namespace wherever they are used afterwards.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// PeerHeader is the header netlab's HTTP server answers with: the address it saw
// the request come from, which is how a check sees what NAT did.
const PeerHeader = "X-Netlab-Peer"

// WhoAmI is the line that asks netlab's TCP echo server who it sees: it answers
// "you are ADDR:PORT" instead of echoing it.
const WhoAmI = "NETLAB-WHOAMI"

// Serve runs a built-in server on every address of the current namespace until
// ctx ends: kind "http" answers every request with body, "tcp-echo" echoes what
// it receives. ready is called once it listens.
func Serve(ctx context.Context, kind string, port int, body string, ready func()) error {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	if ready != nil {
		ready()
	}
	switch kind {
	case "http":
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set(PeerHeader, r.RemoteAddr)
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				io.WriteString(w, body)
			}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		err = srv.Serve(l)
	case "tcp-echo":
		err = serveEcho(l)
	default:
		return fmt.Errorf("unknown service %q", kind)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func serveEcho(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if strings.TrimSpace(line) == WhoAmI {
					fmt.Fprintf(c, "you are %s\n", c.RemoteAddr())
				} else if line != "" {
					io.WriteString(c, line)
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
