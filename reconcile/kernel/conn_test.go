package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hostConn opens a plain rtnetlink socket in the sandbox's host namespace.
func hostConn(t *testing.T, sb *sandbox) *conn {
	t.Helper()
	var c *conn
	if err := inNetns(sb.host, func() (err error) { c, err = openConn(unix.NETLINK_ROUTE); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

// The plain socket reads dumps larger than one read whole, answers requests
// in order after them, and returns the kernel's errors as errnos.
func TestConnReadsLongDumpsAndKernelErrors(t *testing.T) {
	sb := newSandbox(t)
	h := sb.netlinkAt("host")
	for i := range 150 {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("d%d", i)}, PeerName: fmt.Sprintf("d%d", 150+i)}
		if err := h.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
	}
	c := hostConn(t, sb)
	for range 3 { // the same socket, request after request
		links, err := dumpIfaceRows(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(links) != 301 { // lo and the veths
			t.Fatalf("dumpLinks: %d interfaces, want 301", len(links))
		}
		if l, err := getIfaceRow(c, "d299"); err != nil || l.kind != "veth" {
			t.Fatalf("getLink(d299) = %+v, %v; want a veth", l, err)
		}
	}
	if _, err := getIfaceRow(c, "absent"); !isNotFound(err) {
		t.Errorf("getLink(absent): %v, want not found", err)
	}
	spec := vethSpec{name: "d1", netns: int(sb.host)}
	if err := addVeth(c, spec, vethSpec{name: "p1", netns: int(sb.host)}); !errors.Is(err, unix.EEXIST) {
		t.Errorf("addVeth over an existing name: %v, want EEXIST", err)
	}
	if l, err := getIfaceRow(c, "d1"); err != nil || l.kind != "veth" {
		t.Errorf("after a refused request, getLink(d1) = %+v, %v", l, err)
	}
}

// Addresses and routes are decoded as `ip` shows them: the interface's own
// address on a point-to-point link, the main table only, metrics and gateways.
func TestConnDecodesAddressesAndMainRoutes(t *testing.T) {
	sb := newSandbox(t)
	sb.mustRun("host", "ip", "link", "add", "d0", "type", "veth", "peer", "name", "p0")
	sb.mustRun("host", "ip", "link", "set", "p0", "up")
	sb.mustRun("host", "ip", "link", "set", "d0", "up")
	sb.mustRun("host", "ip", "addr", "add", "10.9.0.1/24", "dev", "d0")
	sb.mustRun("host", "ip", "addr", "add", "10.8.0.1", "peer", "10.8.0.2/32", "dev", "d0")
	sb.mustRun("host", "ip", "addr", "add", "2001:db8::1/64", "dev", "d0", "nodad")
	sb.mustRun("host", "ip", "route", "add", "default", "via", "10.9.0.254", "metric", "7")
	sb.mustRun("host", "ip", "route", "add", "192.0.2.0/24", "via", "10.9.0.253", "table", "100")
	sb.mustRun("host", "ip", "-6", "route", "add", "2001:db8:5::/48", "via", "2001:db8::fe")
	c := hostConn(t, sb)
	index := ifindex(t, sb.netlinkAt("host"), "d0")

	addrs, err := dumpAddrs(c, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		if a.index == index && !a.prefix.Addr().IsLinkLocalUnicast() {
			got = append(got, a.prefix.String())
		}
	}
	slices.Sort(got)
	if want := []string{"10.8.0.1/32", "10.9.0.1/24", "2001:db8::1/64"}; !slices.Equal(got, want) {
		t.Errorf("addresses of d0: %v, want %v", got, want)
	}

	routes, err := dumpMainRoutes(c, true)
	if err != nil {
		t.Fatal(err)
	}
	find := func(to string) *routeEntry {
		for i, r := range routes {
			if r.to == netip.MustParsePrefix(to) {
				return &routes[i]
			}
		}
		return nil
	}
	if r := find("0.0.0.0/0"); r == nil || r.via != netip.MustParseAddr("10.9.0.254") || r.metric != 7 || r.index != index || !labRoute(*r) {
		t.Errorf("default route: %+v", r)
	}
	if r := find("2001:db8:5::/48"); r == nil || r.via != netip.MustParseAddr("2001:db8::fe") || r.metric != 1024 || !labRoute(*r) {
		t.Errorf("IPv6 route: %+v", r)
	}
	if r := find("10.9.0.0/24"); r == nil || labRoute(*r) || r.src != netip.MustParseAddr("10.9.0.1") {
		t.Errorf("the kernel's route of 10.9.0.1/24: %+v, want proto kernel with its source", r)
	}
	if r := find("192.0.2.0/24"); r != nil {
		t.Errorf("a route of table 100 was read: %+v", r)
	}
}

// Malformed link messages and attributes (never sent by the kernel, but read
// from a socket all the same) are errors, never a panic or an endless loop.
func TestMalformedLinkMessagesAreErrors(t *testing.T) {
	if _, err := parseIfaceRow(make([]byte, unix.SizeofIfInfomsg-1)); err == nil {
		t.Error("parseIfaceRow accepted a message shorter than its header")
	}
	attr := func(size uint16, n int) []byte { // an attribute header claiming size bytes, in n bytes
		b := make([]byte, n)
		binary.NativeEndian.PutUint16(b, size)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"a length below the header", attr(2, 8)},
		{"a length of zero", attr(0, 8)},
		{"a length past the end", attr(12, 8)},
	} {
		calls := 0
		err := eachAttr(tc.b, func(uint16, []byte) error { calls++; return nil })
		if err == nil {
			t.Errorf("%s: eachAttr accepted it (%d calls)", tc.name, calls)
		}
	}
	msg := append(make([]byte, unix.SizeofIfInfomsg), attr(3, 4)...)
	if _, err := parseIfaceRow(msg); err == nil {
		t.Error("parseIfaceRow accepted an attribute of 3 bytes")
	}
}
