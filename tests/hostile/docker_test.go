package hostile

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"netlab/tests/harness"
	"netlab/topology"
)

// dockerNoProxyLab is the docker-bridge scenario at Docker's level, in
// --userland-proxy=false mode and on the default bridge only: nothing in it
// needs the embedded DNS or the userland proxy (issue 17 items 1b and 2).
const dockerNoProxyLab = `name: dockerlab
docker: {version: "26.1", userland-proxy: false}
host:
  interfaces:
    lan0: {addresses: [192.0.2.1/24]}
containers:
  web:
    publish: ["8000:80"]
    serve: [{http: 80, body: "Hello World"}]
  c2: {}
namespaces:
  lan:
    interfaces:
      eth0: {addresses: [192.0.2.2/24]}
links:
  - [lan:eth0, host:lan0]
checks:
  - {from: c2, http: "http://172.17.0.2/", expect: {body: Hello World}}
  - {from: lan, http: "http://192.0.2.1:8000/", expect: {body: Hello World, source: 192.0.2.2}}
  - {from: host, http: "http://127.0.0.1:8000/", expect: {body: Hello World}}
  - {from: c2, ping: 192.0.2.2, expect: {source: 192.0.2.1}}
`

// TestDockerLevelBridge: a lab written at Docker's level gets what dockerd
// gives: addresses in order from 172.17.0.2 with MACs from them, a default
// route, Docker's container sysctls, a hostname of 12 hex digits in a UTS
// namespace of its own (seen by netlab exec and by the lab's processes),
// /etc/hosts and resolv.conf as Docker writes them; its checks pass, a second
// up has nothing to do, a hostname changed by hand is drift, and down leaves
// no namespace, rule, process or UTS mount.
func TestDockerLevelBridge(t *testing.T) {
	sb := harness.NewSandbox(t)
	before := kernelState(sb)
	path := writeLab(t, "docker.yaml", dockerNoProxyLab)
	sb.WriteFile("/etc/resolv.conf", "nameserver 127.0.0.53\nnameserver 198.51.100.53\nsearch example.test\n")
	upConverges(t, sb, "up", path)

	for ns, want := range map[string]string{"web": "172.17.0.2/16", "c2": "172.17.0.3/16"} {
		addr := sb.OK("ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0")
		if !strings.Contains(addr, want) {
			t.Errorf("%s: eth0 has %q, want %s", ns, addr, want)
		}
	}
	if link := sb.OK("ip", "-n", "web", "link", "show", "eth0"); !strings.Contains(link, "02:42:ac:11:00:02") {
		t.Errorf("web: eth0's MAC is not 02:42 + its address:\n%s", link)
	}
	if route := sb.OK("ip", "-n", "c2", "route", "show", "default"); !strings.Contains(route, "default via 172.17.0.1 dev eth0") {
		t.Errorf("c2: default route %q", route)
	}
	if got := sb.OK("ip", "netns", "exec", "web", "sysctl", "-n", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ping_group_range"); got != "0\n0\t2147483647\n" {
		t.Errorf("web: Docker's container sysctls are %q", got)
	}
	if got := sb.OK("sysctl", "-n", "net.ipv4.ip_forward"); got != "1\n" {
		t.Errorf("host: ip_forward %q", got)
	}

	hostname := topology.DockerHostname("dockerlab", "web")
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(hostname) {
		t.Fatalf("hostname %q is not 12 hex digits", hostname)
	}
	if got := sb.OK("netlab", "exec", "web", "--", "hostname"); got != hostname+"\n" {
		t.Errorf("netlab exec web -- hostname: %q, want %s", got, hostname)
	}
	if got, machine := sb.OK("hostname"), sb.OK("netlab", "exec", "lan", "--", "hostname"); got != machine {
		t.Errorf("a plain namespace's hostname %q is not the machine's %q", machine, got)
	}
	hosts := sb.OK("netlab", "exec", "web", "--", "cat", "/etc/hosts")
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "ff02::2\tip6-allrouters\n", "172.17.0.2\t" + hostname + "\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("web's /etc/hosts lacks %q:\n%s", want, hosts)
		}
	}
	if strings.Contains(hosts, "172.17.0.3") {
		t.Errorf("web's /etc/hosts names c2; on the default bridge Docker writes only the container itself:\n%s", hosts)
	}
	resolv := sb.OK("netlab", "exec", "web", "--", "cat", "/etc/resolv.conf")
	if !strings.Contains(resolv, "nameserver 198.51.100.53\nsearch example.test\n") || strings.Contains(resolv, "127.0.0.53") {
		t.Errorf("web's resolv.conf is not the host's without its loopback resolver:\n%s", resolv)
	}

	// The container's processes run in its UTS namespace.
	pid := strings.Fields(sb.OK("sh", "-c", "ip netns pids web"))
	if len(pid) == 0 {
		t.Fatal("no process in web")
	}
	if got := sb.OK("nsenter", "-t", pid[0], "-u", "hostname"); got != hostname+"\n" {
		t.Errorf("web's server runs with hostname %q, want %s", got, hostname)
	}

	if res := sb.Exec("netlab", "test", path); res.Code != 0 {
		t.Errorf("netlab test: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}

	// A hostname changed by hand is drift, and up sets it back.
	uts := "/run/netlab/dockerlab/uts/web"
	sb.OK("nsenter", "--uts="+uts, "hostname", "changed")
	if plan := sb.OK("netlab", "plan", path); !strings.Contains(plan, "~ uts     web hostname changed -> "+hostname) {
		t.Errorf("a hostname changed by hand is not in the plan:\n%s", plan)
	}
	upConverges(t, sb, "repair", path)

	sb.OK("netlab", "down", path)
	if after := kernelState(sb); after != before {
		t.Errorf("down left state behind:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if mounts := sb.OK("sh", "-c", "grep -c /run/netlab/ /proc/self/mountinfo; true"); mounts != "0\n" {
		t.Errorf("down left %s UTS mounts", strings.TrimSpace(mounts))
	}
	// Zombies are left out: the sandbox's first process (sleep) reaps nothing.
	if ps := sb.OK("sh", "-c", "ps -e -o stat=,args= | grep -v '^Z' | grep [n]etlab ; true"); ps != "" {
		t.Errorf("down left netlab processes: %s", ps)
	}
}

// TestExpandRoundTrip: `netlab expand` prints a low-level lab that validates,
// whose plan is the plan of the Docker-level file, and that holds no
// Docker-level section.
func TestExpandRoundTrip(t *testing.T) {
	sb := harness.NewSandbox(t)
	for _, path := range []string{
		writeLab(t, "docker.yaml", dockerNoProxyLab),
		"../../labs/docker-bridge-noproxy.yaml",
		"../../topology/testdata/valid-docker-level.yaml",
		"../../labs/docker-bridge.yaml",
		"../../labs/docker-user-network.yaml",
		"../../topology/testdata/docker-user-internal.yaml",
	} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			expanded := sb.OK("netlab", "expand", path)
			for _, key := range []string{"\ndocker:", "\nnetworks:", "\ncontainers:"} {
				if strings.Contains("\n"+expanded, key) {
					t.Errorf("the expanded lab still has %s", strings.TrimSpace(key))
				}
			}
			low := writeLab(t, "expanded.yaml", expanded)
			sb.OK("netlab", "validate", low)
			if a, b := sb.OK("netlab", "plan", path), sb.OK("netlab", "plan", low); a != b {
				t.Errorf("the plans differ:\n--- %s\n%s\n--- expanded\n%s", path, a, b)
			}
			if a, b := sb.OK("netlab", "expand", low), expanded; a != b {
				t.Errorf("expanding the expanded lab changes it:\n%s", a)
			}
		})
	}
}

