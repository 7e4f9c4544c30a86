package reconcile_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
	"netlab/tests/harness"
)

func planOf(t *testing.T, d r.Driver, desired *r.State) *r.Plan {
	t.Helper()
	p, err := r.MakePlan(context.Background(), d, desired)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func planLines(p *r.Plan) []string {
	out := []string{}
	for _, a := range p.Actions {
		out = append(out, r.Line(a))
	}
	return out
}

// upTo applies a plan and verifies that nothing is left to do.
func upTo(t *testing.T, d r.Driver, desired *r.State) *r.Plan {
	t.Helper()
	ctx := context.Background()
	p := planOf(t, d, desired)
	if err := r.Apply(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, d, desired, p); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, d, desired, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPlanGoldenShaping: labs/shaping.yaml's plan as text and as the tc and ip
// commands of its script, and its down.
func TestPlanGoldenShaping(t *testing.T) {
	desired := harness.Desired(t, "../labs/shaping.yaml")
	d := fake.New()
	p := planOf(t, d, desired)
	p.File = "../labs/shaping.yaml"
	for ext, write := range map[string]func(*r.Plan, *bytes.Buffer) error{
		"up.txt":      func(p *r.Plan, b *bytes.Buffer) error { return p.WriteText(b) },
		"up.commands": func(p *r.Plan, b *bytes.Buffer) error { return p.WriteCommands(b) },
	} {
		var b bytes.Buffer
		if err := write(p, &b); err != nil {
			t.Fatal(err)
		}
		golden(t, "shaping."+ext, b.Bytes())
	}
	upTo(t, d, desired)
	var b bytes.Buffer
	planOf(t, d, r.NewState(desired.Lab)).WriteText(&b)
	golden(t, "shaping.down.txt", b.Bytes())
}

// TestShapingEditIsOneChange: editing a running link's rate is one ~ action
// for the link (both ends), no link replaced; removing the shaping is one -;
// a qdisc deleted by hand on one end is put back on that end only.
func TestShapingEditIsOneChange(t *testing.T) {
	lab, err := os.ReadFile("../labs/shaping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := fake.New()
	upTo(t, d, harness.DesiredFromText(t, string(lab)))

	edited := strings.Replace(string(lab), "rate: 10mbit, burst: 32kb", "rate: 20mbit, burst: 32kb", 1)
	p := upTo(t, d, harness.DesiredFromText(t, edited))
	want := []string{"~ qdisc   client:slow, server:slow rate 10mbit -> 20mbit"}
	if diff := cmp.Diff(want, planLines(p)); diff != "" {
		t.Errorf("rate edit (-want +got):\n%s", diff)
	}

	d.Mutate(func(k *fake.Kernel) { k.DeleteQdisc(r.InterfaceKey{NS: "server", Name: "slow"}) })
	desired := harness.DesiredFromText(t, edited)
	p = upTo(t, d, desired)
	want = []string{"+ qdisc   server:slow tbf rate 20mbit burst 32kb"}
	if diff := cmp.Diff(want, planLines(p)); diff != "" {
		t.Errorf("qdisc deleted by hand (-want +got):\n%s", diff)
	}

	unshaped := strings.Replace(string(lab), ", rate: 10mbit, burst: 32kb", "", 1)
	p = upTo(t, d, harness.DesiredFromText(t, unshaped))
	want = []string{"- qdisc   client:slow, server:slow tbf rate 20mbit burst 32kb"}
	if diff := cmp.Diff(want, planLines(p)); diff != "" {
		t.Errorf("shaping removed (-want +got):\n%s", diff)
	}
}

// TestShapingKindsChange: a delay added to a rated link replaces netlab's
// qdiscs on it (tbf with netem under it), as one ~ action.
func TestShapingKindsChange(t *testing.T) {
	lab, err := os.ReadFile("../labs/shaping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := fake.New()
	upTo(t, d, harness.DesiredFromText(t, string(lab)))
	delayed := strings.Replace(string(lab), "rate: 10mbit, burst: 32kb", "rate: 10mbit, burst: 32kb, delay: 20ms, jitter: 5ms, loss: 1%", 1)
	desired := harness.DesiredFromText(t, delayed)
	p := upTo(t, d, desired)
	want := []string{"~ qdisc   client:slow, server:slow tbf rate 10mbit burst 32kb -> tbf rate 10mbit burst 32kb, netem delay 20ms 5ms loss 1%"}
	if diff := cmp.Diff(want, planLines(p)); diff != "" {
		t.Errorf("delay added (-want +got):\n%s", diff)
	}
	wantCmds := []string{
		"tc -n client qdisc del dev slow root handle 4e4c:",
		"tc -n client qdisc replace dev slow root handle 4e4c: tbf rate 10mbit burst 32kb limit 95268",
		"tc -n client qdisc replace dev slow parent 4e4c:1 handle 4e4d: netem delay 20ms 5ms loss 1%",
		"tc -n server qdisc del dev slow root handle 4e4c:",
		"tc -n server qdisc replace dev slow root handle 4e4c: tbf rate 10mbit burst 32kb limit 95268",
		"tc -n server qdisc replace dev slow parent 4e4c:1 handle 4e4d: netem delay 20ms 5ms loss 1%",
	}
	if diff := cmp.Diff(wantCmds, p.Actions[0].Commands()); diff != "" {
		t.Errorf("commands (-want +got):\n%s", diff)
	}
}

// TestMissingQdiscRefused: on a kernel without netem, a lab with delay and
// loss is refused when planning, with one line naming the keys and the
// module, and nothing is applied.
func TestMissingQdiscRefused(t *testing.T) {
	d := fake.New()
	d.NoQdisc = map[string]bool{"netem": true}
	desired := harness.DesiredFromText(t, `name: lossy
namespaces:
  r: {interfaces: {a: {addresses: [10.1.0.1/24]}}}
  far: {interfaces: {b: {addresses: [10.1.0.2/24]}}}
links:
  - {ends: [r:a, far:b], loss: 1%, delay: 20ms}
  - {ends: [r:c, far:c], rate: 10mbit}
`)
	_, err := r.MakePlan(context.Background(), d, desired)
	var missing *r.MissingModuleError
	if !errors.As(err, &missing) {
		t.Fatalf("plan: %v, want a MissingModuleError", err)
	}
	want := "delay and loss need the sch_netem kernel module, which this kernel lacks (on far:b, r:a); nothing was changed"
	if err.Error() != want {
		t.Errorf("plan: %q\nwant %q", err, want)
	}
	if d.Writes != 0 {
		t.Errorf("%d writes, want none", d.Writes)
	}
}

// TestStateDown: a link set down in the file goes down in one ~ per end (its
// routes left out: the kernel keeps none through a device that is down); set
// up again, its routes come back in the same up.
func TestStateDown(t *testing.T) {
	lab := `name: failover
namespaces:
  a:
    interfaces:
      p: {addresses: [10.0.1.1/24]}
    routes: [10.9.0.0/16 via 10.0.1.2]
  b:
    interfaces:
      p: {addresses: [10.0.1.2/24]}
links:
  - {ends: [a:p, b:p], state: STATE}
`
	d := fake.New()
	upTo(t, d, harness.DesiredFromText(t, strings.Replace(lab, "STATE", "up", 1)))
	p := upTo(t, d, harness.DesiredFromText(t, strings.Replace(lab, "STATE", "down", 1)))
	want := []string{
		"- route   a: 10.9.0.0/16 via 10.0.1.2 dev p",
		"~ link    a:p up -> down",
		"~ link    b:p up -> down",
	}
	if diff := cmp.Diff(want, planLines(p)); diff != "" {
		t.Errorf("state: down (-want +got):\n%s", diff)
	}
	p = upTo(t, d, harness.DesiredFromText(t, strings.Replace(lab, "STATE", "up", 1)))
	want = []string{
		"~ link    a:p down -> up",
		"~ link    b:p down -> up",
		"+ route   a: 10.9.0.0/16 via 10.0.1.2 dev p",
	}
	if diff := cmp.Diff(want, planLines(p)); diff != "" {
		t.Errorf("state: up again (-want +got):\n%s", diff)
	}
}

// TestLoopbackAddresses: addresses on a namespace's lo and routes through lo
// are the lab's: added, kept, and gone with the namespace.
func TestLoopbackAddresses(t *testing.T) {
	desired := harness.Desired(t, "../topology/testdata/valid-lo.yaml")
	d := fake.New()
	p := upTo(t, d, desired)
	var lo []string
	for _, l := range planLines(p) {
		if strings.Contains(l, ":lo ") || strings.Contains(l, "dev lo") {
			lo = append(lo, l)
		}
	}
	want := []string{
		"+ addr    r1:lo 10.255.0.1/32",
		"+ addr    r1:lo 2001:db8:ff::1/128",
		"+ addr    r2:lo 10.255.0.2/32",
		"+ route   r1: 10.99.0.0/16 dev lo",
		"+ route   r2: 10.98.0.0/16 dev lo",
	}
	if diff := cmp.Diff(want, lo); diff != "" {
		t.Errorf("lo (-want +got):\n%s", diff)
	}
	if p := planOf(t, d, desired); !p.Empty() {
		t.Errorf("second plan: %v", planLines(p))
	}
	upTo(t, d, r.NewState(desired.Lab))
	if p := planOf(t, d, desired); len(p.Actions) != len(planOf(t, fake.New(), desired).Actions) {
		t.Errorf("after down, the plan is not the first one: %v", planLines(p))
	}
}

// TestRangesCompile: a range is as many namespaces, links and checks as its
// numbers, each with its own addresses.
func TestRangesCompile(t *testing.T) {
	desired := harness.Desired(t, "../topology/testdata/valid-ranges.yaml")
	if n := len(desired.Namespaces); n != 23 {
		t.Errorf("%d namespaces, want 23 (h1..h20, r1..r3)", n)
	}
	for _, a := range []string{"h1:eth0 10.0.1.1/16", "h20:eth0 10.0.20.1/16", "h20:eth0 2001:db8::14/64", "r3:lo 192.0.2.3/32"} {
		found := false
		for k := range desired.Addrs {
			found = found || k.InterfaceKey.String()+" "+k.Prefix.String() == a
		}
		if !found {
			t.Errorf("no address %s", a)
		}
	}
	if l := desired.Interfaces[r.InterfaceKey{NS: "h7", Name: "eth0"}]; l == nil || l.MAC != "02:00:00:00:00:07" || l.MTU != 1457 {
		t.Errorf("h7:eth0 = %+v", l)
	}
	if l := desired.Interfaces[r.InterfaceKey{NS: "r2", Name: "right"}]; l == nil || l.Peer != (r.InterfaceKey{NS: "r3", Name: "left"}) {
		t.Errorf("r2:right = %+v", l)
	}
	upTo(t, fake.New(), desired)
}
