package hostile

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestThroughputMeasuresTheRate: labs/shaping.yaml's slow link (rate: 10mbit)
// measured by netlab's own throughput check is within 30% of 10 Mbit/s, and
// its down link blocks a ping.
func TestThroughputMeasuresTheRate(t *testing.T) {
	sb := harness.NewSandbox(t)
	sb.OK("netlab", "up", "../../labs/shaping.yaml")
	res := sb.Exec("netlab", "test", "../../labs/shaping.yaml")
	if res.Code != 0 {
		t.Fatalf("netlab test: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	m := regexp.MustCompile(`client -> throughput server \(10\.0\.1\.2\)\s+pass\s+([0-9.]+) Mbit/s`).FindStringSubmatch(res.Stdout)
	if m == nil {
		t.Fatalf("no measured rate in:\n%s", res.Stdout)
	}
	rate, _ := strconv.ParseFloat(m[1], 64)
	if rate < 7 || rate > 13 {
		t.Errorf("measured %.2f Mbit/s on a 10mbit link, want within 30%%", rate)
	}
	if !regexp.MustCompile(`client -> ping 10\.0\.2\.2 \(expect fail\)\s+pass`).MatchString(res.Stdout) {
		t.Errorf("the down link did not block the ping:\n%s", res.Stdout)
	}
}

const meshLab = `name: mesh
bridges:
  s1: {}
namespaces:
  h[1-3]:
    interfaces:
      eth0: {addresses: ["10.0.0.{i}/24"]}
links:
  - {ends: ["h[1-2]:eth0", s1]}
  - {ends: ["h3:eth0", s1], state: STATE}
checks:
  - {mesh: all, ping: true}
`

// TestMeshOfThreeRunsSixPings: a mesh of three namespaces pings the six
// ordered pairs and prints the matrix; with one host's link down, the four
// pairs that involve it fail and netlab test exits 1.
func TestMeshOfThreeRunsSixPings(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "mesh.yaml", strings.Replace(meshLab, "STATE", "up", 1))
	sb.OK("netlab", "up", lab)
	out := sb.OK("netlab", "test", lab)
	for _, want := range []string{
		"mesh h1 h2 h3 -> ping  pass    6/6 pairs answered",
		"   h1 h2 h3\nh1  - ok ok\nh2 ok  - ok\nh3 ok ok  -\n",
		"1 passed, 0 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("netlab test: no %q in:\n%s", want, out)
		}
	}
	down := writeLab(t, "mesh-down.yaml", strings.Replace(meshLab, "STATE", "down", 1))
	sb.OK("netlab", "up", down)
	res := sb.Exec("netlab", "test", down)
	if res.Code != 1 || !strings.Contains(res.Stdout, "2/6 pairs answered") || !strings.Contains(res.Stdout, "h3  X  X  -") {
		t.Errorf("netlab test with h3's link down: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestDelayRefusedBeforeAnyChange: delay and loss need netem. netlab validate
// accepts the file whatever the kernel; where the kernel lacks sch_netem (as
// here) plan and up refuse it in one line naming the module, with nothing
// changed; where it has it, up applies it. The test checks whichever the
// kernel offers.
func TestDelayRefusedBeforeAnyChange(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "lossy.yaml", `name: lossy
namespaces:
  r: {interfaces: {a: {addresses: [10.1.0.1/24]}}}
  far: {interfaces: {b: {addresses: [10.1.0.2/24]}}}
links:
  - {ends: [r:a, far:b], delay: 20ms, jitter: 5ms, loss: 1%}
`)
	if out := sb.OK("netlab", "validate", lab); !strings.Contains(out, "valid lab") {
		t.Errorf("validate: %s", out)
	}
	netem := sb.Exec("unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms").Code == 0
	if netem {
		t.Log("this kernel has netem: up applies it")
		sb.OK("netlab", "up", lab)
		if out := sb.OK("tc", "-n", "r", "qdisc", "show", "dev", "a"); !strings.Contains(out, "netem") || !strings.Contains(out, "delay 20ms") {
			t.Errorf("tc qdisc show: %s", out)
		}
		return
	}
	t.Log("this kernel has no netem: plan and up refuse the lab")
	before := kernelState(sb)
	want := "netlab: delay, jitter and loss need the sch_netem kernel module, which this kernel lacks (on far:b, r:a); nothing was changed\n"
	for _, cmd := range []string{"plan", "up"} {
		res := sb.Fails("netlab", cmd, lab)
		if res.Stderr != want || res.Stdout != "" {
			t.Errorf("netlab %s: stdout %q, stderr %q\nwant stderr %q", cmd, res.Stdout, res.Stderr, want)
		}
	}
	if after := kernelState(sb); after != before {
		t.Errorf("the refused lab changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestRangesExpand: validate -o yaml prints the lab with its ranges expanded,
// and an error inside a range points at it and names the copy that has it.
func TestRangesExpand(t *testing.T) {
	sb := harness.NewSandbox(t)
	lab := writeLab(t, "mesh.yaml", strings.Replace(meshLab, "STATE", "up", 1))
	out := sb.OK("netlab", "validate", "-o", "yaml", lab)
	for _, want := range []string{"  h1:\n", "  h3:\n", `eth0: {addresses: ["10.0.0.3/24"]}`, `- {ends: ["h2:eth0", s1]}`} {
		if !strings.Contains(out, want) {
			t.Errorf("validate -o yaml: no %q in:\n%s", want, out)
		}
	}
	bad := writeLab(t, "bad.yaml", strings.Replace(strings.Replace(meshLab, "STATE", "up", 1), "10.0.0.{i}/24", "10.0.{i+254}.1/16", 1))
	res := sb.Fails("netlab", "validate", bad)
	want := bad + `:7:26: interface h2:eth0: invalid address "10.0.256.1/16" (want ADDRESS/PREFIXLEN, e.g. 172.17.0.2/16)` + "\n"
	if res.Stderr != want {
		t.Errorf("validate: %q\nwant %q", res.Stderr, want)
	}
}