// TestDockerLevelErrors: mistakes at Docker's level are reported at their
// place in the file, the nftables layout (Docker 29's) of another version among them.
func TestDockerLevelErrors(t *testing.T) {
	sb := harness.NewSandbox(t)
	path := writeLab(t, "bad.yaml", `name: bad
docker: {firewall: nftables, userland-proxy: false}
containers:
  web: {network: nowhere}
`)
	res := sb.Fails("netlab", "validate", path)
	for _, want := range []string{
		path + `:2:20: docker: firewall: nftables is Docker 29's --firewall-backend=nftables: it needs docker: {version: "29"} (the version is 26.1)`,
		path + ":4:18: container web: unknown network \"nowhere\"",
	} {
		if !strings.Contains(res.Stderr, want) {
			t.Errorf("validate lacks %q:\n%s", want, res.Stderr)
		}
	}
	sb.Fails("netlab", "expand", path)
}

const composeFile = `name: shop
services:
  web:
    image: nginx
    ports: ["8080:80"]
    networks: [front]
    volumes: ["./html:/usr/share/nginx/html"]
  api:
    image: myapi
    hostname: api-host
    networks:
      front: {aliases: [backend]}
      back: {ipv4_address: 172.30.0.10}
    environment: {A: b}
  db:
    image: postgres
    networks: [back]
networks:
  front: {}
  back:
    ipam:
      config: [{subnet: 172.30.0.0/24}]
volumes:
  data: {}
`

