package hostile

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"netlab/tests/harness"
	"netlab/topology"
)

// dockerIptablesLab is the docker-bridge scenario of docker-facts.md at
// Docker's level: docker0 with web (-p 8000:80) and c2, then a user network
// mynet with c3 and c4, in Docker's iptables layout of release VERSION.
const dockerIptablesLab = `name: dipt
docker: {version: "VERSION", firewall: iptables, userland-proxy: PROXY}
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
  - {from: lan, tcp: "172.17.0.2:80"DIRECT}
  - {from: web, ping: 192.0.2.2, expect: {source: 192.0.2.1}}
  - {from: c3, ping: 192.0.2.2, expect: {source: 192.0.2.1}}
`

func dockerIptablesFile(version, proxy string) string {
	// A published port reached directly at the container's address, routed by
	// the host: up to 26.1 FORWARD lets it through; since 28.2 the raw table
	// drops it.
	direct := ""
	if version == "28" || version == "29" {
		direct = ", expect: fail"
	}
	return strings.NewReplacer("VERSION", version, "PROXY", proxy, "DIRECT", direct).Replace(dockerIptablesLab)
}

// withInternal adds to the docker-bridge scenario (dockerIptablesLab,
// dockerNftablesLab) a third network created with --internal, back
// (172.19.0.0/16), with c5 serving HTTP and c6, and checks that its
// containers reach each other (by name) and the host reaches them, while
// nothing enters it: neither lan (routed to it by the host) nor a container
// of another network; and nothing leaves it (no default route either, as
// Docker gives none on an internal network).
func withInternal(lab string) string {
	return strings.NewReplacer(
		"  mynet: {}\n", "  mynet: {}\n  back: {internal: true}\n",
		"\nnamespaces:\n", "\n  c5: {network: back, serve: [{http: 80, body: \"Hello from c5\"}]}\n  c6: {network: back}\nnamespaces:\n",
		"routes: [172.17.0.0/16 via 192.0.2.1]", "routes: [172.17.0.0/16 via 192.0.2.1, 172.19.0.0/16 via 192.0.2.1]",
	).Replace(lab) + `  - {from: c6, http: "http://c5/", expect: {body: Hello from c5}}
  - {from: host, http: "http://172.19.0.2/", expect: {body: Hello from c5}}
  - {from: lan, tcp: "172.19.0.2:80", expect: fail}
  - {from: c3, tcp: "172.19.0.2:80", expect: fail}
  - {from: c5, ping: 192.0.2.2, expect: fail}
`
}

// internalNames names the internal network's bridge br-INT in normalised
// listings (the other user network's is br-NET).
func internalNames(lab string) map[string]string {
	return map[string]string{topology.DockerBridgeName(lab, "back"): "br-INT"}
}

