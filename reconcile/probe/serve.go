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
	return serveOn(ctx, l, kind, body, ready)
}

// serveOn is Serve on a listener of the caller's.
func serveOn(ctx context.Context, l net.Listener, kind, body string, ready func()) (err error) {
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
			// A client that sends a request and then nothing, or a little,
			// holds a connection for as long as the server waits: it waits
			// a bounded time, as for the request's headers.
			ReadHeaderTimeout: httpLimits.header,
			ReadTimeout:       httpLimits.read,
			WriteTimeout:      httpLimits.write,
			IdleTimeout:       httpLimits.idle,
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

// httpLimits bound how long the HTTP server waits for a client: for a request's
// headers, for the whole request, for its answer to be taken, and between two
// requests of one connection. Variables, so that a test can shorten them.
var httpLimits = struct{ header, read, write, idle time.Duration }{
	header: 10 * time.Second,
	read:   30 * time.Second,
	write:  30 * time.Second,
	idle:   time.Minute,
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
		go echo(c)
	}
}

// Echo's bounds: a line longer than echoLine is echoed in pieces of that size
// (its memory is bounded, whatever a client streams without a newline), and a
// connection idle for echoIdle is closed (a hand-typed nc session has ten
// minutes between lines; a variable, so that a test can shorten it).
const echoLine = 64 << 10

var echoIdle = 10 * time.Minute

// echo answers one connection: each line back, or for WhoAmI the client's address.
func echo(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, echoLine)
	for {
		c.SetReadDeadline(time.Now().Add(echoIdle))
		line, err := r.ReadSlice('\n')
		if strings.TrimSpace(string(line)) == WhoAmI {
			fmt.Fprintf(c, "you are %s\n", c.RemoteAddr())
		} else if len(line) > 0 {
			c.Write(line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
