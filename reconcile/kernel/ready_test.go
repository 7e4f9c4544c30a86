package kernel

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// A readiness URL on localhost is tried from inside the namespace on both
// loopback addresses, so a server there that listens on ::1 only is found. Go's
// dialer used to try the second address from a goroutine of its own, on a
// thread in netlab's namespace, where nothing (or someone else's server) listens.
func TestLocalhostReadinessStaysInTheNamespace(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	// An IPv6 address turns IPv6 on in web, and with it ::1 on lo.
	up(t, d, harness.DesiredFromText(t, `name: eyes
namespaces:
  web:
    interfaces: {eth0: {addresses: [fd00::2/64]}}
  peer:
    interfaces: {eth0: {addresses: [fd00::3/64]}}
links:
  - [web:eth0, peer:eth0]
`))
	var ln net.Listener
	if err := d.RunIn("web", func() (err error) {
		ln, err = net.Listen("tcp6", "[::1]:8093")
		return err
	}); err != nil {
		t.Fatalf("listen on [::1]:8093 in web : %v", err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	if status, err := d.httpStatus("web", "http://localhost:8093/"); err != nil || status != http.StatusOK {
		t.Errorf("GET http://localhost:8093/ in web, served on [::1]: status %d, %v; want 200", status, err)
	}
}

// The port a readiness check looks at is taken only by a socket that would
// answer it: any listener for {tcp: PORT}; for an http URL, one bound to the
// URL's address or to any address.
func TestBoundSocketsAndWhatTheyAnswer(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1
`)
	got := boundSockets(table, "tcp")
	want := []boundSocket{
		{netip.MustParseAddr("127.0.0.1"), 8080, 111},
		{netip.MustParseAddr("0.0.0.0"), 80, 222},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("boundSockets: %v, want %v (the connected socket left out)", got, want)
	}
	six := boundSockets([]byte(`  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 100 0 0 10 0
`), "tcp")
	if len(six) != 1 || six[0] != (boundSocket{netip.MustParseAddr("::1"), 8082, 444}) {
		t.Errorf("boundSockets of tcp6: %v, want ::1 port 8082 inode 444", six)
	}
	lo, other, any4 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.IPv4Unspecified()
	for _, c := range []struct {
		bound, want netip.Addr
		answers     bool
	}{
		{lo, netip.Addr{}, true}, // {tcp: PORT}: any listener
		{lo, lo, true},
		{lo, other, false},
		{any4, other, true},
		{lo, any4, true},     // localhost: a loopback listener
		{other, any4, false}, // localhost: not another address's
	} {
		if got := answersOn(c.bound, c.want); got != c.answers {
			t.Errorf("answersOn(%v, %v) = %v, want %v", c.bound, c.want, got, c.answers)
		}
	}
}

// A header with a line break (a serve: body of two lines) is still found: the
// tail is what the command wrote after it, not the whole log.
func TestLogTailFindsAHeaderWithALineBreak(t *testing.T) {
	s := newStateDir(t.TempDir() + "/state")
	if err := s.ensure("tail"); err != nil {
		t.Fatal(err)
	}
	log, path, err := s.openLog("tail", "web")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(log, "an earlier run's line")
	header := startHeader("netlab serve --http 80 --body 'a\nb'")
	logHeader(log, header)
	fmt.Fprintln(log, "bind: address already in use")
	log.Close()
	got := s.logTail(path, header)
	if !strings.Contains(got, "bind: address already in use") || strings.Contains(got, "earlier run") {
		t.Errorf("tail of the log after a two-line header:\n%s", got)
	}
}
