package reconcile_test

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/tests/harness"
	"netlab/topology"
)

// TestIptablesLayoutByRelease: the compiler alone (no kernel) writes, for the
// docker-bridge scenario, what each dockerd release writes, with and without
// the userland proxy, and with a third network created with --internal: the
// layout's iptables-save text is the one the kernel test compares the kernel
// with (tests/hostile/testdata/dockerd-*, each naming the moby source it
// comes from).
func TestIptablesLayoutByRelease(t *testing.T) {
	bridgeID := regexp.MustCompile(`br-[0-9a-f]{12}`)
	for _, version := range []string{"20.10", "26.1", "28", "29"} {
		for _, variant := range []string{"proxy", "noproxy", "proxy-internal", "noproxy-internal"} {
			proxy := strings.HasPrefix(variant, "proxy")
			lab := `name: dipt
docker: {version: "` + version + `", firewall: iptables, userland-proxy: ` + strconv.FormatBool(proxy) + `}
networks: {mynet: {}}
containers:
  web: {publish: ["8000:80"]}
  c2: {}
  c3: {network: mynet}
  c4: {network: mynet}
`
			internal := strings.HasSuffix(variant, "-internal")
			if internal {
				lab = strings.Replace(lab, "networks: {mynet: {}}", "networks: {mynet: {}, back: {internal: true}}", 1) +
					"  c5: {network: back}\n  c6: {network: back}\n"
			}
			s := harness.DesiredFromText(t, lab)
			got := s.Iptables[r.Host].IptablesSave()
			if internal {
				got = strings.ReplaceAll(got, topology.DockerBridgeName("dipt", "back"), "br-INT")
			}
			got = bridgeID.ReplaceAllString(got, "br-NET")
			layout, mode := r.IptablesLayoutOf(version), strings.TrimSuffix(variant, "-internal")
			data, err := os.ReadFile("../tests/hostile/testdata/dockerd-" + layout + "-" + variant + ".iptables-save")
			if err != nil {
				t.Fatal(err)
			}
			want := regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(string(data), "")
			if got != want {
				t.Errorf("docker %s, %s:\n%s\nwant:\n%s", version, variant, got, want)
			}
			if wantDockerd := strings.TrimSuffix(layout+" "+mode, " proxy"); s.Iptables[r.Host].Dockerd != wantDockerd {
				t.Errorf("docker %s, %s: Dockerd %q, want %q", version, variant, s.Iptables[r.Host].Dockerd, wantDockerd)
			}
		}
	}
}

// TestIptablesInternalIsMobysGolden: the network of moby's iptabler test
// (br-dummy, 192.168.0.0/24, an endpoint 192.168.0.2) made internal, in the
// iptables layout of 28 and 29, with and without the userland proxy (moby's
// hairpin false, true) and icc on and off, is what moby's golden of that
// configuration says (testdata/moby/iptabler-28: v28.5.2's
// TestIptabler_*.golden; iptabler-29: TestIptabler/*.golden at b985e2313a),
// counters aside, once the daemon's own part, which moby's iptabler test does
// not write, is taken out of netlab's text: DOCKER-USER and FORWARD's jump to
// it (daemon/libnetwork/firewall_linux.go) and FORWARD's policy DROP
// (setup_ip_forwarding.go); moby's test also lists the raw table it made
// empty, where netlab has none (no rule of an internal network goes there).
func TestIptablesInternalIsMobysGolden(t *testing.T) {
	daemon := strings.NewReplacer(":DOCKER-USER -\n", "", "-A FORWARD -j DOCKER-USER\n", "", ":FORWARD DROP\n", ":FORWARD ACCEPT\n")
	counters := regexp.MustCompile(` \[0:0\]`)
	for _, release := range []string{"28", "29"} {
		for _, proxy := range []bool{true, false} {
			for _, icc := range []bool{true, false} {
				lab := fmt.Sprintf(`name: moby
bridges:
  br-dummy: {addresses: [192.168.0.1/24], internal: true, icc: %v, userland-proxy: %v, firewall: iptables, docker-version: "%s"}
namespaces:
  ep: {interfaces: {eth0: {addresses: [192.168.0.2/24]}}}
links:
  - [ep:eth0, br-dummy]
`, icc, proxy, release)
				s := harness.DesiredFromText(t, lab)
				got := "*raw\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\nCOMMIT\n" + daemon.Replace(s.Iptables[r.Host].IptablesSave())
				name := fmt.Sprintf("testdata/moby/iptabler-%s/hairpin=%v,internal=true,icc=%v__iptables.golden", release, !proxy, icc)
				data, err := os.ReadFile(name)
				if err != nil {
					t.Fatal(err)
				}
				if want := counters.ReplaceAllString(string(data), ""); got != want {
					t.Errorf("%s:\n%s\nwant (moby's golden):\n%s", name, got, want)
				}
			}
		}
	}
}

// TestPublishedThroughANetworkNotInternal: a container on an internal
// network and on another one publishes its port on the other (Docker maps
// ports on the container's gateway network, never an internal one), even
// when the internal network is its first.
func TestPublishedThroughANetworkNotInternal(t *testing.T) {
	s := harness.DesiredFromText(t, `name: pub
docker: {version: "29", firewall: iptables}
networks: {back: {internal: true}, mynet: {}}
containers:
  app: {networks: [back, mynet], publish: ["9000:80"]}
`)
	save := s.Iptables[r.Host].IptablesSave()
	back, mynet := topology.DockerBridgeName("pub", "back"), topology.DockerBridgeName("pub", "mynet")
	for _, want := range []string{
		"-A DOCKER ! -i " + mynet + " -p tcp -m tcp --dport 9000 -j DNAT --to-destination 172.19.0.2:80",
		"-A DOCKER -d 172.19.0.2/32 ! -i " + mynet + " -o " + mynet + " -p tcp -m tcp --dport 80 -j ACCEPT",
		"-A DOCKER-INTERNAL ! -s 172.18.0.0/16 -o " + back + " -j DROP",
	} {
		if !strings.Contains(save, want) {
			t.Errorf("no %q in:\n%s", want, save)
		}
	}
	if strings.Contains(save, "172.18.0.2:80") {
		t.Errorf("the port is published on the internal network:\n%s", save)
	}
}
