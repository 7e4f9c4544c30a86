package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// star describes a lab of n namespaces on bridges of at most 1000 ports each
// (a Linux bridge takes at most 1024).
type star struct {
	n       int
	publish bool
}

func (s star) bridges() int { return (s.n + 999) / 1000 }

// addr is namespace i's address on its bridge b: 10.b.x.y/16.
func (s star) addr(i int) (bridge int, addr string) {
	b, j := i/1000, i%1000+2
	return b, fmt.Sprintf("10.%d.%d.%d", b, j/256, j%256)
}

func (s star) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: star%d\nbridges:\n", s.n)
	for i := range s.bridges() {
		fmt.Fprintf(&b, "  br%d: {addresses: [10.%d.0.1/16]", i, i)
		if s.publish {
			b.WriteString(", masquerade: true")
		}
		b.WriteString("}\n")
	}
	b.WriteString("namespaces:\n")
	for i := range s.n {
		br, a := s.addr(i)
		fmt.Fprintf(&b, "  n%d:\n    interfaces: {eth0: {addresses: [%s/16]}}\n    routes: [default via 10.%d.0.1]\n", i, a, br)
		if s.publish {
			fmt.Fprintf(&b, "    publish: [\"%d:80\"]\n", 10000+i)
		}
	}
	b.WriteString("links:\n")
	for i := range s.n {
		br, _ := s.addr(i)
		fmt.Fprintf(&b, "  - [n%d:eth0, br%d:v%d]\n", i, br, i)
	}
	return b.String()
}

// perStepScript builds the star with one ip process per step, as a shell script of ip commands would.
func (s star) perStepScript() string {
	var b strings.Builder
	b.WriteString("set -e\n")
	for i := range s.bridges() {
		fmt.Fprintf(&b, "ip link add br%d type bridge\nip addr add 10.%d.0.1/16 dev br%d\nip link set br%d up\n", i, i, i, i)
	}
	for i := range s.n {
		br, a := s.addr(i)
		fmt.Fprintf(&b, "ip netns add n%d\nip link add v%d type veth peer name eth0 netns n%d\nip link set v%d master br%d\nip link set v%d up\n", i, i, i, i, br, i)
		fmt.Fprintf(&b, "ip -n n%d addr add %s/16 dev eth0\nip -n n%d link set lo up\nip -n n%d link set eth0 up\nip -n n%d route add default via 10.%d.0.1\n", i, a, i, i, i, br)
	}
	return b.String()
}

// batchScript builds the star with ip -batch: one process for the host's steps
// (host.batch: namespaces, veths, bridges), then a script of one process per
// namespace for the steps inside it, which it returns.
func (s star) batchScript(dir string) string {
	var host strings.Builder
	for i := range s.bridges() {
		fmt.Fprintf(&host, "link add br%d type bridge\naddr add 10.%d.0.1/16 dev br%d\nlink set br%d up\n", i, i, i, i)
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	for i := range s.n {
		br, a := s.addr(i)
		fmt.Fprintf(&host, "netns add n%d\nlink add v%d type veth peer name eth0 netns n%d\nlink set v%d master br%d\nlink set v%d up\n", i, i, i, i, br, i)
		inside := fmt.Sprintf("addr add %s/16 dev eth0\nlink set lo up\nlink set eth0 up\nroute add default via 10.%d.0.1\n", a, br)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("n%d.batch", i)), []byte(inside), 0o644)
		fmt.Fprintf(&b, "ip -n n%d -batch %s/n%d.batch\n", i, dir, i)
	}
	os.WriteFile(filepath.Join(dir, "host.batch"), []byte(host.String()), 0o644)
	return b.String()
}

// teardown removes what a baseline built, with one batch, and returns how long
// that took until the kernel had destroyed the namespaces: until the host ends
// of their veths were gone, as netlab's down waits for (ip returns before).
func (s star) teardown(dir string) time.Duration {
	var b strings.Builder
	for i := range s.n {
		fmt.Fprintf(&b, "netns del n%d\n", i)
	}
	for i := range s.bridges() {
		fmt.Fprintf(&b, "link del br%d\n", i)
	}
	path := filepath.Join(dir, "teardown.batch")
	os.WriteFile(path, []byte(b.String()), 0o644)
	start := time.Now()
	exec.Command("ip", "-force", "-batch", path).Run()
	s.waitHostEndsGone()
	took := time.Since(start)
	settle(s.n)
	return took
}

// waitHostEndsGone asks for the host ends one at a time, on one socket, as
// netlab's down does: a dump of every interface every few milliseconds would
// slow the teardown down.
func (s star) waitHostEndsGone() {
	h, err := netlink.NewHandle()
	if err != nil {
		fail("netlink: %v", err)
	}
	defer h.Close()
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < s.n; {
		_, err := h.LinkByName(fmt.Sprintf("v%d", i))
		var gone netlink.LinkNotFoundError
		switch {
		case errors.As(err, &gone):
			i++
			continue
		case err != nil:
			fail("waiting for the host ends of deleted namespaces: %v", err)
		case time.Now().After(deadline):
			fail("v%d, the host end of a deleted namespace, still exists after a minute", i)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits for the kernel to finish destroying deleted namespaces, which it
// does in the background: the next measurement must not pay for this one.
func settle(n int) {
	time.Sleep(time.Duration(500+2*n) * time.Millisecond)
}
