package topology

import (
	"strings"
	"testing"
)

// TestDockerLevelCompiles: what the Docker level gives, compared with
// shared/design/docker-facts.md: IPAM in order from .2 with the gateway .1,
// the MAC 02:42 + IPv4 up to 27 and a stable random one from 28, eth0 and its
// default route, Docker's container sysctls, the host's ip_forward and the
// bridge's accept_ra, docker0 for the default network and br-<12 hex> with the
// next pool (172.18.0.0/16) for a user-defined one, the hosts lines, and on a
// user-defined network resolv.conf at 127.0.0.11 with the embedded DNS's names.
func TestDockerLevelCompiles(t *testing.T) {
	src := `name: facts
docker: {version: VERSION}
networks:
  mynet: {}
containers:
  web: {publish: ["8000:80"]}
  c2: {}
  c3: {network: mynet}
  c4: {network: mynet, aliases: [four]}
`
	out26, err := Expand([]byte(strings.Replace(src, "VERSION", `"26.1"`, 1)), "facts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := string(out26)
	br := DockerBridgeName("facts", "mynet")
	for _, want := range []string{
		"net.ipv4.ip_forward: 1",
		"net.ipv6.conf.docker0.accept_ra: 0",
		"net.ipv6.conf." + br + ".accept_ra: 0",
		"  docker0:\n    addresses: [172.17.0.1/16]",
		"  " + br + ":\n    addresses: [172.18.0.1/16]",
		"masquerade: true\n    isolated: true\n    userland-proxy: true",
		"hostname: " + DockerHostname("facts", "web"),
		`eth0: {addresses: [172.17.0.2/16], mac: "02:42:ac:11:00:02"}`,
		`eth0: {addresses: [172.17.0.3/16], mac: "02:42:ac:11:00:03"}`,
		`eth0: {addresses: [172.18.0.2/16], mac: "02:42:ac:12:00:02"}`,
		`eth0: {addresses: [172.18.0.3/16], mac: "02:42:ac:12:00:03"}`,
		"routes: [default via 172.17.0.1]",
		"routes: [default via 172.18.0.1]",
		"net.ipv4.ip_unprivileged_port_start: 0\n      net.ipv4.ping_group_range: \"0 2147483647\"",
		"      - 127.0.0.1 localhost\n      - ::1 localhost ip6-localhost ip6-loopback\n",
		"      - 172.17.0.2 " + DockerHostname("facts", "web") + "\n",
		"resolv: host",
		"resolv: {nameservers: [127.0.0.11], options: ['ndots:0']}",
		"            c4: 172.18.0.3\n",
		"            four: 172.18.0.3\n",
		"          forward: true",
		"  - ['web:eth0', docker0]",
		"  - ['c3:eth0', " + br + "]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("26.1: the expanded lab lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "web: 172.17") {
		t.Errorf("the default bridge has names in the embedded DNS:\n%s", got)
	}
	if len(br) != 15 || !strings.HasPrefix(br, "br-") {
		t.Errorf("bridge name %q: want br- and 12 hex digits", br)
	}
	out28 := string(expandUnchecked(t, strings.Replace(src, "VERSION", "28", 1)))
	if strings.Contains(out28, "02:42:ac:11:00:02") {
		t.Errorf("28: container MACs are still derived from the address:\n%s", out28)
	}
	if out28 != string(expandUnchecked(t, strings.Replace(src, "VERSION", "28", 1))) {
		t.Error("28: the random MACs are not stable")
	}
}

// expandUnchecked is Expand without validation: what dockerLevel writes.
func expandUnchecked(t *testing.T, src string) []byte {
	t.Helper()
	d := &decoder{file: "facts.yaml", notes: parseNotes{badAddrs: map[string]bool{}, badSections: map[string]bool{}}}
	root := d.document([]byte(src))
	tree := d.dockerLevel(root)
	if len(d.errs) > 0 {
		t.Fatal(d.errs)
	}
	out, err := EncodeYAML(tree)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
