package hostile

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// dockerNftablesLab is the docker-bridge scenario at Docker's level (docker0
// with web -p 8000:80 and c2, then a user network mynet with c3 and c4) as
// Docker 29 gives it with --firewall-backend=nftables.
const dockerNftablesLab = `name: dnft
docker: {version: "29", firewall: nftables, userland-proxy: PROXY}
host:
  interfaces:
    lan0: {addresses: [192.0.2.1/24]}
networks:
  mynet: {}
containers:
  web: {publish: ["8000:80"], serve: [{http: 80, body: "Hello World"}, {tcp-echo: 81}]}
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
  - {from: c2, ping: 172.17.0.2}
  - {from: c2, http: "http://172.17.0.2/", expect: {body: Hello World}}
  - {from: lan, http: "http://192.0.2.1:8000/", expect: {body: Hello World, source: 192.0.2.2}}
  - {from: host, http: "http://127.0.0.1:8000/", expect: {body: Hello World}}
  - {from: c2, http: "http://192.0.2.1:8000/", expect: {body: Hello World}}
  - {from: web, http: "http://192.0.2.1:8000/", expect: {body: Hello World}}
  - {from: lan, tcp: "172.17.0.2:81", expect: fail}
  - {from: c3, http: "http://c4/", expect: {body: Hello from c4}}
  - {from: c3, ping: 172.17.0.2, expect: fail}
  - {from: c2, ping: 172.18.0.3, expect: fail}
  - {from: web, ping: 192.0.2.2, expect: {source: 192.0.2.1}}
  - {from: c3, ping: 192.0.2.2, expect: {source: 192.0.2.1}}
`

