package hostile

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// dockerIptablesLab is the docker-bridge scenario of docker-facts.md at
// Docker's level: docker0 with web (-p 8000:80) and c2, then a user network
// mynet with c3 and c4, in Docker's iptables layout.
const dockerIptablesLab = `name: dipt
docker: {version: "26.1", firewall: iptables, userland-proxy: PROXY}
host:
  interfaces:
    lan0: {addresses: [192.0.2.1/24]}
networks:
  mynet: {}
containers:
  web: {publish: ["8000:80"], serve: [{http: 80, body: "Hello World"}]}
  c2: {}
  c3: {network: mynet}
  c4: {network: mynet, serve: [{http: 80, body: "Hello from c4"}]}
namespaces:
  lan:
    interfaces:
      eth0: {addresses: [192.0.2.2/24]}
    routes: [172.17.0.0/16 via 192.0.2.1]
links:
  - [lan:eth0, host:lan0]
checks:
  - {from: c2, http: "http://172.17.0.2/", expect: {body: Hello World}}
  - {from: lan, http: "http://192.0.2.1:8000/", expect: {body: Hello World, source: 192.0.2.2}}
  - {from: host, http: "http://127.0.0.1:8000/", expect: {body: Hello World}}
  - {from: c2, http: "http://192.0.2.1:8000/", expect: {body: Hello World}}
  - {from: c3, http: "http://c4/", expect: {body: Hello from c4}}
  - {from: c3, ping: 172.17.0.2, expect: fail}
  - {from: web, ping: 192.0.2.2, expect: {source: 192.0.2.1}}
  - {from: c3, ping: 192.0.2.2, expect: {source: 192.0.2.1}}
`

