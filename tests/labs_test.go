package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"netlab/tests/harness"
)

func shippedLabs(t *testing.T) []string {
	t.Helper()
	labs, err := filepath.Glob("../labs/*.yaml")
	if err != nil || len(labs) == 0 {
		t.Fatalf("no labs found under ../labs: %v", err)
	}
	return labs
}

// TestShippedLabs: every lab under labs/ comes up, a second up changes nothing,
// and down leaves the sandbox as it found it.
func TestShippedLabs(t *testing.T) {
	for _, lab := range shippedLabs(t) {
		t.Run(filepath.Base(lab), func(t *testing.T) {
			sb := harness.NewSandbox(t)
			before := sb.KernelState()
			sb.OK("netlab", "up", lab)
			if got := sb.OK("netlab", "up", lab); got != "No changes.\n" {
				t.Errorf("second up: %q", got)
			}
			if res := sb.Exec("netlab", "test", lab); res.Code != 0 || !strings.Contains(res.Stdout, " passed, 0 failed") {
				t.Errorf("netlab test %s: exit %d\n%s%s", lab, res.Code, res.Stdout, res.Stderr)
			}
			sb.OK("netlab", "down", lab)
			if after := sb.KernelState(); after != before {
				t.Errorf("down left a trace:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestPlanCommandsReproduceTheLab: the script `plan -o commands` prints, run by
// hand in a fresh sandbox, builds a state netlab then finds nothing to change in.
func TestPlanCommandsReproduceTheLab(t *testing.T) {
	for _, lab := range append(shippedLabs(t), spine, "testdata/bridge-in-namespace.yaml") {
		t.Run(filepath.Base(lab), func(t *testing.T) {
			sb := harness.NewSandbox(t)
			script := filepath.Join(t.TempDir(), "plan.sh")
			if err := os.WriteFile(script, []byte(sb.OK("netlab", "plan", "-o", "commands", lab)), 0o644); err != nil {
				t.Fatal(err)
			}
			if res := sb.Exec("sh", "-x", script); res.Code != 0 {
				t.Fatalf("the plan's script failed: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
			}
			if got := sb.SettledPlan(lab); got != "No changes.\n" {
				t.Errorf("after running the plan's commands by hand, plan still wants:\n%s", got)
			}
			if got := sb.OK("netlab", "down", lab); !strings.Contains(got, "- netns") {
				t.Errorf("down after the script did not see the namespaces as the lab's:\n%s", got)
			}
		})
	}
}

// TestPipeworkIsAnEdit: bringing up the edited file on the running lab adds the
// second NIC and moves the default route, and touches nothing else (article 001).
func TestPipeworkIsAnEdit(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", "../labs/pipework.yaml")
	eth0 := sb.OK("ip", "-n", "hoge", "-o", "link", "show", "eth0")
	plan := sb.OK("netlab", "up", "../labs/pipework-eth1.yaml")
	want := `+ bridge  host:br0
+ veth    hoge:eth1 <-> host:veth-host master br0, up
+ addr    hoge:eth1 192.168.200.101/24
+ addr    host:br0 192.168.200.1/24
+ link    host:br0 up
~ route   hoge: default via 172.17.42.1 dev eth0 -> via 192.168.200.1 dev eth1
Plan: 5 to add, 1 to change, 0 to destroy.
`
	if !strings.HasPrefix(plan, want) {
		t.Errorf("up of the edited file:\n got:\n%s\nwant:\n%s", plan, want)
	}
	if got := sb.OK("ip", "-n", "hoge", "-o", "link", "show", "eth0"); ifindexOf(got) != ifindexOf(eth0) {
		t.Errorf("eth0 was recreated: %s -> %s", eth0, got)
	}
	mustContain(t, "ip -n hoge route", sb.OK("ip", "-n", "hoge", "route"),
		"default via 192.168.200.1 dev eth1", "172.17.0.0/16 dev eth0 proto kernel scope link src 172.17.0.2")
	sb.OK("netlab", "test", "../labs/pipework-eth1.yaml")
}

// TestExec: netlab exec runs a command in a lab namespace, like ip netns exec,
// with its exit status, its standard input and the namespace's own /etc/hosts.
func TestExec(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", "../labs/docker-user-network-lowlevel.yaml")
	mustContain(t, "exec ip addr", sb.OK("netlab", "exec", "web", "--", "ip", "-4", "addr", "show", "eth0"), "inet 172.17.0.2/16")
	mustContain(t, "exec getent", sb.OK("netlab", "exec", "c3", "--", "getent", "hosts", "c4"), "172.18.0.3")
	if res := sb.Exec("netlab", "exec", "c2", "--", "getent", "hosts", "web"); res.Code != 2 {
		t.Errorf("getent hosts web in c2 (default bridge): exit %d, want 2 (not found): %q", res.Code, res.Stdout)
	}
	if res := sb.Exec("netlab", "exec", "c3", "--", "sh", "-c", "exit 7"); res.Code != 7 {
		t.Errorf("exec exit status: %d, want 7", res.Code)
	}
	// A command a signal ended: 128+N, as a shell says it (SIGTERM: 143).
	if res := sb.Exec("netlab", "exec", "c3", "--", "sh", "-c", "kill -TERM $$"); res.Code != 143 {
		t.Errorf("exec of a command SIGTERM ended: exit %d, want 143", res.Code)
	}
	// A SIGTERM to netlab alone is passed on to the command, and netlab then
	// says how it ended.
	if out := sb.OK("sh", "-c", "netlab exec c3 -- sleep 30 & p=$!; sleep 0.5; kill -TERM $p; wait $p; echo code=$?"); out != "code=143\n" {
		t.Errorf("SIGTERM to netlab exec: %q, want code=143 within the command's 30 s", out)
	}
	if res := sb.Exec("netlab", "exec", "nowhere", "--", "true"); res.Code != 1 || !strings.Contains(res.Stderr, `no running lab has a namespace "nowhere"`) {
		t.Errorf("exec in an unknown namespace: exit %d, %q", res.Code, res.Stderr)
	}
	// An interactive shell reads its commands from standard input.
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(sb.PID), "-n", "-m", "-p", "--", harness.Netlab(t), "exec", "c4", "--", "sh")
	cmd.Stdin = strings.NewReader("ip -4 -o addr show eth0\nexit\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "172.18.0.3/16") {
		t.Errorf("shell through exec: %v\n%s", err, out)
	}
}

// TestDockerBridgeLooksLikeDocker: inside web, iproute2 shows what it shows in a
// container of Docker's default bridge (docker-facts.md): 172.17.0.2/16 on eth0
// with MAC 02:42:ac:11:00:02, the default route via 172.17.0.1, the kernel's
// route of the bridge's subnet, and no IPv6 on an IPv4-only network.
func TestDockerBridgeLooksLikeDocker(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", "../labs/docker-bridge-lowlevel.yaml")
	addr := sb.OK("ip", "-n", "web", "addr", "show", "eth0")
	mustContain(t, "ip addr in web", addr,
		"link/ether 02:42:ac:11:00:02 brd ff:ff:ff:ff:ff:ff link-netnsid 0",
		"inet 172.17.0.2/16 brd 172.17.255.255 scope global eth0")
	if strings.Contains(addr, "inet6") {
		t.Errorf("eth0 in web has IPv6 on an IPv4-only network:\n%s", addr)
	}
	routes := sb.OK("ip", "-n", "web", "route")
	want := "default via 172.17.0.1 dev eth0 \n172.17.0.0/16 dev eth0 proto kernel scope link src 172.17.0.2 \n"
	if routes != want {
		t.Errorf("ip route in web:\n got %q\nwant %q", routes, want)
	}
	// The host end is a port of docker0 named like Docker's, and eth0 is its peer.
	ports := sb.OK("ip", "-o", "link", "show", "master", "docker0")
	if !regexp.MustCompile(`\d+: veth[0-9a-f]{7}@if\d+: `).MatchString(ports) {
		t.Errorf("ports of docker0:\n%s", ports)
	}
}
