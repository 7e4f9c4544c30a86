package probe

import (
	"bytes"
	"io"
	"net"
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