// dockerFactsSave is the iptables-save block of shared/design/docker-facts.md
// (dockerd 26.1, userland proxy on).
func dockerFactsSave(t *testing.T) string {
	data, err := os.ReadFile("testdata/docker-26.1-iptables-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

var (
	saveCounters = regexp.MustCompile(` \[\d+:\d+\]`)
	saveBridgeID = regexp.MustCompile(`br-[0-9a-f]{12}`)
)

// normalisedSave is iptables-save without its header lines and counters, with
// user networks' bridge ids as br-NET.
func normalisedSave(sb *harness.Sandbox) string {
	var out []string
	for _, line := range strings.Split(sb.OK("iptables-save"), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = saveCounters.ReplaceAllString(line, "")
		out = append(out, saveBridgeID.ReplaceAllString(line, "br-NET"))
	}
	return strings.Join(out, "\n") + "\n"
}

// noproxySave applies docker-facts.md's differences without the proxy: OUTPUT
// loses `! -d 127.0.0.0/8`, DOCKER loses the `-i BR -j RETURN` rules, and
// POSTROUTING gains `-o BR -m addrtype --src-type LOCAL -j MASQUERADE` per
// bridge (after the bridge's own masquerade, as dockerd inserts them); and, a
// difference docker-facts.md does not list (moby's setPerPortNAT adds
// `! -i BR` only when hairpin mode is off), the DNAT rules lose `! -i BR`.
func noproxySave(proxy string) string {
	var out []string
	for _, line := range strings.Split(proxy, "\n") {
		switch {
		case strings.HasPrefix(line, "-A OUTPUT "):
			line = strings.Replace(line, "! -d 127.0.0.0/8 ", "", 1)
		case strings.HasPrefix(line, "-A DOCKER -i ") && strings.HasSuffix(line, " -j RETURN"):
			continue
		case strings.HasPrefix(line, "-A DOCKER ! -i ") && strings.Contains(line, " -j DNAT "):
			line = regexp.MustCompile(`! -i \S+ `).ReplaceAllString(line, "")
		}
		out = append(out, line)
		if m := regexp.MustCompile(`^-A POSTROUTING -s \S+ ! -o (\S+) -j MASQUERADE$`).FindStringSubmatch(line); m != nil {
			out = append(out, "-A POSTROUTING -o "+m[1]+" -m addrtype --src-type LOCAL -j MASQUERADE")
		}
	}
	return strings.Join(out, "\n")
}

// TestDockerIptablesLayoutIsDockerd: with docker: {firewall: iptables}, the
// kernel holds dockerd 26.1's rules as iptables-save prints them for the
// docker-bridge scenario, line for line (proxy mode as in docker-facts.md;
// without the proxy, its documented differences); the lab's checks pass; a
// second up is "No changes."; a rule deleted with iptables -D is drift that up
// repairs; down leaves iptables-save and nft list ruleset as they were.
func TestDockerIptablesLayoutIsDockerd(t *testing.T) {
	for _, proxy := range []string{"true", "false"} {
		t.Run("userland-proxy="+proxy, func(t *testing.T) {
			sb := harness.NewSandbox(t)
			lab := writeLab(t, "dipt.yaml", strings.Replace(dockerIptablesLab, "PROXY", proxy, 1))
			saveBefore, rulesetBefore := sb.OK("sh", "-c", "iptables-save | grep -v '^#'; true"), sb.OK("nft", "list", "ruleset")
			sb.OK("netlab", "up", lab)
			want := dockerFactsSave(t)
			if proxy == "false" {
				want = noproxySave(want)
			}
			if got := normalisedSave(sb); got != want {
				t.Errorf("iptables-save after up:\n%s\nwant (docker-facts.md):\n%s", got, want)
			}
			if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
				t.Errorf("netlab test failed:\n%s%s", res.Stdout, res.Stderr)
			}
			if got := sb.OK("netlab", "up", lab); got != "No changes.\n" {
				t.Errorf("second up printed %q", got)
			}
			sb.OK("iptables", "-D", "FORWARD", "-i", "docker0", "-o", "docker0", "-j", "ACCEPT")
			if plan := sb.OK("netlab", "plan", lab); !strings.Contains(plan, "+ filter: -A FORWARD -i docker0 -o docker0 -j ACCEPT") {
				t.Errorf("the deleted rule is not seen as drift:\n%s", plan)
			}
			sb.OK("netlab", "up", lab)
			if got := normalisedSave(sb); got != want {
				t.Errorf("iptables-save after repair:\n%s\nwant:\n%s", got, want)
			}
			sb.OK("netlab", "down", lab)
			if got := sb.OK("sh", "-c", "iptables-save | grep -v '^#'; true"); got != saveBefore {
				t.Errorf("down left iptables-save as:\n%s\nbefore:\n%s", got, saveBefore)
			}
			if got := sb.OK("nft", "list", "ruleset"); got != rulesetBefore {
				t.Errorf("down left nft list ruleset as:\n%s\nbefore:\n%s", got, rulesetBefore)
			}
		})
	}
}

// TestDockerIptablesRefusedBesideDockerd: a DOCKER chain netlab did not create
// (a running dockerd's) is left alone and the lab refused, with the fix.
func TestDockerIptablesRefusedBesideDockerd(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "dipt.yaml", strings.Replace(dockerIptablesLab, "PROXY", "true", 1))
	sb.OK("iptables", "-N", "DOCKER")
	sb.OK("iptables", "-A", "DOCKER", "-j", "RETURN")
	before := sb.OK("sh", "-c", "iptables-save | grep -v '^#'")
	res := sb.Exec("netlab", "up", lab)
	if res.Code == 0 || !strings.Contains(res.Stdout+res.Stderr, "netlab did not create") {
		t.Errorf("up beside a foreign DOCKER chain: code %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if got := sb.OK("sh", "-c", "iptables-save | grep -v '^#'"); got != before {
		t.Errorf("the foreign chain was touched:\n%s\nbefore:\n%s", got, before)
	}
	sb.Exec("netlab", "down", lab)
}
