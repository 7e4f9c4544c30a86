package probe

import (
	"net"
	"strings"
	"testing"
	"time"
)

// sinkWith starts the throughput sink on a loopback listener, connects a
// client to it and hands the client to send. It returns what the sink
// reported, or fails the test if the sink has not returned within limit: a
// sink without its deadlines would wait for ever.
func sinkWith(t *testing.T, limit time.Duration, send func(net.Conn)) (sinkResult, time.Duration) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	done := make(chan sinkResult, 1)
	go func() { done <- receive(l) }()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	go send(client)
	select {
	case res := <-done:
		return res, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("the sink had not returned after %s", limit)
		return sinkResult{}, 0
	}
}

// A sender that connects and sends nothing (a path that passes the handshake
// and drops data) ends the check after Timeout + Duration, as an error.
func TestSinkGivesUpOnASilentSender(t *testing.T) {
	shorten(t, &Timeout, 200*time.Millisecond)
	shorten(t, &Duration, 200*time.Millisecond)
	res, took := sinkWith(t, 3*time.Second, func(net.Conn) {})
	if res.err == nil || !strings.Contains(res.err.Error(), "nothing arrived") {
		t.Fatalf("silent sender: got %+v, want an error saying nothing arrived", res)
	}
	if took < 400*time.Millisecond {
		t.Errorf("the sink gave up after %s, before Timeout + Duration (400ms)", took)
	}
}

// A sender that stops long before Duration is over is reported, not taken
// for a slow path: the rate would be counted over time nothing was sent in.
func TestSinkReportsASenderThatStopsEarly(t *testing.T) {
	shorten(t, &Timeout, 200*time.Millisecond)
	shorten(t, &Duration, time.Second)
	res, _ := sinkWith(t, 5*time.Second, func(c net.Conn) {
		c.Write(make([]byte, 1<<10))
		time.Sleep(100 * time.Millisecond)
		c.Close()
	})
	if res.err == nil || !strings.Contains(res.err.Error(), "the sender stopped after") {
		t.Fatalf("a sender that stopped after 0.1 s of 1 s: got %+v, want an error", res)
	}
}

// A sender that never stops is cut off after Duration, counted from its first
// byte: the sink's clock, not the sender's, bounds the check.
func TestSinkCountsForDurationFromTheFirstByte(t *testing.T) {
	shorten(t, &Duration, 300*time.Millisecond)
	res, took := sinkWith(t, 5*time.Second, func(c net.Conn) {
		time.Sleep(200 * time.Millisecond) // before the clock starts
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	if res.err != nil || res.bytes == 0 || res.elapsed != Duration {
		t.Fatalf("a sender that never stops: got %+v, want bytes counted over %s", res, Duration)
	}
	if took < 500*time.Millisecond {
		t.Errorf("the sink returned after %s, before the first byte plus Duration (500ms)", took)
	}
}
