package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// udpBound says whether a UDP socket is bound to port, on any address, in a
// namespace: how up knows a UDP proxy is ready.
//
// Equivalent to: ip netns exec NS ss -Hlun 'sport = :PORT'
func (d *Driver) udpBound(ns string, port int) (bool, error) {
	found := false
	err := d.RunIn(ns, func() error {
		for _, name := range []string{"udp", "udp6"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + name)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				return err
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Scan() // the header
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) < 4 || f[3] != "07" { // 07: unconnected
					continue
				}
				_, hexPort, _ := strings.Cut(f[1], ":")
				if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
					found = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("netns %s: list bound UDP sockets: %w", ns, err)
	}
	return found, nil
}
