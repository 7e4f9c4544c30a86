package kernel

import (
	"testing"

	"github.com/vishvananda/netlink/nl"
)

// TestBridgeSnoopingAttribute: a bridge's IFLA_INFO_DATA says whether snooping
// is off, and a kernel built without snooping leaves the attribute out.
func TestBridgeSnoopingAttribute(t *testing.T) {
	data := func(attrs ...*nl.RtAttr) []byte {
		var b []byte
		for _, a := range attrs {
			b = append(b, a.Serialize()...)
		}
		return b
	}
	hello := nl.NewRtAttr(nl.IFLA_BR_HELLO_TIME, nl.Uint32Attr(200))
	for _, c := range []struct {
		name        string
		data        []byte
		off, absent bool
	}{
		{"on", data(hello, nl.NewRtAttr(nl.IFLA_BR_MCAST_SNOOPING, []byte{1})), false, false},
		{"off", data(nl.NewRtAttr(nl.IFLA_BR_MCAST_SNOOPING, []byte{0}), hello), true, false},
		{"absent", data(hello), false, true},
	} {
		if off, absent := bridgeSnooping(c.data); off != c.off || absent != c.absent {
			t.Errorf("%s: off=%v absent=%v, want %v %v", c.name, off, absent, c.off, c.absent)
		}
	}
}