// TestImportCompose: a compose file with two networks becomes a Docker-level
// lab (networks, containers, addresses, aliases, hostnames, ports), the keys it
// cannot hold are named, and the lab validates; once the embedded DNS is
// built (helper M), it comes up and passes its checks: services sharing a
// network reach each other, the others do not, the published port answers.
func TestImportCompose(t *testing.T) {
	sb := harness.NewSandbox(t)
	compose := writeLab(t, "docker-compose.yml", composeFile)
	res := sb.Exec("netlab", "import", "compose", compose)
	if res.Code != 0 {
		t.Fatalf("import: exit %d\n%s", res.Code, res.Stderr)
	}
	for _, want := range []string{"name: shop\n", "back: {subnet: 172.30.0.0/24}", "back: {ip: 172.30.0.10}", "front: {aliases: [backend]}",
		"hostname: api-host", "publish: ['8080:80']", "{from: db, ping: web, expect: fail}"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("the lab lacks %q:\n%s", want, res.Stdout)
		}
	}
	if want := "ignored (a lab does not hold them): services.api.environment, services.api.image, services.db.image, services.web.image, services.web.volumes, volumes"; !strings.Contains(res.Stderr, want) {
		t.Errorf("import does not say what it ignores: %q", res.Stderr)
	}
	lab := writeLab(t, "shop.yaml", res.Stdout)
	sb.OK("netlab", "validate", lab)
	upConverges(t, sb, "up", lab)
	if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
		t.Errorf("netlab test: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	sb.OK("netlab", "down", lab)
}

// TestDockerInternalNative: the docker-bridge scenario with a third network,
// internal (withInternal), in netlab's own table (firewall: native), proxy
// on: the internal bridge's two drops are in the table inet netlab-LAB
// before any bridge's accepts, nothing is written in iptables' tables, the
// checks pass (its containers reach each other, the host reaches them,
// nothing enters from lan or another network, nothing leaves), a second up
// is "No changes.", and down leaves the kernel as it was.
func TestDockerInternalNative(t *testing.T) {
	sb := harness.NewSandbox(t)
	before := kernelState(sb)
	lab := writeLab(t, "native.yaml", withInternal(strings.Replace(dockerIptablesFile("26.1", "true"), "firewall: iptables", "firewall: native", 1)))
	upConverges(t, sb, "up", lab)
	br := topology.DockerBridgeName("dipt", "back")
	table := sb.OK("nft", "list", "table", "inet", "netlab-dipt")
	leaves := strings.Index(table, `iifname "`+br+`" oifname != "`+br+`" counter packets`)
	enters := strings.Index(table, `iifname != "`+br+`" oifname "`+br+`" counter packets`)
	accept := strings.Index(table, "accept comment")
	if leaves < 0 || enters < 0 || accept < leaves || accept < enters {
		t.Errorf("the internal bridge's drops are not before every accept of the table:\n%s", table)
	}
	if save := sb.OK("sh", "-c", "iptables-save | grep '^-A'; true"); save != "" {
		t.Errorf("firewall: native wrote iptables rules:\n%s", save)
	}
	if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
		t.Errorf("netlab test failed:\n%s%s", res.Stdout, res.Stderr)
	}
	sb.OK("netlab", "down", lab)
	if got := kernelState(sb); got != before {
		t.Errorf("down left:\n%s\nbefore:\n%s", got, before)
	}
}
