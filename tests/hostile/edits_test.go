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

// TestAddressEditKeepsRoutes: editing web's address on a running docker-bridge
// (172.17.0.2/16 -> 172.17.0.20/16) makes the kernel drop web's default route
// with the old address; one up adds it again, and so does the plan's script.
func TestAddressEditKeepsRoutes(t *testing.T) {
	src, err := os.ReadFile("../../labs/docker-bridge-lowlevel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(src), "addresses: [172.17.0.2/16]", "addresses: [172.17.0.20/16]", 1)
	if edited == string(src) {
		t.Fatal("the lab has no 172.17.0.2/16 to edit")
	}
	for _, how := range []string{"up", "commands"} {
		t.Run(how, func(t *testing.T) {
			sb := harness.NewSandbox(t)
			lab := writeLab(t, "docker-bridge.yaml", string(src))
			sb.OK("netlab", "up", lab)
			if err := os.WriteFile(lab, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			if how == "up" {
				upConverges(t, sb, "address edit", lab)
			} else {
				script := sb.OK("netlab", "plan", "-o", "commands", lab)
				path := t.TempDir() + "/edit.sh"
				if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				sb.OK("sh", path)
				if got := sb.SettledPlan(lab); got != "No changes.\n" {
					t.Fatalf("the plan after the edit's script is not empty:\n%s\nscript:\n%s", got, script)
				}
			}
			if got := sb.OK("ip", "-n", "web", "route", "show", "default"); !strings.Contains(got, "default via 172.17.0.1 dev eth0") {
				t.Errorf("web's default route: %q", got)
			}
			sb.OK("netlab", "down", lab)
		})
	}
}