// dockerNftablesWant is what `nft list table FAMILY docker-bridges` prints
// for dockerd 29 in the scenario above, from testdata: docker-29-nftables-
// {ip,ip6}-{proxy,noproxy}.txt. They are moby's goldens of its nftabler
// (daemon/libnetwork/drivers/bridge/internal/nftabler/testdata/TestNftabler,
// which are `nft list table` of one network br-dummy, 192.168.0.0/24, with one
// endpoint 192.168.0.2 and -p 8080:80) written out for this scenario:
//   - ip, proxy: "hairpin=false,internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__ip.golden"
//     (hairpin=false is dockerd's default, the userland proxy on);
//   - ip, noproxy: "hairpin=true,...,gwm=nat,bindlh=false__ip.golden" (--userland-proxy=false);
//   - ip6: "cleaned,hairpin=false__ip6.golden" and "cleaned,hairpin=true__ip6.golden":
//     dockerd creates ip6 docker-bridges at start (ip6tables is on by
//     default), and a network without IPv6 adds nothing to it.
//
// Written out for two networks: docker0 (172.17.0.0/16) first, as dockerd
// creates it at start, then mynet (br-NET, 172.18.0.0/16); each network's four
// chains after the base chains in the order dockerd creates them, their map
// elements, and, per endpoint (web, c2, c3, c4: the order of docker run),
// raw-PREROUTING's "DROP DIRECT ACCESS"; web's port is br-dummy's with 8000
// for 8080, and mynet, which publishes nothing, has no port rules. The
// goldens' own normalisation of `priority -100` on nat-OUTPUT to `dstnat` (nft
// before 1.1 prints the number) is applied to the output here, with counters
// zeroed, the user network's bridge id written br-NET, and the elements of a
// map sorted: their order in a hash map's listing is the hash's, not Docker's.
//
// With the scenario's third network, internal (withInternal): the ip table
// from docker-29-nftables-ip-{proxy,noproxy}-internal.txt (its header names
// moby's golden of an internal network), the ip6 table as without it. A
// file's comment lines (#) are not part of the text.
func dockerNftablesWant(t *testing.T, family, proxy string, internal bool) string {
	variant := "proxy"
	if proxy == "false" {
		variant = "noproxy"
	}
	if internal && family == "ip" {
		variant += "-internal"
	}
	data, err := os.ReadFile("testdata/docker-29-nftables-" + family + "-" + variant + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(string(data), "")
}

var (
	nftCounters   = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	nftMapElement = regexp.MustCompile(`^(\t+)elements = \{ (.*)$`)
)

// normalisedNftTable is `nft list table FAMILY docker-bridges` normalised as
// dockerNftablesWant says, with the bridges of names written by their names.
func normalisedNftTable(sb *harness.Sandbox, family string, names map[string]string) string {
	text := sb.OK("nft", "list", "table", family, "docker-bridges")
	text = nftCounters.ReplaceAllString(text, "counter packets 0 bytes 0")
	for id, name := range names {
		text = strings.ReplaceAll(text, id, name)
	}
	text = saveBridgeID.ReplaceAllString(text, "br-NET")
	text = strings.ReplaceAll(text, "type nat hook output priority -100", "type nat hook output priority dstnat")
	lines := strings.Split(text, "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		m := nftMapElement.FindStringSubmatch(lines[i])
		if m == nil {
			out = append(out, lines[i])
			continue
		}
		// One element per line, the last closing the braces: sorted, and
		// written again as nft writes them.
		elements := []string{m[2]}
		for !strings.HasSuffix(elements[len(elements)-1], " }") && i+1 < len(lines) {
			i++
			elements = append(elements, strings.TrimSpace(lines[i]))
		}
		for j := range elements {
			elements[j] = strings.TrimSuffix(strings.TrimSuffix(elements[j], " }"), ",")
		}
		slices.Sort(elements)
		indent := m[1] + "\t     "
		out = append(out, m[1]+"elements = { "+strings.Join(elements, ",\n"+indent)+" }")
	}
	return strings.Join(out, "\n")
}

// ruleHandle finds the handle of the rule of a chain of ip docker-bridges
// whose text contains what.
func ruleHandle(t *testing.T, sb *harness.Sandbox, chain, what string) string {
	t.Helper()
	for _, line := range strings.Split(sb.OK("nft", "-a", "list", "chain", "ip", "docker-bridges", chain), "\n") {
		if strings.Contains(line, what) {
			if _, handle, ok := strings.Cut(line, "# handle "); ok {
				return strings.TrimSpace(handle)
			}
		}
	}
	t.Fatalf("no rule with %q in chain %s", what, chain)
	return ""
}

// TestDockerNftablesLayoutIsDockerd: with docker: {version: "29", firewall:
// nftables}, the kernel holds Docker 29's tables ip docker-bridges and ip6
// docker-bridges as moby's goldens say for the docker-bridge scenario
// (userland proxy on and off); the lab's checks pass; a second up is "No
// changes."; a rule deleted with `nft delete rule`, a chain flushed and a map
// element deleted are drift that plan shows and up repairs; down leaves `nft
// list ruleset` as it was. Then the scenario with a third network, internal
// (withInternal), in the same sandbox: the tables are Docker's (the internal
// network's chains as moby's golden of one), the checks pass, a second up is
// "No changes.", down restores.
func TestDockerNftablesLayoutIsDockerd(t *testing.T) {
	for _, proxy := range []string{"true", "false"} {
		t.Run("userland-proxy="+proxy, func(t *testing.T) {
			sb := harness.NewSandbox(t)
			lab := writeLab(t, "dnft.yaml", strings.Replace(dockerNftablesLab, "PROXY", proxy, 1))
			saveBefore, rulesetBefore := rawSave(sb), sb.OK("nft", "list", "ruleset")
			sb.OK("netlab", "up", lab)
			check := func(when string, internal bool) {
				t.Helper()
				for _, family := range []string{"ip", "ip6"} {
					if got, want := normalisedNftTable(sb, family, internalNames("dnft")), dockerNftablesWant(t, family, proxy, internal); got != want {
						t.Errorf("%s: nft list table %s docker-bridges:\n%s\nwant (moby's goldens):\n%s", when, family, got, want)
					}
				}
			}
			check("after up", false)
			if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
				t.Errorf("netlab test failed:\n%s%s", res.Stdout, res.Stderr)
			}
			inspectShowsDockerTables(t, sb)
			if got := sb.OK("netlab", "up", lab); got != "No changes.\n" {
				t.Errorf("second up printed %q", got)
			}

			sb.OK("nft", "delete", "rule", "ip", "docker-bridges", "filter-forward-in__docker0", "handle", ruleHandle(t, sb, "filter-forward-in__docker0", `comment "ICC"`))
			sb.OK("nft", "flush", "chain", "ip", "docker-bridges", "nat-prerouting-and-output")
			sb.OK("nft", "delete", "element", "ip", "docker-bridges", "filter-forward-out-jumps", `{ "docker0" }`)
			plan := sb.OK("netlab", "plan", lab)
			for _, want := range []string{
				"~ nft     host: table ip docker-bridges (2 rules to add, 0 to remove; 1 set element to add, 0 to remove)",
				`+ filter-forward-in__docker0: iifname "docker0" counter accept comment "ICC"`,
				"+ nat-prerouting-and-output: ",
				`+ map filter-forward-out-jumps: "docker0" : jump filter-forward-out__docker0`,
			} {
				if !strings.Contains(plan, want) {
					t.Errorf("the deleted rule and the flushed chain are not seen as drift (%q):\n%s", want, plan)
				}
			}
			sb.OK("netlab", "up", lab)
			check("after repair", false)
			if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
				t.Errorf("netlab test after repair failed:\n%s%s", res.Stdout, res.Stderr)
			}

			if got := sb.OK("netlab", "down", lab); !strings.Contains(got, "- nft     host: table ip docker-bridges") || !strings.Contains(got, "- nft     host: table ip6 docker-bridges") {
				t.Errorf("down does not delete Docker's tables:\n%s", got)
			}
			if got := sb.OK("nft", "list", "ruleset"); got != rulesetBefore {
				t.Errorf("down left nft list ruleset as:\n%s\nbefore:\n%s", got, rulesetBefore)
			}

			lab = writeLab(t, "dnft-internal.yaml", withInternal(strings.Replace(dockerNftablesLab, "PROXY", proxy, 1)))
			layoutUp(t, sb, lab, "with an internal network: ", func() { check("with an internal network", true) })
			layoutDown(t, sb, lab, "with an internal network: ", saveBefore, rulesetBefore)
		})
	}
}

