package hostile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// sysctlLab is a lab of one namespace that sets host sysctls.
func sysctlLab(t *testing.T, name string, sysctls ...string) string {
	return writeLab(t, name+".yaml", "name: "+name+`
host:
  sysctls: {`+strings.Join(sysctls, ", ")+`}
namespaces:
  `+name+`-ns:
    interfaces:
      eth0: {addresses: [10.77.0.1/24]}
links:
  - [`+name+`-ns:eth0, host:`+name+`]
`)
}

func sysctlValue(sb *harness.Sandbox, name string) string {
	return strings.TrimSpace(sb.OK("sysctl", "-n", name))
}

// TestLabsShareHostSysctls: two labs that set the same host sysctls share
// them: taking one down leaves them for the other (which shows no drift), and
// the last one down puts back the values from before the first, in either
// order.
func TestLabsShareHostSysctls(t *testing.T) {
	for _, first := range []string{"one", "two"} {
		t.Run(first+"-down-first", func(t *testing.T) {
			sb := harness.NewSandbox(t)
			sb.OK("sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv4.conf.all.rp_filter=0")
			before := kernelState(sb)
			one := sysctlLab(t, "one", "net.ipv4.ip_forward: 1", "net.ipv4.conf.all.rp_filter: 2")
			two := sysctlLab(t, "two", "net.ipv4.ip_forward: 1", "net.ipv4.conf.all.rp_filter: 2")
			sb.OK("netlab", "up", one)
			if out := sb.OK("netlab", "up", two); !strings.Contains(out, "+ sysctl  host: net.ipv4.ip_forward = 1 (shared with lab one)") {
				t.Errorf("up of the second lab:\n%s", out)
			}
			labs := map[string]string{"one": one, "two": two}
			second := map[string]string{"one": "two", "two": "one"}[first]

			out := sb.OK("netlab", "down", labs[first])
			if !strings.Contains(out, "- sysctl  host: net.ipv4.ip_forward = 1 (kept for lab "+second+")") {
				t.Errorf("down of %s:\n%s", first, out)
			}
			for _, name := range []string{"net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"} {
				if v, want := sysctlValue(sb, name), map[string]string{"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "2"}[name]; v != want {
					t.Errorf("after down of %s, %s = %s, want %s (lab %s still sets it)", first, name, v, want, second)
				}
			}
			if got := sb.OK("netlab", "plan", labs[second]); got != "No changes.\n" {
				t.Errorf("lab %s drifted after down of %s:\n%s", second, first, got)
			}
			if out := sb.OK("netlab", "down", labs[second]); !strings.Contains(out, "- sysctl  host: net.ipv4.ip_forward 1 -> 0 (restored)") {
				t.Errorf("down of %s:\n%s", second, out)
			}
			if after := kernelState(sb); after != before {
				t.Errorf("after both downs:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if v := sysctlValue(sb, "net.ipv4.conf.all.rp_filter"); v != "0" {
				t.Errorf("rp_filter after both downs = %s, want 0", v)
			}
		})
	}
}

// TestLabsWantingDifferentHostSysctlsConflict: the second lab that wants
// another value for a host sysctl is refused before any change, naming the
// first.
func TestLabsWantingDifferentHostSysctlsConflict(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", sysctlLab(t, "one", "net.ipv4.ip_forward: 1"))
	before := kernelState(sb)
	res := sb.Fails("netlab", "up", sysctlLab(t, "two", "net.ipv4.ip_forward: 0"))
	want := "sysctl host: net.ipv4.ip_forward: lab two wants 0, but lab one set it to 1 and is still up; give the labs the same value, or take lab one down first"
	if !strings.Contains(res.Stderr, want) {
		t.Errorf("up of a lab wanting another value: exit %d\n%s%s\nwant: %s", res.Code, res.Stdout, res.Stderr, want)
	}
	if after := kernelState(sb); after != before {
		t.Errorf("the refused up changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestCorruptSavedSysctlsDoNotBlockDown: garbage in a lab's sysctls.json (or in
// the machine-wide record of host sysctls): down still removes the lab and
// names the file it could not restore from; up refuses to set sysctls over it.
func TestCorruptSavedSysctlsDoNotBlockDown(t *testing.T) {
	for _, file := range []string{"/run/netlab/docker-bridge/sysctls.json", "/run/netlab/host_sysctls.json"} {
		t.Run(filepath.Base(file), func(t *testing.T) {
			sb := harness.NewSandbox(t)
			lab := "../../labs/docker-bridge-lowlevel.yaml"
			sb.OK("netlab", "up", lab)
			sb.WriteFile(file, "garbage{")

			res := sb.Fails("netlab", "up", lab)
			if !strings.Contains(res.Stderr, "cannot read "+file) || !strings.Contains(res.Stderr, "nothing was changed") {
				t.Errorf("up over a corrupt %s: exit %d\n%s%s", file, res.Code, res.Stdout, res.Stderr)
			}

			out := sb.OK("netlab", "down", "--lab", "docker-bridge")
			if !strings.Contains(out, "Warning: cannot read "+file) || !strings.Contains(out, "Lab docker-bridge is down.") {
				t.Errorf("down with a corrupt %s:\n%s", file, out)
			}
			if got := sb.OK("ip", "netns", "list"); got != "" {
				t.Errorf("namespaces left after down: %q", got)
			}
			if got := sb.OK("ip", "-o", "link"); strings.Contains(got, "docker0") {
				t.Errorf("docker0 left after down: %q", got)
			}
		})
	}
}

// TestPlanScriptIsRestorable: the script of `plan -o commands` records what up
// records, so that `status` knows the lab's file and `down` puts the host's
// sysctls back: after the script and down, the kernel is as before the script.
func TestPlanScriptIsRestorable(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab, err := filepath.Abs("../../labs/docker-bridge-lowlevel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before := kernelState(sb)
	script := filepath.Join(t.TempDir(), "plan.sh")
	if err := os.WriteFile(script, []byte(sb.OK("netlab", "plan", "-o", "commands", lab)), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := sb.Exec("sh", script); res.Code != 0 {
		t.Fatalf("the plan's script failed: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if v := sysctlValue(sb, "net.ipv4.ip_forward"); v != "1" {
		t.Fatalf("ip_forward after the script = %s, want 1", v)
	}
	status := sb.OK("netlab", "status", "docker-bridge")
	if strings.Contains(status, "drift unknown") || !strings.Contains(status, lab) {
		t.Errorf("status after the script does not know the lab's file:\n%s", status)
	}
	if got := sb.SettledPlan(lab); got != "No changes.\n" {
		t.Errorf("plan after the script:\n%s", got)
	}
	sb.OK("netlab", "down", "--lab", "docker-bridge")
	if v := sysctlValue(sb, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("ip_forward after the script and down = %s, want 0", v)
	}
	if after := kernelState(sb); after != before {
		t.Errorf("after the script and down:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestPlanScriptRestoresARemovedSysctl: when the file drops a host sysctl, the
// script of the plan puts the original back through netlab (as up does), and
// netlab then finds nothing to do.
func TestPlanScriptRestoresARemovedSysctl(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", sysctlLab(t, "one", "net.ipv4.ip_forward: 1", "net.ipv4.conf.all.rp_filter: 2"))
	edited := sysctlLab(t, "one", "net.ipv4.conf.all.rp_filter: 2")
	script := filepath.Join(t.TempDir(), "plan.sh")
	out := sb.OK("netlab", "plan", "-o", "commands", edited)
	if !strings.Contains(out, "netlab __restore-sysctl one host net.ipv4.ip_forward") {
		t.Errorf("the script does not restore ip_forward through netlab:\n%s", out)
	}
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := sb.Exec("sh", script); res.Code != 0 {
		t.Fatalf("the plan's script failed: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if v := sysctlValue(sb, "net.ipv4.ip_forward"); v != "0" {
		t.Errorf("ip_forward after the script = %s, want 0", v)
	}
	if got := sb.SettledPlan(edited); got != "No changes.\n" {
		t.Errorf("plan after the script:\n%s", got)
	}
}
