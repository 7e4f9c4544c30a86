package hostile

import (
	"os"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestDockerProxyAndDNSLabEndToEnd: the lab of Docker's default mode
// (userland-proxy on both bridges, embedded DNS on the user network) comes up,
// its checks pass (the host on [::1] and 127.0.0.1 through the proxy, seen as
// the gateway; a neighbour's hairpin through the proxy; another machine keeps
// its address), a second up is "No changes.", and down leaves the kernel as it
// was: no table, no namespace, no proxy or DNS server running.
func TestDockerProxyAndDNSLabEndToEnd(t *testing.T) {
	sb := harness.NewSandbox(t)
	data, err := os.ReadFile("../testdata/docker-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lab := writeLab(t, "docker-proxy.yaml", string(data))
	before := sb.KernelState()
	plan := sb.OK("netlab", "plan", lab)
	for _, want := range []string{
		"+ process host: netlab serve --proxy 8000/tcp --to 172.17.0.2:80",
		"+ process c3: netlab serve --dns 53053 --name 'c3=172.18.0.2' --name 'c4=172.18.0.3'",
		`iifname "docker0" counter return`,
		"ip daddr != 127.0.0.0/8 fib daddr type local tcp dport @docker0-tcp-ports",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	sb.OK("netlab", "up", lab)
	if res := sb.Exec("netlab", "test", lab); res.Code != 0 {
		t.Errorf("netlab test failed:\n%s%s", res.Stdout, res.Stderr)
	}
	// The resolver inside c3 is the embedded server: the libc resolver, through
	// the resolv.conf netlab exec mounts, finds c4 at 127.0.0.11.
	if got := sb.OK("netlab", "exec", "c3", "--", "cat", "/etc/resolv.conf"); !strings.Contains(got, "nameserver 127.0.0.11\noptions ndots:0\n") {
		t.Errorf("c3's resolv.conf: %q", got)
	}
	if got := sb.OK("netlab", "up", lab); got != "No changes.\n" {
		t.Errorf("second up printed %q, want \"No changes.\\n\"", got)
	}
	sb.OK("netlab", "down", lab)
	if after := sb.KernelState(); after != before {
		t.Errorf("down left something:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if ps := sb.OK("sh", "-c", "ps -eo args | grep -E 'netlab serve --(proxy|dns)' | grep -v grep; true"); ps != "" {
		t.Errorf("processes left after down:\n%s", ps)
	}
}
