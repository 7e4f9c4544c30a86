package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// traceEvent is one NFT_MSG_TRACE message: the kernel's report that a packet
// marked with `meta nftrace set 1` met a rule, or a chain's end, in some
// namespace. (google/nftables' monitor does not decode these, so it is done here:
// it is a netlink message of attributes, see include/uapi/linux/netfilter/nf_tables.h.)
type traceEvent struct {
	nsid    int // the namespace's id in the listener's namespace; -1: the listener's own
	family  uint8
	id      uint32
	typ     uint32 // NFT_TRACETYPE_RULE, _RETURN, _POLICY
	table   string
	chain   string
	handle  uint64
	verdict int32  // NF_ACCEPT, NF_DROP, NFT_JUMP, ...
	target  string // the chain of a jump or goto
	policy  uint32
	hasPol  bool
	iif     uint32
	oif     uint32
	nfproto uint32
	ll      []byte // the link-layer header (an Ethernet frame's first 14 bytes)
	network []byte
	trans   []byte
}

// traceMonitor listens, from the host, to the trace events of every namespace
// that has an id there (NETLINK_LISTEN_ALL_NSID): one socket, so the events of
// a packet crossing several namespaces arrive in the order the kernel sent them.
type traceMonitor struct {
	fd     int
	mu     sync.Mutex
	events []traceEvent
	errs   []error
	done   chan struct{}
}

// openTraceMonitor opens the listener in the calling thread's namespace.
func openTraceMonitor() (*traceMonitor, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("open nfnetlink socket: %w", err)
	}
	fail := func(what string, err error) (*traceMonitor, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("bind nfnetlink socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_LISTEN_ALL_NSID, 1); err != nil {
		return fail("listen to every namespace", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_NFTRACE); err != nil {
		return fail("join the nftables trace group", err)
	}
	// A timeout lets the reader see close: a blocked recvmsg would not.
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("set receive timeout", err)
	}
	return &traceMonitor{fd: fd, done: make(chan struct{})}, nil
}

// run reads events until stop is closed.
func (m *traceMonitor) run(stop <-chan struct{}) {
	defer close(m.done)
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(4)*4)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(m.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			m.mu.Lock()
			m.errs = append(m.errs, fmt.Errorf("read trace events: %w", err))
			m.mu.Unlock()
			if errors.Is(err, unix.ENOBUFS) {
				continue // some were lost; say so, and go on
			}
			return
		}
		nsid := -1
		if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, c := range cmsgs {
				if c.Header.Level == unix.SOL_NETLINK && c.Header.Type == unix.NETLINK_LISTEN_ALL_NSID && len(c.Data) >= 4 {
					nsid = int(int32(binary.NativeEndian.Uint32(c.Data)))
				}
			}
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, msg := range msgs {
			if msg.Header.Type != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_TRACE {
				continue
			}
			if e, err := decodeTrace(msg.Data); err == nil {
				e.nsid = nsid
				m.mu.Lock()
				m.events = append(m.events, e)
				m.mu.Unlock()
			}
		}
	}
}

func (m *traceMonitor) close() { unix.Close(m.fd) }

// snapshot returns the events read so far.
func (m *traceMonitor) snapshot() ([]traceEvent, []error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]traceEvent(nil), m.events...), append([]error(nil), m.errs...)
}

// decodeTrace decodes the attributes of one NFT_MSG_TRACE message (after its
// nfgenmsg header). Numbers are big-endian, as in all of nf_tables.
func decodeTrace(b []byte) (traceEvent, error) {
	var e traceEvent
	if len(b) < 4 {
		return e, errors.New("short trace message")
	}
	e.family = b[0]
	attrs, err := nl.ParseRouteAttr(b[4:])
	if err != nil {
		return e, err
	}
	u32 := func(v []byte) uint32 {
		if len(v) < 4 {
			return 0
		}
		return binary.BigEndian.Uint32(v)
	}
	for _, a := range attrs {
		switch a.Attr.Type & nlaTypeMask {
		case unix.NFTA_TRACE_TABLE:
			e.table = string(trimNul(a.Value))
		case unix.NFTA_TRACE_CHAIN:
			e.chain = string(trimNul(a.Value))
		case unix.NFTA_TRACE_RULE_HANDLE:
			if len(a.Value) >= 8 {
				e.handle = binary.BigEndian.Uint64(a.Value)
			}
		case unix.NFTA_TRACE_TYPE:
			e.typ = u32(a.Value)
		case unix.NFTA_TRACE_ID:
			e.id = u32(a.Value)
		case unix.NFTA_TRACE_VERDICT:
			inner, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				continue
			}
			for _, v := range inner {
				switch v.Attr.Type & nlaTypeMask {
				case unix.NFTA_VERDICT_CODE:
					e.verdict = int32(u32(v.Value))
				case unix.NFTA_VERDICT_CHAIN:
					e.target = string(trimNul(v.Value))
				}
			}
		case unix.NFTA_TRACE_POLICY:
			e.policy, e.hasPol = u32(a.Value), true
		case unix.NFTA_TRACE_IIF:
			e.iif = u32(a.Value)
		case unix.NFTA_TRACE_OIF:
			e.oif = u32(a.Value)
		case unix.NFTA_TRACE_NFPROTO:
			e.nfproto = u32(a.Value)
		case unix.NFTA_TRACE_LL_HEADER:
			e.ll = append([]byte(nil), a.Value...)
		case unix.NFTA_TRACE_NETWORK_HEADER:
			e.network = append([]byte(nil), a.Value...)
		case unix.NFTA_TRACE_TRANSPORT_HEADER:
			e.trans = append([]byte(nil), a.Value...)
		}
	}
	return e, nil
}

// nlaTypeMask strips the nested and byte-order flags of an attribute's type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// The netfilter verdicts (include/uapi/linux/netfilter.h).
const (
	nfDrop   = 0
	nfAccept = 1
	nfStolen = 2
	nfQueue  = 3
)

// verdictText names a verdict as nft prints it.
func verdictText(code int32, target string) string {
	switch code {
	case nfAccept:
		return "accept"
	case nfDrop:
		return "drop"
	case nfQueue:
		return "queue"
	case nfStolen:
		return "stolen"
	case unix.NFT_CONTINUE:
		return "continue"
	case unix.NFT_BREAK:
		return "break"
	case unix.NFT_JUMP:
		return "jump " + target
	case unix.NFT_GOTO:
		return "goto " + target
	case unix.NFT_RETURN:
		return "return"
	}
	if code&0xff == nfDrop { // NF_DROP_ERR
		return "drop"
	}
	return fmt.Sprintf("verdict %d", code)
}
