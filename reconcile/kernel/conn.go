package kernel

import (
	"encoding/binary"
	"fmt"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// conn is a plain netlink socket of one namespace (rtnetlink or nfnetlink),
// for the requests and dumps that observation makes on every namespace: a
// thousand namespaces' observation is some four thousand dumps. The netlink
// library's sockets register with Go's poller and read each answer into a
// new 64 KiB buffer; this one is a blocking descriptor (the kernel answers
// at once) that reads into a buffer shared from a pool. Requests on one conn
// are serialised: an answer is read whole before the next request is sent.
type conn struct {
	mu  sync.Mutex
	fd  int
	seq uint32
}

// openConn opens a netlink socket of the given protocol in the calling
// thread's namespace.
func openConn(proto int) (*conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &conn{fd: fd}, nil
}

func (c *conn) close() { unix.Close(c.fd) }

// receiveSize is the receive buffer of a request: what iproute2 uses, and the
// most the kernel puts in one read of a dump.
const receiveSize = 32 << 10

var receiveBuffers = sync.Pool{New: func() any { b := make([]byte, receiveSize); return &b }}

// request sends req and calls each with the payload of every answer (the
// message after its netlink header) until the kernel is done: the end of a
// dump, or the acknowledgement that every other request asks for. The payload
// is valid only during the call. A dump that the kernel marks as interrupted
// (its tables changed meanwhile) returns nl.ErrDumpInterrupted after it is
// read whole, for retryDump. An error the kernel answers is a unix.Errno, with
// the kernel's message when it gives one.
func (c *conn) request(req *nl.NetlinkRequest, each func(payload []byte) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	req.Seq = c.seq
	// Every request ends with a known answer: the end of a dump (the kernel
	// sends no acknowledgement after one), or the acknowledgement.
	req.Flags |= unix.NLM_F_ACK
	return c.exchange(req.Serialize(), req.Seq, each)
}

// batch sends req as the one message of an nf_tables transaction, between
// nfnetlink's batch begin and end, and waits for its acknowledgement. The
// three messages share a sequence number, so that an error about any of them
// is its answer.
func (c *conn) batch(req *nl.NetlinkRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	req.Seq = c.seq
	req.Flags |= unix.NLM_F_ACK
	var msg []byte
	for _, part := range []*nl.NetlinkRequest{batchMark(unix.NFNL_MSG_BATCH_BEGIN, c.seq), req, batchMark(unix.NFNL_MSG_BATCH_END, c.seq)} {
		msg = append(msg, part.Serialize()...)
	}
	return c.exchange(msg, req.Seq, nil)
}

// batchMark is nfnetlink's batch begin or end, for the nf_tables subsystem.
func batchMark(typ int, seq uint32) *nl.NetlinkRequest {
	m := nl.NewNetlinkRequest(typ, 0)
	m.Seq = seq
	m.AddRawData([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}) // res_id in network order
	return m
}

// exchange sends msg and reads the answers to the request of sequence number seq.
func (c *conn) exchange(msg []byte, want uint32, each func(payload []byte) error) error {
	for {
		err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err == nil {
			break
		}
		if err != unix.EINTR { // Go's preemption signals interrupt blocking calls
			return err
		}
	}
	bp := receiveBuffers.Get().(*[]byte)
	defer receiveBuffers.Put(bp)
	var eachErr error
	interrupted := false
	for {
		n, _, err := unix.Recvfrom(c.fd, *bp, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		for b := (*bp)[:n]; len(b) >= unix.SizeofNlMsghdr; {
			size := int(binary.NativeEndian.Uint32(b[0:4]))
			if size < unix.SizeofNlMsghdr || size > len(b) {
				return fmt.Errorf("netlink: malformed answer (%d bytes of %d)", size, len(b))
			}
			typ := binary.NativeEndian.Uint16(b[4:6])
			flags := binary.NativeEndian.Uint16(b[6:8])
			seq := binary.NativeEndian.Uint32(b[8:12])
			payload := b[unix.SizeofNlMsghdr:size]
			b = b[min(nlmAlign(size), len(b)):]
			if seq != want {
				continue // the rest of an earlier request's answer
			}
			interrupted = interrupted || flags&unix.NLM_F_DUMP_INTR != 0
			switch typ {
			case unix.NLMSG_NOOP:
				continue
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if err := answerError(typ, flags, payload); err != nil {
					return err
				}
				if eachErr == nil && interrupted {
					eachErr = nl.ErrDumpInterrupted
				}
				return eachErr
			}
			if eachErr == nil && each != nil {
				eachErr = each(payload) // after an error, the answer is still read to its end
			}
		}
	}
}

// answerError is the error of a final answer: nil for an acknowledgement or
// the end of a dump.
func answerError(typ, flags uint16, payload []byte) error {
	if len(payload) < 4 {
		return nil // a dump's end without an error code
	}
	errno := int32(binary.NativeEndian.Uint32(payload[0:4]))
	if errno == 0 {
		return nil
	}
	err := error(syscall.Errno(-errno))
	if typ != unix.NLMSG_ERROR || flags&unix.NLM_F_ACK_TLVS == 0 || len(payload) < 4+unix.SizeofNlMsghdr {
		return err
	}
	// Extended acknowledgement: the request's header (its payload is not
	// echoed, NLM_F_CAPPED), then attributes, the kernel's message among them.
	echoed := payload[4:]
	skip := unix.SizeofNlMsghdr
	if flags&unix.NLM_F_CAPPED == 0 {
		skip = nlmAlign(int(binary.NativeEndian.Uint32(echoed[0:4])))
	}
	if skip > len(echoed) {
		return err
	}
	attrs, perr := nl.ParseRouteAttr(echoed[skip:])
	if perr != nil {
		return err
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.NLMSGERR_ATTR_MSG {
			return fmt.Errorf("%w: %s", err, trimNul(a.Value))
		}
	}
	return err
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
