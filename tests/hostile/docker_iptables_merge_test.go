package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// secondIptablesLab is a second lab in Docker's iptables layout, written at
// the low level (a Docker-level lab would want docker0 too): one more network
// of the same dockerd, br-lab2, with b1 publishing 9000:80 and b2.
const secondIptablesLab = `name: diptb
host:
  sysctls: {net.ipv4.ip_forward: 1}
bridges:
  br-lab2:
    addresses: [172.30.0.1/16]
    masquerade: true
    isolated: true
    userland-proxy: true
    firewall: iptables
    docker-version: "VERSION"
namespaces:
  b1:
    interfaces: {eth0: {addresses: [172.30.0.2/16]}}
    routes: [default via 172.30.0.1]
    publish: ["9000:80"]
    serve: [{http: 80, body: "Hello from b1"}]
  b2:
    interfaces: {eth0: {addresses: [172.30.0.3/16]}}
    routes: [default via 172.30.0.1]
links:
  - [b1:eth0, br-lab2]
  - [b2:eth0, br-lab2]
checks:
  - {from: b2, http: "http://172.30.0.2/", expect: {body: Hello from b1}}
  - {from: host, http: "http://127.0.0.1:9000/", expect: {body: Hello from b1}}
  - {from: b2, http: "http://192.0.2.1:8000/", expect: {body: Hello World}}
  - {from: b2, ping: 172.17.0.3, expect: fail}
`

// foreignSave is iptables-save without the machine's own rule the test put
// there before the labs (it must stay, and is checked apart).
func foreignSave(t *testing.T, sb *harness.Sandbox, foreign string) string {
	t.Helper()
	save := normalisedSave(sb, nil)
	if !strings.Contains(save, foreign+"\n") {
		t.Errorf("the machine's own rule %q is gone:\n%s", foreign, save)
	}
	return strings.Replace(save, foreign+"\n", "", 1)
}

// TestDockerIptablesTwoLabsMerge: two labs in the same dockerd's iptables
// layout share one namespace as two networks of one dockerd: the second
// lab's rules go where dockerd puts a newer network's (every -I above the
// first lab's, every -A below), the daemon's rules once; each lab's checks
// pass and a second up of either is "No changes."; a rule of the second lab
// deleted by hand is its drift only, repaired by its up; down of the first
// leaves exactly the second's as dockerd would have them, and down of the
// last puts back what was there before (FORWARD's policy ACCEPT, a rule of
// the machine's own in INPUT). Lab of another release beside them is refused.
func TestDockerIptablesTwoLabsMerge(t *testing.T) {
	for _, version := range []string{"26.1", "29"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			sb := harness.NewSandbox(t)
			foreign := "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"
			sb.OK("iptables", "-P", "FORWARD", "ACCEPT")
			sb.OK("iptables", "-A", "INPUT", "-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT")
			saveBefore, rulesetBefore := rawSave(sb), sb.OK("nft", "list", "ruleset")
			a := writeLab(t, "dipt.yaml", dockerIptablesFile(version, "true"))
			b := writeLab(t, "diptb.yaml", strings.ReplaceAll(secondIptablesLab, "VERSION", version))
			sb.OK("netlab", "up", a)
			sb.OK("netlab", "up", b)
			two := dockerdSave(t, "dockerd-"+version+"-proxy-two-labs")
			if got := foreignSave(t, sb, foreign); got != two {
				t.Errorf("iptables-save with both labs:\n%s\nwant:\n%s", got, two)
			}
			for _, lab := range []string{a, b} {
				if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
					t.Errorf("netlab test %s failed:\n%s%s", lab, res.Stdout, res.Stderr)
				}
				if got := sb.OK("netlab", "up", lab); got != "No changes.\n" {
					t.Errorf("second up of %s printed %q", lab, got)
				}
			}
			sb.OK("iptables", "-t", "nat", "-D", "POSTROUTING", "-s", "172.30.0.0/16", "!", "-o", "br-lab2", "-j", "MASQUERADE")
			if got := sb.OK("netlab", "plan", a); got != "No changes.\n" {
				t.Errorf("the second lab's drift is the first's too:\n%s", got)
			}
			if plan := sb.OK("netlab", "plan", b); !strings.Contains(plan, "+ nat: -A POSTROUTING -s 172.30.0.0/16 ! -o br-lab2 -j MASQUERADE") {
				t.Errorf("the second lab's drift is not seen:\n%s", plan)
			}
			sb.OK("netlab", "up", b)
			if got := foreignSave(t, sb, foreign); got != two {
				t.Errorf("iptables-save after the repair:\n%s\nwant:\n%s", got, two)
			}
			other := strings.Replace(dockerIptablesFile("28", "true"), "name: dipt", "name: dipt28", 1)
			other = strings.NewReplacer("docker0", "docker9", "172.17.", "172.27.").Replace(other)
			if res := sb.Exec("netlab", "plan", writeLab(t, "dipt28.yaml", other)); res.Code == 0 || !strings.Contains(res.Stderr, "one dockerd writes one layout") {
				t.Errorf("a lab of another release beside them: code %d\n%s%s", res.Code, res.Stdout, res.Stderr)
			}
			sb.OK("netlab", "down", a)
			if got, want := foreignSave(t, sb, foreign), dockerdSave(t, "dockerd-"+version+"-proxy-second-lab"); got != want {
				t.Errorf("iptables-save after the first lab's down:\n%s\nwant:\n%s", got, want)
			}
			sb.OK("netlab", "down", b)
			if got := rawSave(sb); got != saveBefore {
				t.Errorf("down of both left iptables-save as:\n%s\nbefore:\n%s", got, saveBefore)
			}
			if got := sb.OK("nft", "list", "ruleset"); got != rulesetBefore {
				t.Errorf("down of both left nft list ruleset as:\n%s\nbefore:\n%s", got, rulesetBefore)
			}
		})
	}
}
