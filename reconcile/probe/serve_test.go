package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The echo server holds at most a bounded piece of a line: what a client
// streams without a newline comes back as it arrives, instead of piling up in
// netlab's memory until a newline that never comes.
func TestEchoReturnsALongLineInPieces(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go echo(server)
	sent := bytes.Repeat([]byte("x"), 3*echoLine)
	go client.Write(sent)
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(sent))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("echo of %d bytes without a newline: %v", len(sent), err)
	}
}

// closedWithin reports whether the server closes c (a read ends in EOF or a
// reset) before within passes; the client's own deadline ends the wait.
func closedWithin(t *testing.T, c net.Conn, within time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// shorten sets *v to d for the test.
func shorten(t *testing.T, v *time.Duration, d time.Duration) {
	old := *v
	*v = d
	t.Cleanup(func() { *v = old })
}

// TestHTTPServerClosesSilentAndIdleClients: a client that connects and sends
// nothing, or sends a request and then nothing, holds a connection only as
// long as the server's limits say (shortened here from 10 s and a minute).
func TestHTTPServerClosesSilentAndIdleClients(t *testing.T) {
	shorten(t, &httpLimits.header, 200*time.Millisecond)
	shorten(t, &httpLimits.idle, 200*time.Millisecond)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serveOn(ctx, l, "http", "hello\n", nil)

	silent, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if !closedWithin(t, silent, 3*time.Second) {
		t.Errorf("a client that sent nothing was still connected after 3 s (header limit 200 ms)")
	}

	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(idle)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("the request's answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !closedWithin(t, idle, 3*time.Second) {
		t.Errorf("a client idle after its request was still connected after 3 s (idle limit 200 ms)")
	}
}

// TestEchoClosesAnIdleConnection: the echo server closes a connection on which
// nothing came for echoIdle (shortened here from ten minutes).
func TestEchoClosesAnIdleConnection(t *testing.T) {
	shorten(t, &echoIdle, 200*time.Millisecond)
	client, server := net.Pipe()
	defer client.Close()
	go echo(server)
	if !closedWithin(t, client, 3*time.Second) {
		t.Errorf("an idle echo connection was still open after 3 s (idle limit 200 ms)")
	}
}
