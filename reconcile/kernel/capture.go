package kernel

import (
	"fmt"

	"github.com/gopacket/gopacket/pcapgo"
)

// Capture is an open packet socket on one interface of a namespace.
type Capture = pcapgo.EthernetHandle

// OpenCapture opens a packet socket (AF_PACKET) on an interface of a lab's
// namespace (or the host), in promiscuous mode so a bridge port shows what
// crosses it. The socket is made inside the namespace and belongs to it; reading
// it needs no thread there. Nothing is left when it is closed (or netlab dies):
// a socket is the process's only.
//
// Equivalent to: ip netns exec NS tcpdump -i IF
func (d *Driver) OpenCapture(ns, ifname string) (*Capture, error) {
	var h *Capture
	err := d.RunIn(ns, func() error {
		var err error
		h, err = pcapgo.NewEthernetHandle(ifname)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %s: capture on %s: %w", ns, ifname, err)
	}
	if err := h.SetPromiscuous(true); err != nil {
		h.Close()
		return nil, fmt.Errorf("netns %s: capture on %s: promiscuous mode: %w", ns, ifname, err)
	}
	return h, nil
}
