package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"netlab/tests/harness"
)

// proxyLab is natLab's docker0 in Docker's default mode, with the userland proxy.
const proxyLab = `
name: proxy
host:
  sysctls: {net.ipv4.ip_forward: 1}
  interfaces:
    lan0: {addresses: [192.0.2.1/24]}
bridges:
  docker0: {addresses: [172.17.0.1/16], masquerade: true, isolated: true, userland-proxy: true}
namespaces:
  web:
    interfaces: {eth0: {addresses: [172.17.0.2/16]}}
    routes: [default via 172.17.0.1]
    publish: ["8000:80"]
  c2:
    interfaces: {eth0: {addresses: [172.17.0.3/16]}}
    routes: [default via 172.17.0.1]
  lan:
    interfaces: {eth0: {addresses: [192.0.2.2/24]}}
links:
  - [web:eth0, docker0]
  - [c2:eth0, docker0]
  - [lan:eth0, host:lan0]
`

// TestUserlandProxyWithRealTraffic: with userland-proxy, the host reaches a
// published port on [::1] and 127.0.0.1 through the proxy, a container reaching
// it by the host's address arrives from the bridge's gateway (the proxy's
// source), and another machine still keeps its own address (DNAT). The rules
// are Docker's proxy mode; a second up changes nothing; down leaves no proxy,
// no rule.
func TestUserlandProxyWithRealTraffic(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, proxyLab)
	got := up(t, d, desired)
	const proxyCmd = "netlab serve --proxy 8000/tcp --to 172.17.0.2:80"
	if !containsLine(got, "+ process host: "+proxyCmd) {
		t.Errorf("the plan does not start the proxy:\n%s", strings.Join(got, "\n"))
	}
	harness.Serve(t, sb.nsPath("web"), ":80")

	sb.mustReach("host", "[::1]:8000", "172.17.0.1")
	sb.mustReach("host", "127.0.0.1:8000", "172.17.0.1")
	sb.mustReach("c2", "192.0.2.1:8000", "172.17.0.1")
	sb.mustReach("c2", "172.17.0.1:8000", "172.17.0.1")
	sb.mustReach("web", "192.0.2.1:8000", "172.17.0.1")
	sb.mustReach("lan", "192.0.2.1:8000", "192.0.2.2")
	sb.mustReach("c2", "172.17.0.2:80", "172.17.0.3")
	if t.Failed() {
		log, _ := exec.Command("sh", "-c", "cat "+sb.stateDir+"/proxy/host.log").CombinedOutput()
		t.Logf("the host's process log:\n%s", log)
	}

	ruleset := sb.mustRun("host", "nft", "list", "ruleset")
	for _, want := range []string{
		`iifname "docker0" counter packets`,
		`return comment "docker0: containers reach published ports through the userland proxy"`,
		`ip daddr != 127.0.0.0/8 fib daddr type local tcp dport @docker0-tcp-ports counter packets`,
	} {
		if !strings.Contains(ruleset, want) {
			t.Errorf("nft list ruleset lacks %q:\n%s", want, ruleset)
		}
	}
	if strings.Contains(ruleset, "fib saddr type local") {
		t.Errorf("proxy mode masquerades the host's own source addresses:\n%s", ruleset)
	}
	if v := strings.TrimSpace(sb.mustRun("host", "cat", "/proc/sys/net/ipv4/conf/docker0/route_localnet")); v != "0" {
		t.Errorf("route_localnet on docker0 = %s, want 0 in proxy mode", v)
	}
	if ports := sb.mustRun("host", "ip", "-d", "link", "show", "master", "docker0"); strings.Contains(ports, "hairpin on") {
		t.Errorf("hairpin mode on a port in proxy mode:\n%s", ports)
	}

	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("second plan: %v", got)
	}
	downLeavesNoProcesses(t, d, "proxy")
	if ruleset := sb.mustRun("host", "nft", "list", "ruleset"); strings.Contains(ruleset, "netlab-proxy") {
		t.Errorf("table left after down:\n%s", ruleset)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// dnsLab is a user-defined network whose containers have Docker's embedded
// DNS server, without forwarding.
const dnsLab = `
name: dns
bridges:
  mynet: {addresses: [172.18.0.1/16]}
namespaces:
  c3:
    interfaces: {eth0: {addresses: [172.18.0.2/16]}}
    serve:
      - dns: {names: {c3: 172.18.0.2, c4: [172.18.0.3, "fd00::3"]}, forward: false, resolv-conf: true}
  c4:
    interfaces: {eth0: {addresses: [172.18.0.3/16]}}
    serve:
      - dns: {names: {c3: 172.18.0.2, c4: 172.18.0.3}}
links:
  - [c3:eth0, mynet]
  - [c4:eth0, mynet]
`

// query asks 127.0.0.11:53 from inside ns, over net ("udp" or "tcp").
func query(t *testing.T, d *Driver, ns, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	var resp *dns.Msg
	err := d.RunIn(ns, func() error {
		m := new(dns.Msg).SetQuestion(name, qtype)
		var err error
		resp, _, err = (&dns.Client{Net: network}).Exchange(m, "127.0.0.11:53")
		return err
	})
	if err != nil {
		t.Fatalf("%s: %s %s over %s: %v", ns, dns.TypeToString[qtype], name, network, err)
	}
	return resp
}

// TestEmbeddedDNSAnswersAt127_0_0_11: the dns serve entry answers the lab's
// names inside the namespace at 127.0.0.11:53 (Docker's DNAT to its own port),
// over UDP and TCP, whatever the case and with the trailing dot; a name it
// does not know gets SERVFAIL without forwarding, as dockerd's resolver with
// no resolver to ask; a second up changes nothing; down leaves no process, no
// rule and no file.
func TestEmbeddedDNSAnswersAt127_0_0_11(t *testing.T) {
	sb := newSandbox(t)
	d := sb.driver()
	desired := harness.DesiredFromText(t, dnsLab)
	up(t, d, desired)

	for _, network := range []string{"udp", "tcp"} {
		resp := query(t, d, "c3", network, "C4.", dns.TypeA)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "172.18.0.3" {
			t.Errorf("%s: c3 asks A C4.: %v", network, resp)
		}
	}
	if resp := query(t, d, "c3", "udp", "c4.", dns.TypeAAAA); len(resp.Answer) != 1 || resp.Answer[0].(*dns.AAAA).AAAA.String() != "fd00::3" {
		t.Errorf("c3 asks AAAA c4.: %v", resp)
	}
	if resp := query(t, d, "c4", "udp", "c3.", dns.TypeA); len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "172.18.0.2" {
		t.Errorf("c4 asks A c3.: %v", resp)
	}
	if resp := query(t, d, "c3", "udp", "web.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
		t.Errorf("c3 asks an unknown name without forwarding: %v, want SERVFAIL", resp)
	}

	resolv, err := os.ReadFile(filepath.Join(sb.etcDir, "c3", "resolv.conf"))
	if err != nil || !strings.HasSuffix(string(resolv), "\nnameserver 127.0.0.11\noptions ndots:0\n") {
		t.Errorf("c3's resolv.conf: %q %v", resolv, err)
	}
	if _, err := os.Stat(filepath.Join(sb.etcDir, "c4", "resolv.conf")); err == nil {
		t.Errorf("c4 has a resolv.conf it did not ask for")
	}
	ruleset := sb.mustRun("c3", "nft", "list", "ruleset")
	for _, want := range []string{
		"ip daddr 127.0.0.11 udp dport 53 counter packets",
		"dnat ip to 127.0.0.11:53053",
		"ip saddr 127.0.0.11 tcp sport 53053 counter packets",
		"snat ip to 127.0.0.11:53",
	} {
		if !strings.Contains(ruleset, want) {
			t.Errorf("c3's ruleset lacks %q:\n%s", want, ruleset)
		}
	}

	if got := planLines(t, d, desired); len(got) != 0 {
		t.Errorf("second plan: %v", got)
	}
	downLeavesNoProcesses(t, d, "dns")
	if _, err := os.Stat(filepath.Join(sb.etcDir, "c3")); err == nil {
		t.Errorf("c3's /etc/netns directory is left after down")
	}
}
