package hostile

import (
	"os"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// upConverges runs up, which must exit 0 (the verification after it found
// nothing left to do), and then a plan, which must be empty.
func upConverges(t *testing.T, sb *harness.Sandbox, what, lab string) {
	t.Helper()
	if res := sb.Exec("netlab", "up", lab); res.Code != 0 {
		t.Fatalf("%s: up exit %d, want 0 in one up:\n%s%s", what, res.Code, res.Stdout, res.Stderr)
	}
	if got := sb.OK("netlab", "plan", lab); got != "No changes.\n" {
		t.Fatalf("%s: the plan after one up is not empty:\n%s", what, got)
	}
}

const mtuLab = `name: mtu
bridges:
  br0: {addresses: [10.9.0.1/24], mtu: MTU}
namespaces:
  a:
    interfaces:
      eth0: {addresses: [10.9.0.2/24]}
  b:
    interfaces:
      eth0: {addresses: [10.9.0.3/24], mtu: 1300}
links:
  - [a:eth0, br0]
  - [b:eth0, br0]
`

// TestBridgeMTUConvergesInOneUp: a bridge's mtu goes to its ports and to the
// container ends that do not set their own, so the kernel keeps the bridge at
// it; one up converges, also when the mtu is edited on a running lab.
func TestBridgeMTUConvergesInOneUp(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "mtu.yaml", strings.ReplaceAll(mtuLab, "MTU", "1400"))
	upConverges(t, sb, "mtu 1400", lab)
	for dev, want := range map[string]string{"br0": "1400", "a eth0": "1400", "b eth0": "1300"} {
		args := []string{"ip", "-o", "link", "show", "dev", dev}
		if ns, name, ok := strings.Cut(dev, " "); ok {
			args = []string{"ip", "-n", ns, "-o", "link", "show", "dev", name}
		}
		if got := sb.OK(args...); !strings.Contains(got, " mtu "+want+" ") {
			t.Errorf("%s: want mtu %s: %s", dev, want, got)
		}
	}
	if err := os.WriteFile(lab, []byte(strings.ReplaceAll(mtuLab, "MTU", "1450")), 0o644); err != nil {
		t.Fatal(err)
	}
	upConverges(t, sb, "mtu 1400 -> 1450", lab)
	if got := sb.OK("ip", "-o", "link", "show", "dev", "br0"); !strings.Contains(got, " mtu 1450 ") {
		t.Errorf("br0: want mtu 1450: %s", got)
	}
	sb.OK("netlab", "down", lab)
}
