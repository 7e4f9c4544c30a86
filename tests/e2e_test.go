package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"netlab/tests/harness"
)

const spine = "testdata/spine.yaml"

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: want %q in:\n%s", what, w, got)
		}
	}
}

// TestLifecycle walks the spine lab through everything a user does with it:
// validate, plan, up, a no-op up, drift and repair, status, down twice.
func TestLifecycle(t *testing.T) {
	sb := harness.NewSandbox(t)

	mustContain(t, "validate", sb.OK("netlab", "validate", spine), `valid lab "spine": 2 namespaces, 1 bridge, 2 links`)

	plan := sb.OK("netlab", "plan", spine)
	mustContain(t, "first plan", plan,
		"+ netns   c1 (IPv6 off)\n+ netns   c2 (IPv6 off)\n+ bridge  host:br0\n",
		"+ veth    c2:eth0 <-> host:veth-c2 master br0, up\n",
		"+ route   c1: default via 10.10.0.1 dev eth0\n",
		"~ sysctl  host: net.ipv4.ip_forward 0 -> 1\n",
	)

	up := sb.OK("netlab", "up", spine)
	mustContain(t, "up", up, "Apply complete:", "the kernel matches testdata/spine.yaml.")

	// What a student sees, with iproute2 and real traffic.
	mustContain(t, "ip -n c1 route", sb.OK("ip", "-n", "c1", "route"), "default via 10.10.0.1 dev eth0")
	mustContain(t, "ip -n c1 addr", sb.OK("ip", "-n", "c1", "addr", "show", "eth0"),
		"link/ether 02:42:0a:0a:00:02", "inet 10.10.0.2/24 brd 10.10.0.255 scope global eth0")
	mustContain(t, "ip -n c2 route", sb.OK("ip", "-n", "c2", "route"), "10.99.0.0/16 via 10.10.0.1 dev eth0 metric 10")
	sb.OK("ip", "netns", "exec", "c1", "ping", "-c1", "-W2", "10.10.0.3")
	sb.OK("ip", "netns", "exec", "c2", "ping", "-c1", "-W2", "10.10.0.2")

	// Idempotent: nothing to do, and plan says so with its exit code.
	if got := sb.OK("netlab", "up", spine); got != "No changes.\n" {
		t.Errorf("second up printed %q, want \"No changes.\\n\"", got)
	}
	if res := sb.Exec("netlab", "plan", "--detailed-exitcode", spine); res.Code != 0 || res.Stdout != "No changes.\n" {
		t.Errorf("plan --detailed-exitcode after up: exit %d, %q", res.Code, res.Stdout)
	}
	mustContain(t, "status", sb.OK("netlab", "status"), "spine", "spine.yaml", "no")

	// Drift by hand: a deleted veth, a changed address, a removed route.
	sb.OK("ip", "link", "del", "veth-c2")
	sb.OK("ip", "-n", "c1", "addr", "add", "10.10.0.77/24", "dev", "eth0")
	sb.OK("ip", "-n", "c1", "route", "del", "default")
	res := sb.Exec("netlab", "plan", "--detailed-exitcode", spine)
	if res.Code != 2 {
		t.Errorf("plan --detailed-exitcode after drift: exit %d, want 2\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	want := `+ veth    c2:eth0 <-> host:veth-c2 master br0, up
+ addr    c2:eth0 10.10.0.3/24
- addr    c1:eth0 10.10.0.77/24
+ route   c1: default via 10.10.0.1 dev eth0
+ route   c2: 10.99.0.0/16 via 10.10.0.1 dev eth0 metric 10
+ route   c2: default via 10.10.0.1 dev eth0
Plan: 5 to add, 0 to change, 1 to destroy.
`
	if res.Stdout != want {
		t.Errorf("plan after drift:\n got:\n%s\nwant:\n%s", res.Stdout, want)
	}
	// status exits 2 when a lab drifted, so that a script can tell.
	drifted := sb.Exec("netlab", "status")
	if drifted.Code != 2 {
		t.Errorf("status after drift: exit %d, want 2\n%s%s", drifted.Code, drifted.Stdout, drifted.Stderr)
	}
	mustContain(t, "status after drift", drifted.Stdout, "yes", "+ veth    c2:eth0 <-> host:veth-c2 master br0, up")
	sb.OK("netlab", "up", spine)
	if got := sb.OK("netlab", "plan", spine); got != "No changes.\n" {
		t.Errorf("plan after repair: %q", got)
	}

	// Down removes everything and puts the sysctl back; twice is fine.
	down := sb.OK("netlab", "down", spine)
	mustContain(t, "down", down, "- netns   c1", "- sysctl  host: net.ipv4.ip_forward 1 -> 0 (restored)", "Lab spine is down.")
	if got := sb.OK("ip", "netns", "list"); got != "" {
		t.Errorf("namespaces after down: %q", got)
	}
	if got := sb.OK("ip", "-o", "link"); strings.Count(got, "\n") != 1 || !strings.Contains(got, "lo:") {
		t.Errorf("interfaces after down, want only lo:\n%s", got)
	}
	if got := sb.OK("ip", "-o", "addr"); strings.Contains(got, "10.10.") {
		t.Errorf("addresses after down:\n%s", got)
	}
	if got := sb.OK("ls", "-A", "/run/netlab"); got != "" {
		t.Errorf("files left in /run/netlab after down: %q", got)
	}
	if got := sb.OK("sysctl", "-n", "net.ipv4.ip_forward"); got != "0\n" {
		t.Errorf("ip_forward after down = %q, want 0", got)
	}
	if got := sb.OK("netlab", "down", spine); got != "No changes.\n" {
		t.Errorf("second down printed %q", got)
	}
	if got := sb.OK("netlab", "status"); got != "No labs are running.\n" {
		t.Errorf("status after down: %q", got)
	}
}

// TestVerboseShowsWhereTheTimeGoes: with -v, up and down log how long each
// apply phase and each part of observing took, on stderr, leaving stdout as is.
func TestVerboseShowsWhereTheTimeGoes(t *testing.T) {
	sb := harness.NewSandbox(t)
	res := sb.Exec("netlab", "up", "-v", spine)
	if res.Code != 0 {
		t.Fatalf("up -v: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	mustContain(t, "up -v stderr", res.Stderr,
		`msg=apply phase="+ netns" actions=2 took=`,
		`msg=apply phase="+ veth" actions=2 took=`,
		`msg=observe phase="namespaces, links, addresses, routes, nftables" took=`)
	mustContain(t, "up -v stdout", res.Stdout, "Apply complete:")
	if strings.Contains(res.Stdout, "msg=") {
		t.Errorf("up -v logged on stdout:\n%s", res.Stdout)
	}
	res = sb.Exec("netlab", "down", "-v", spine)
	if res.Code != 0 {
		t.Fatalf("down -v: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	mustContain(t, "down -v stderr", res.Stderr, `- netns`, `msg=observe phase="the kernel destroying deleted namespaces" took=`)
}

// TestIncrementalUp edits the file of a running lab: only what was edited changes.
func TestIncrementalUp(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", spine)
	before := sb.OK("ip", "-n", "c1", "-o", "link", "show", "eth0")
	sb.OK("ip", "netns", "exec", "c1", "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $! > /run/netlab-sleeper") // a process that must survive

	got := sb.OK("netlab", "up", "testdata/spine-eth1.yaml")
	want := `+ bridge  host:br1
+ veth    c1:eth1 <-> host:veth`
	mustContain(t, "incremental up", got, want, "+ addr    c1:eth1 10.20.0.2/24", "Plan: 5 to add, 0 to change, 0 to destroy.")
	if strings.Contains(got, "eth0") {
		t.Errorf("incremental up touched eth0:\n%s", got)
	}
	if after := sb.OK("ip", "-n", "c1", "-o", "link", "show", "eth0"); ifindexOf(before) != ifindexOf(after) {
		t.Errorf("c1:eth0 was recreated:\nbefore %s\nafter  %s", before, after)
	}
	sb.OK("ip", "netns", "exec", "c1", "ping", "-c1", "-W2", "10.20.0.1")
	sb.OK("sh", "-c", "kill -0 $(cat /run/netlab-sleeper)")

	// And back: eth1 and br1 go, nothing else.
	got = sb.OK("netlab", "up", spine)
	mustContain(t, "up of the original file", got, "- bridge  host:br1", "Plan: 0 to add, 0 to change, 2 to destroy.")
	sb.OK("sh", "-c", "kill $(cat /run/netlab-sleeper)")
}

var ifindexRE = regexp.MustCompile(`^(\d+):`)

func ifindexOf(line string) string { return ifindexRE.FindString(line) }

// TestDownWithoutTheFile removes a lab by name after its file is gone.
func TestDownWithoutTheFile(t *testing.T) {
	sb := harness.NewSandbox(t)
	dir := t.TempDir()
	data, err := os.ReadFile(spine)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sb.OK("netlab", "up", file)
	os.Remove(file)
	mustContain(t, "status without the file", sb.OK("netlab", "status"), "unknown")
	mustContain(t, "down --lab", sb.OK("netlab", "down", "--lab", "spine"), "- netns   c1", "Lab spine is down.")
	if got := sb.OK("ip", "netns", "list"); got != "" {
		t.Errorf("namespaces after down --lab: %q", got)
	}
}

// TestInvalidFilesChangeNothing: a bad file is reported with positions, exits 1
// and leaves the kernel as it was, for every command that takes a file.
func TestInvalidFilesChangeNothing(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", spine) // a running lab must not be disturbed either
	before := sb.KernelState()
	files, _ := filepath.Glob("../topology/testdata/invalid-*.yaml")
	if len(files) < 25 {
		t.Fatalf("found %d invalid files, want at least 25", len(files))
	}
	for _, f := range files {
		for _, cmd := range []string{"validate", "plan", "up", "down"} {
			res := sb.Exec("netlab", cmd, f)
			if res.Code != 1 {
				t.Errorf("netlab %s %s: exit %d, want 1", cmd, f, res.Code)
			}
			if !strings.HasPrefix(res.Stderr, f+":") {
				t.Errorf("netlab %s %s: stderr does not start with FILE:LINE:COL:\n%s", cmd, f, res.Stderr)
			}
		}
	}
	if after := sb.KernelState(); after != before {
		t.Errorf("invalid files changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestUnprivileged: without root, netlab says so clearly and changes nothing.
func TestUnprivileged(t *testing.T) {
	sb := harness.NewSandbox(t)
	before := sb.KernelState()
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"}
	for _, cmd := range []string{"plan", "up", "down", "status"} {
		args := []string{"netlab", cmd}
		if cmd != "status" {
			args = append(args, spine)
		}
		res := sb.ExecAs(nobody, args...)
		if res.Code != 1 || !strings.Contains(res.Stderr, "needs root privileges") {
			t.Errorf("netlab %s as nobody: exit %d, stderr %q", cmd, res.Code, res.Stderr)
		}
	}
	// validate needs no privileges.
	if res := sb.ExecAs(nobody, "netlab", "validate", spine); res.Code != 0 {
		t.Errorf("validate as nobody: exit %d: %s", res.Code, res.Stderr)
	}
	if after := sb.KernelState(); after != before {
		t.Errorf("unprivileged runs changed the kernel")
	}
}

// TestConcurrentUps: two ups of one lab at once; one waits for the other, both
// succeed, and the lab is exactly as the file says.
func TestConcurrentUps(t *testing.T) {
	sb := harness.NewSandbox(t)
	var wg sync.WaitGroup
	results := make([]harness.Result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = sb.Exec("netlab", "up", spine)
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.Code != 0 {
			t.Errorf("up #%d: exit %d\n%s%s", i, res.Code, res.Stdout, res.Stderr)
		}
	}
	// One of them built the lab, the other found nothing left to do.
	if got := results[0].Stdout + results[1].Stdout; !strings.Contains(got, "No changes.") || !strings.Contains(got, "Apply complete") {
		t.Errorf("want one up to apply and the other to find no changes:\n%s", got)
	}
	if got := sb.OK("netlab", "plan", spine); got != "No changes.\n" {
		t.Errorf("plan after concurrent ups: %q", got)
	}
}

// TestInspect: the live state names each veth's peer with the index ip link
// shows (eth0@ifN), and counts the packets of the lab's rules.
func TestInspect(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", "../labs/docker-bridge-lowlevel.yaml")
	sb.OK("netlab", "test", "../labs/docker-bridge-lowlevel.yaml") // some traffic for the counters

	var r struct {
		Lab        string
		Namespaces []struct {
			Name       string
			Interfaces []struct {
				Name      string
				Ifindex   int
				Master    string
				Addresses []string
				Peer      *struct {
					Namespace, Name string
					Ifindex         int
				}
			}
			Routes   []string
			NftRules []struct {
				Rule    string
				Packets uint64
			} `json:"nft_rules"`
			NftSets []struct {
				Kind, Name, Type string
				Elements         []string
			} `json:"nft_sets"`
			Processes []struct{ PID int }
		}
	}
	if err := json.Unmarshal([]byte(sb.OK("netlab", "inspect", "docker-bridge", "-o", "json")), &r); err != nil {
		t.Fatal(err)
	}
	index := map[string]int{} // "ns:name" -> ifindex, as inspect reports them
	for _, ns := range r.Namespaces {
		for _, i := range ns.Interfaces {
			index[ns.Name+":"+i.Name] = i.Ifindex
		}
	}
	checked := 0
	for _, ns := range r.Namespaces {
		for _, i := range ns.Interfaces {
			if i.Peer == nil {
				continue
			}
			if got := index[i.Peer.Namespace+":"+i.Peer.Name]; got != i.Peer.Ifindex {
				t.Errorf("%s:%s says its peer %s:%s is ifindex %d, which is %d", ns.Name, i.Name, i.Peer.Namespace, i.Peer.Name, i.Peer.Ifindex, got)
			}
			checked++
		}
		if ns.Name == "web" {
			// What iproute2 says: eth0@ifN, N the host end's index.
			link := sb.OK("ip", "-n", "web", "-o", "link", "show", "eth0")
			if want := fmt.Sprintf("eth0@if%d:", index["host:veth41bce75"]); !strings.Contains(link, want) {
				t.Errorf("ip -n web link: %s, want %s", link, want)
			}
			if len(ns.Processes) != 2 {
				t.Errorf("web's processes: %+v, want its two servers", ns.Processes)
			}
		}
		if ns.Name == "host" {
			counted := false
			for _, rule := range ns.NftRules {
				if strings.Contains(rule.Rule, `dnat ip to tcp dport map @docker0-tcp-dnat`) && rule.Packets > 0 {
					counted = true
				}
			}
			if !counted {
				t.Errorf("after netlab test, the publish rules counted no packet: %+v", ns.NftRules)
			}
			// The published port, as an element of its bridge's map.
			found := false
			for _, set := range ns.NftSets {
				if set.Kind == "map" && set.Name == "docker0-tcp-dnat" && set.Type == "inet_service : ipv4_addr . inet_service" &&
					slices.Equal(set.Elements, []string{"8000 : 172.17.0.2 . 80"}) {
					found = true
				}
			}
			if !found {
				t.Errorf("inspect does not show web's published port in map docker0-tcp-dnat: %+v", ns.NftSets)
			}
		}
	}
	if checked != 6 {
		t.Errorf("checked %d veth ends, want 6 (three pairs)", checked)
	}
	text := sb.OK("netlab", "inspect")
	mustContain(t, "inspect text", text, "Lab docker-bridge", "eth0@if", "peer host:veth41bce75", "default via 172.17.0.1 dev eth0", "nft table inet netlab-docker-bridge:", "netlab serve --http 80")
}

// TestCompletionAndVersion: the shell completions users expect, and --version.
func TestCompletionAndVersion(t *testing.T) {
	sb := harness.NewSandbox(t)
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := sb.OK("netlab", "completion", shell); !strings.Contains(out, "netlab") || len(out) < 500 {
			t.Errorf("netlab completion %s: %d bytes", shell, len(out))
		}
	}
	if out := sb.OK("netlab", "--version"); !strings.HasPrefix(out, "netlab version ") {
		t.Errorf("netlab --version: %q", out)
	}
	// Completion of real words: commands, and lab files for commands that take one.
	mustContain(t, "completion of commands", sb.OK("netlab", "__complete", "in"), "inspect")
}