// dockerdSave is a testdata file of dockerd's iptables-save (see the comment
// at its top for where it comes from), without its comment lines.
func dockerdSave(t *testing.T, name string) string {
	data, err := os.ReadFile("testdata/" + name + ".iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

var (
	saveCounters = regexp.MustCompile(` \[\d+:\d+\]`)
	saveBridgeID = regexp.MustCompile(`br-[0-9a-f]{12}`)
)

// normalisedSave is iptables-save without its header lines and counters, with
// user networks' bridge ids as br-NET (br-NET2 for names).
func normalisedSave(sb *harness.Sandbox, names map[string]string) string {
	var out []string
	for _, line := range strings.Split(sb.OK("iptables-save"), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = saveCounters.ReplaceAllString(line, "")
		for id, name := range names {
			line = strings.ReplaceAll(line, id, name)
		}
		out = append(out, saveBridgeID.ReplaceAllString(line, "br-NET"))
	}
	return strings.Join(out, "\n") + "\n"
}

// layoutUp brings a lab of one of Docker's layouts up, runs check (its
// listing is Docker's), then the lab's checks, then a second up, which has
// nothing to do; what prefixes the errors.
func layoutUp(t *testing.T, sb *harness.Sandbox, lab, what string, check func()) {
	t.Helper()
	sb.OK("netlab", "up", lab)
	check()
	if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
		t.Errorf("%snetlab test failed:\n%s%s", what, res.Stdout, res.Stderr)
	}
	if got := sb.OK("netlab", "up", lab); got != "No changes.\n" {
		t.Errorf("%ssecond up printed %q", what, got)
	}
}

// layoutDown takes the lab down and checks that iptables-save and nft list
// ruleset are as they were before it (save, ruleset).
func layoutDown(t *testing.T, sb *harness.Sandbox, lab, what, save, ruleset string) {
	t.Helper()
	sb.OK("netlab", "down", lab)
	if got := rawSave(sb); got != save {
		t.Errorf("%sdown left iptables-save as:\n%s\nbefore:\n%s", what, got, save)
	}
	if got := sb.OK("nft", "list", "ruleset"); got != ruleset {
		t.Errorf("%sdown left nft list ruleset as:\n%s\nbefore:\n%s", what, got, ruleset)
	}
}

func rawSave(sb *harness.Sandbox) string {
	return sb.OK("sh", "-c", "iptables-save | grep -v '^#'; true")
}

// TestDockerIptablesLayoutIsDockerd: with docker: {firewall: iptables}, for
// each release (20.10, 26.1, 28, 29) with and without the userland proxy, the
// kernel holds that dockerd's rules as iptables-save prints them for the
// docker-bridge scenario, line for line (testdata/dockerd-*.iptables-save:
// 26.1 with the proxy as docker-facts.md observed it, the others derived from
// moby's code and goldens, named in each file); the lab's checks pass; a
// second up is "No changes."; a rule of the lab's and one of the daemon's
// deleted with iptables -D, and FORWARD's policy set back to ACCEPT, are drift
// that plan shows and up repairs, while the admin's rule in DOCKER-USER is not;
// down leaves iptables-save and nft list ruleset as they were. Then the
// scenario with a third network, internal (withInternal), in the same
// sandbox: iptables-save is that dockerd's (testdata/dockerd-*-internal,
// derived from moby's setupInternalNetworkRules and iptabler goldens), the
// checks pass, a second up is "No changes.", down restores.
func TestDockerIptablesLayoutIsDockerd(t *testing.T) {
	for _, version := range []string{"20.10", "26.1", "28", "29"} {
		layout := version
		if version == "20.10" {
			layout = "26.1" // the same rules (docker-facts.md)
		}
		for _, proxy := range []string{"true", "false"} {
			mode := map[string]string{"true": "proxy", "false": "noproxy"}[proxy]
			t.Run(version+"/"+mode, func(t *testing.T) {
				t.Parallel()
				sb := harness.NewSandbox(t)
				lab := writeLab(t, "dipt.yaml", dockerIptablesFile(version, proxy))
				saveBefore, rulesetBefore := rawSave(sb), sb.OK("nft", "list", "ruleset")
				want := dockerdSave(t, "dockerd-"+layout+"-"+mode)
				layoutUp(t, sb, lab, "", func() {
					if got := normalisedSave(sb, nil); got != want {
						t.Errorf("iptables-save after up:\n%s\nwant (dockerd %s, %s):\n%s", got, version, mode, want)
					}
				})
				sb.OK("iptables", "-t", "nat", "-D", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE")
				sb.OK("iptables", "-D", "FORWARD", "-j", "DOCKER-USER")
				sb.OK("iptables", "-P", "FORWARD", "ACCEPT")
				plan := sb.OK("netlab", "plan", lab)
				for _, line := range []string{"+ nat: -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
					"+ filter: -A FORWARD -j DOCKER-USER", "+ filter: :FORWARD DROP", "- filter: :FORWARD ACCEPT"} {
					if !strings.Contains(plan, line) {
						t.Errorf("drift not seen: no %q in the plan:\n%s", line, plan)
					}
				}
				sb.OK("netlab", "up", lab)
				if got := normalisedSave(sb, nil); got != want {
					t.Errorf("iptables-save after repair:\n%s\nwant:\n%s", got, want)
				}
				// DOCKER-USER is the admin's: a rule there is not drift, and
				// goes with the chain when the last lab does.
				sb.OK("iptables", "-I", "DOCKER-USER", "-s", "203.0.113.9", "-j", "DROP")
				if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
					t.Errorf("an admin's rule in DOCKER-USER is drift:\n%s", got)
				}
				layoutDown(t, sb, lab, "", saveBefore, rulesetBefore)

				lab = writeLab(t, "dipt-internal.yaml", withInternal(dockerIptablesFile(version, proxy)))
				layoutUp(t, sb, lab, "with an internal network: ", func() {
					if got, want := normalisedSave(sb, internalNames("dipt")), dockerdSave(t, "dockerd-"+layout+"-"+mode+"-internal"); got != want {
						t.Errorf("iptables-save with an internal network:\n%s\nwant (dockerd %s, %s):\n%s", got, version, mode, want)
					}
				})
				layoutDown(t, sb, lab, "with an internal network: ", saveBefore, rulesetBefore)
			})
		}
	}
}

// TestDockerIptablesRefusedBesideDockerd: a chain of Docker's names netlab did
// not create (a running dockerd's) is a conflict that plan reports, and up
// refuses before any change: the kernel is as it was.
func TestDockerIptablesRefusedBesideDockerd(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "dipt.yaml", dockerIptablesFile("29", "true"))
	sb.OK("iptables", "-N", "DOCKER-FORWARD")
	sb.OK("iptables", "-A", "DOCKER-FORWARD", "-j", "RETURN")
	before, kernel := rawSave(sb), kernelState(sb)
	for _, cmd := range []string{"plan", "up"} {
		res := sb.Exec("netlab", cmd, lab)
		if res.Code == 0 || !strings.Contains(res.Stderr, "nothing was changed") ||
			!strings.Contains(res.Stderr, "table ip filter already has a chain DOCKER-FORWARD that netlab did not create") {
			t.Errorf("%s beside a foreign DOCKER-FORWARD chain: code %d\n%s%s", cmd, res.Code, res.Stdout, res.Stderr)
		}
	}
	if got := rawSave(sb); got != before {
		t.Errorf("the foreign chain was touched:\n%s\nbefore:\n%s", got, before)
	}
	if got := kernelState(sb); got != kernel {
		t.Errorf("a refused up changed the kernel:\n%s\nbefore:\n%s", got, kernel)
	}
}