// TestDockerNftablesRefusedBesideDockerd: a table ip docker-bridges netlab did
// not write (a running dockerd's) is a conflict that plan reports, with the
// fix, before anything changes; up changes nothing, and down leaves the table.
// A second lab with the nftables layout in the namespace is refused the same
// way, naming the lab that has the tables.
func TestDockerNftablesRefusedBesideDockerd(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "dnft.yaml", strings.Replace(dockerNftablesLab, "PROXY", "true", 1))
	sb.OK("nft", "add", "table", "ip", "docker-bridges")
	sb.OK("nft", "add", "chain", "ip", "docker-bridges", "filter-FORWARD", "{ type filter hook forward priority filter; policy accept; }")
	before, ruleset := kernelState(sb), sb.OK("nft", "list", "ruleset")
	for _, cmd := range []string{"plan", "up"} {
		res := sb.Exec("netlab", cmd, lab)
		if res.Code == 0 || !strings.Contains(res.Stderr, "host: table ip docker-bridges already exists and was not written by netlab") ||
			!strings.Contains(res.Stderr, "nft delete table ip docker-bridges") {
			t.Errorf("%s beside a foreign ip docker-bridges: code %d\n%s%s", cmd, res.Code, res.Stdout, res.Stderr)
		}
	}
	if got := kernelState(sb); got != before {
		t.Errorf("up changed the kernel:\n%s\nbefore:\n%s", got, before)
	}
	sb.OK("netlab", "down", lab)
	if got := sb.OK("nft", "list", "ruleset"); got != ruleset {
		t.Errorf("the foreign table was touched:\n%s\nbefore:\n%s", got, ruleset)
	}

	sb.OK("nft", "delete", "table", "ip", "docker-bridges")
	one := writeLab(t, "one.yaml", "name: one\nbridges:\n  br1: {addresses: [10.1.0.1/24], masquerade: true, firewall: nftables}\n")
	two := writeLab(t, "two.yaml", "name: two\nbridges:\n  br2: {addresses: [10.2.0.1/24], masquerade: true, firewall: nftables}\n")
	sb.OK("netlab", "up", one)
	res := sb.Exec("netlab", "up", two)
	if res.Code == 0 || !strings.Contains(res.Stderr, "host: table ip docker-bridges belongs to lab one") {
		t.Errorf("a second lab with the nftables layout: code %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	sb.OK("netlab", "down", one)
	sb.OK("netlab", "up", two)
	sb.OK("netlab", "down", two)
}

// TestDockerNftablesMobysNetwork: the network of moby's own nftabler test
// (one bridge br-dummy with 192.168.0.0/24 and fd49:efd7:54aa::/64, one
// endpoint with -p 8080:80), written with firewall: nftables on the bridge,
// comes up in each configuration of harness.MobyConfigs with tables ip and
// ip6 docker-bridges that `nft list` prints as moby's goldens of that
// configuration do (reconcile/testdata/moby/), reads back as written ("No
// changes."), and goes.
func TestDockerNftablesMobysNetwork(t *testing.T) {
	const dir = "../../reconcile/testdata/moby"
	for _, c := range harness.MobyConfigs {
		t.Run(c.String(), func(t *testing.T) {
			sb := harness.NewSandbox(t)
			path := writeLab(t, "moby.yaml", c.Lab(t, dir+"/br-dummy.yaml"))
			before := sb.OK("nft", "list", "ruleset")
			sb.OK("netlab", "up", path)
			for _, family := range []string{"ip", "ip6"} {
				if got, want := normalisedNftTable(sb, family, nil), c.Golden(t, dir, family); got != want {
					t.Errorf("nft list table %s docker-bridges:\n%s\nwant (moby's golden):\n%s", family, got, want)
				}
			}
			if got := sb.OK("netlab", "plan", path); got != "No changes.\n" {
				t.Errorf("plan after up:\n%s", got)
			}
			sb.OK("netlab", "down", path)
			if got := sb.OK("nft", "list", "ruleset"); got != before {
				t.Errorf("down left nft list ruleset as:\n%s", got)
			}
		})
	}
}

// inspectShowsDockerTables: netlab inspect lists the lab's Docker 29 tables,
// with the counters the checks moved: the DNAT of the published port has
// counted the check from lan to the host's port 8000.
func inspectShowsDockerTables(t *testing.T, sb *harness.Sandbox) {
	t.Helper()
	var got struct {
		Namespaces []struct {
			Name         string `json:"name"`
			DockerTables []struct {
				Table string `json:"table"`
				Rules []struct {
					Chain   string `json:"chain"`
					Rule    string `json:"rule"`
					Packets uint64 `json:"packets"`
				} `json:"rules"`
			} `json:"docker_nft_tables"`
		} `json:"namespaces"`
	}
	if err := json.Unmarshal([]byte(sb.OK("netlab", "inspect", "-o", "json", "dnft")), &got); err != nil {
		t.Fatal(err)
	}
	var tables []string
	dnat := uint64(0)
	for _, ns := range got.Namespaces {
		for _, table := range ns.DockerTables {
			tables = append(tables, ns.Name+": "+table.Table)
			for _, r := range table.Rules {
				if r.Chain == "nat-prerouting-and-output" && strings.Contains(r.Rule, "dnat to 172.17.0.2:80") {
					dnat += r.Packets
				}
			}
		}
	}
	if want := []string{"host: ip docker-bridges", "host: ip6 docker-bridges"}; !slices.Equal(tables, want) {
		t.Errorf("netlab inspect shows Docker's tables %q, want %q", tables, want)
	}
	if dnat == 0 {
		t.Errorf("netlab inspect: the DNAT of port 8000 counted no packet after the checks")
	}
	if text := sb.OK("netlab", "inspect", "dnft"); !strings.Contains(text, "nft table ip docker-bridges (Docker 29's layout") {
		t.Errorf("netlab inspect does not show Docker's table:\n%s", text)
	}
}