// TestDockerIptablesDockerdAfterTheFirstLab: a dockerd that starts after the
// first lab is up and writes its docker0 rules into the Docker chains netlab
// created (and a jump to DOCKER in FORWARD), and a chain of Docker's name
// netlab did not create (another release's DOCKER-FORWARD), are conflicts:
// plan and up refuse and change nothing (netlab never deletes rules it did
// not write). down removes exactly the lab's rules and puts FORWARD's policy
// back, in spite of the chains it cannot remove; it names what it left and
// why; down again finishes; the dockerd's rules and chain are all still there.
func TestDockerIptablesDockerdAfterTheFirstLab(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "dipt.yaml", dockerIptablesFile("26.1", "true"))
	sb.OK("netlab", "up", lab)
	dockerd := []string{
		"-A FORWARD -o docker0 -j DOCKER",
		"-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
		"-t nat -A DOCKER -i docker0 -j RETURN",
	}
	for _, r := range dockerd {
		sb.OK("sh", "-c", "iptables "+r)
	}
	sb.OK("iptables", "-N", "DOCKER-FORWARD")
	before, kernel := rawSave(sb), kernelState(sb)
	for _, cmd := range []string{"plan", "up"} {
		res := sb.Exec("netlab", cmd, lab)
		for _, want := range []string{"nothing was changed", "chain DOCKER-FORWARD that netlab did not create",
			"of ip filter chain FORWARD jumps to DOCKER, a chain netlab created, and netlab did not write it",
			"of ip filter chain DOCKER-ISOLATION-STAGE-1 jumps to DOCKER-ISOLATION-STAGE-2, a chain netlab created",
			"ip nat chain DOCKER, which netlab created, holds rule handle"} {
			if res.Code == 0 || !strings.Contains(res.Stderr, want) {
				t.Errorf("%s beside a dockerd started after the lab: code %d, no %q:\n%s%s", cmd, res.Code, want, res.Stdout, res.Stderr)
			}
		}
	}
	if got := rawSave(sb); got != before {
		t.Errorf("a refused up touched the tables:\n%s\nbefore:\n%s", got, before)
	}
	if got := kernelState(sb); got != kernel {
		t.Errorf("a refused up changed the kernel:\n%s\nbefore:\n%s", got, kernel)
	}
	res := sb.Exec("netlab", "down", lab)
	for _, want := range []string{"FORWARD's policy is back", "netlab left ip filter chain DOCKER (",
		"ip filter chain DOCKER-ISOLATION-STAGE-1 (it holds rule handle", "ip nat chain DOCKER (it holds rule handle"} {
		if res.Code == 0 || !strings.Contains(res.Stderr, want) {
			t.Errorf("down beside a dockerd's rules: code %d, no %q:\n%s%s", res.Code, want, res.Stdout, res.Stderr)
		}
	}
	sb.OK("netlab", "down", lab)
	if res := sb.Exec("ip", "link", "show", "docker0"); res.Code == 0 {
		t.Errorf("down again did not finish: docker0 is still there")
	}
	save := rawSave(sb)
	for _, line := range append(dockerd, ":FORWARD ACCEPT", ":DOCKER-FORWARD -") {
		if !strings.Contains(save, strings.TrimPrefix(line, "-t nat ")) {
			t.Errorf("down took away the dockerd's %q:\n%s", line, save)
		}
	}
	for _, line := range strings.Split(save, "\n") {
		if strings.HasPrefix(line, "-A ") && !slices.ContainsFunc(dockerd, func(d string) bool { return strings.HasSuffix(d, line) }) {
			t.Errorf("down left a rule that is not the dockerd's: %q\n%s", line, save)
		}
	}
}
