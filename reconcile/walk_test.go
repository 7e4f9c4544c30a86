package reconcile_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
)

// randomState builds a consistent desired state: namespaces each with eth0 on a
// host bridge or wired to another namespace, maybe an eth1, addresses, routes via
// the addresses' subnets, MTUs, MACs and sysctls, all drawn from small pools so
// that consecutive states overlap and the walk exercises changes, not just churn.
func randomState(rng *rand.Rand) *r.State {
	s := r.NewState("walk")
	bridges := []string{"br0", "br1"}[:1+rng.IntN(2)]
	for i, b := range bridges {
		k := r.InterfaceKey{NS: r.Host, Name: b}
		s.Interfaces[k] = &r.Interface{InterfaceKey: k, Kind: r.KindBridge, Up: true, MTU: pick(rng, 0, 1500)}
		s.Addrs[r.AddrKey{InterfaceKey: k, Prefix: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.1/24", i))}] = true
	}
	var names []string
	for i := range 6 {
		if rng.IntN(3) > 0 {
			names = append(names, fmt.Sprintf("n%d", i))
		}
	}
	for i, ns := range names {
		s.Namespaces[ns] = &r.Netns{Name: ns, LoUp: true}
		eth0 := r.InterfaceKey{NS: ns, Name: "eth0"}
		if i > 0 && rng.IntN(4) == 0 {
			// Wired straight to the previous namespace's eth1.
			peer := r.InterfaceKey{NS: names[i-1], Name: "eth1"}
			if _, taken := s.Interfaces[peer]; !taken {
				veth(s, eth0, peer, "")
				addr(s, eth0, fmt.Sprintf("192.168.%d.2/24", i))
				addr(s, peer, fmt.Sprintf("192.168.%d.1/24", i))
				continue
			}
		}
		b := rng.IntN(len(bridges))
		port := r.InterfaceKey{NS: r.Host, Name: "v" + ns + pick(rng, "", "x")} // a renamed port is a replace
		veth(s, eth0, port, bridges[b])
		s.Interfaces[eth0].MTU = pick(rng, 0, 1500, 9000)
		s.Interfaces[eth0].MAC = pick(rng, "", fmt.Sprintf("02:42:0a:%02x:00:%02x", b, i+2))
		host := 2 + i + rng.IntN(2)*50
		addr(s, eth0, fmt.Sprintf("10.%d.0.%d/24", b, host))
		if rng.IntN(3) == 0 {
			addr(s, eth0, fmt.Sprintf("2001:db8:%d::%d/64", b, host))
			s.Namespaces[ns].IPv6 = true // as Desired does for a namespace with IPv6 addresses
		}
		if rng.IntN(2) == 0 {
			k := r.RouteKey{NS: ns, To: netip.MustParsePrefix("0.0.0.0/0"), Metric: pick(rng, 0, 10)}
			s.Routes[k] = &r.Route{RouteKey: k, Via: netip.MustParseAddr(fmt.Sprintf("10.%d.0.1", b)), Dev: "eth0"}
		}
		if rng.IntN(3) == 0 {
			s.Sysctls[r.SysctlKey{NS: ns, Path: "net/ipv4/ip_forward"}] = pick(rng, "0", "1")
		}
		if rng.IntN(2) == 0 {
			s.Execs[ns] = randomExecs(rng)
		}
		if rng.IntN(2) == 0 {
			k := r.ProcKey{NS: ns, Command: pick(rng, "sleep 1000", "sleep 2000")}
			s.Processes[k] = &r.Process{ProcKey: k}
		}
	}
	if rng.IntN(2) == 0 {
		s.Sysctls[r.SysctlKey{NS: r.Host, Path: "net/ipv4/ip_forward"}] = "1"
	}
	if rng.IntN(3) == 0 {
		s.Execs[r.Host] = randomExecs(rng)
	}
	// A table in the host with some of a pool of rules, in a random order.
	if rng.IntN(3) > 0 {
		t := &r.Table{NS: r.Host, Name: r.TableName(s.Lab)}
		for _, b := range bridges {
			if rng.IntN(2) == 0 {
				t.Chains = append(t.Chains, &r.Chain{Name: "nat-postrouting", Type: r.ChainNAT, Hook: r.HookPostrouting, Priority: 100, Rules: []*r.Rule{
					{Match: []r.Match{r.OIFName{Name: b, Neg: true}}, Verdict: r.VerdictMasquerade, Comment: b + ": masquerade"},
				}})
				break
			}
		}
		t.Chains = append(t.Chains, &r.Chain{Name: "forward", Type: r.ChainFilter, Hook: r.HookForward, Rules: []*r.Rule{
			{Match: []r.Match{r.OIFName{Name: bridges[0]}}, Verdict: pick(rng, r.VerdictAccept, r.VerdictDrop)},
		}})
		s.Tables[r.Host] = t
	}
	// Hairpin on some bridge ports, multicast snooping off on some bridges.
	for _, l := range s.Interfaces {
		if l.Master != "" && rng.IntN(3) == 0 {
			l.Hairpin = true
		}
		if l.Kind == r.KindBridge && rng.IntN(3) == 0 {
			l.SnoopingOff = true
		}
	}
	return s
}

func pick[T any](rng *rand.Rand, choices ...T) T { return choices[rng.IntN(len(choices))] }

func veth(s *r.State, a, b r.InterfaceKey, master string) {
	s.Interfaces[a] = &r.Interface{InterfaceKey: a, Kind: r.KindVeth, Peer: b, Up: true}
	s.Interfaces[b] = &r.Interface{InterfaceKey: b, Kind: r.KindVeth, Peer: a, Master: master, Up: true}
}

func addr(s *r.State, k r.InterfaceKey, p string) {
	s.Addrs[r.AddrKey{InterfaceKey: k, Prefix: netip.MustParsePrefix(p)}] = true
}

// drift changes the fake kernel by hand, as a student poking at a lab would.
func drift(rng *rand.Rand, d *fake.Driver, observed *r.State) {
	var owned []r.InterfaceKey
	for k := range observed.Interfaces {
		owned = append(owned, k)
	}
	if len(owned) == 0 {
		return
	}
	k := owned[rng.IntN(len(owned))]
	d.Mutate(func(kern *fake.Kernel) {
		switch rng.IntN(7) {
		case 0:
			kern.DeleteInterface(k)
		case 1:
			kern.SetDown(k)
		case 2:
			kern.SetAddrs(k, r.AddrKey{InterfaceKey: k, Prefix: netip.MustParsePrefix("172.31.0.9/16")})
		case 3:
			for rk := range observed.Routes {
				kern.DeleteRoute(rk)
				break
			}
		case 4:
			kern.FlushTable(r.Host, r.TableName(observed.Lab))
		case 5:
			for pk := range observed.Processes {
				kern.KillProcess(pk)
				break
			}
		case 6:
			kern.ToggleSnooping(k)
		}
	})
}

// TestRandomWalkConverges walks through random desired states with drift in
// between: every step must converge, the next plan must be empty, and the objects
// of others must never be touched.
func TestRandomWalkConverges(t *testing.T) {
	ctx := context.Background()
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 42))
		d := fake.New()
		d.AddForeignNetns("foreign", "")
		d.AddForeignNetns("theirs", "other-lab")
		d.AddForeignInterface(r.Interface{InterfaceKey: r.InterfaceKey{NS: r.Host, Name: "eth0"}, Kind: "device", Up: true}, "")
		d.AddForeignInterface(r.Interface{InterfaceKey: r.InterfaceKey{NS: r.Host, Name: "docker0"}, Kind: r.KindBridge}, "other-lab")
		foreignNetns, foreignLinks := d.Snapshot()

		for step := range 30 {
			desired := randomState(rng)
			if observed, _ := d.Observe(ctx, r.Query{Lab: "walk"}); step > 0 && rng.IntN(2) == 0 {
				drift(rng, d, observed)
			}
			converge(t, ctx, d, desired, fmt.Sprintf("seed %d step %d", seed, step))
		}
		converge(t, ctx, d, r.NewState("walk"), fmt.Sprintf("seed %d down", seed))

		netns, links := d.Snapshot()
		if diff := cmp.Diff(foreignNetns, netns); diff != "" {
			t.Errorf("seed %d: namespaces after down differ from the foreign ones (-want +got):\n%s", seed, diff)
		}
		if diff := cmp.Diff(foreignLinks, links); diff != "" {
			t.Errorf("seed %d: interfaces after down differ from the foreign ones (-want +got):\n%s", seed, diff)
		}
	}
}

func converge(t *testing.T, ctx context.Context, d *fake.Driver, desired *r.State, where string) {
	t.Helper()
	plan, err := r.MakePlan(ctx, d, desired)
	if err != nil {
		t.Fatalf("%s: plan: %v", where, err)
	}
	if err := r.Apply(ctx, d, plan); err != nil {
		t.Fatalf("%s: apply: %v\nplan:\n%s", where, err, text(plan))
	}
	if err := r.Verify(ctx, d, desired, plan); err != nil {
		t.Fatalf("%s: %v\nafter applying:\n%s", where, err, text(plan))
	}
	observed, err := d.Observe(ctx, r.Query{Lab: desired.Lab, Sysctls: desired.SysctlKeys()})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(comparable(desired, desired), comparable(desired, observed)); diff != "" {
		t.Fatalf("%s: the kernel does not hold the desired state (-want +got):\n%s\nafter applying:\n%s", where, diff, text(plan))
	}
	writes := d.Writes
	again, err := r.MakePlan(ctx, d, desired)
	if err != nil || !again.Empty() || d.Writes != writes {
		t.Fatalf("%s: second plan not empty: %v %v", where, err, text(again))
	}
}

// comparable projects a state onto what desired asks for, independently of Diff:
// an attribute desired leaves to the kernel (MTU 0, MAC "") is not compared.
func comparable(desired, s *r.State) map[string]string {
	out := map[string]string{}
	for k, n := range s.Namespaces {
		out["netns "+k] = fmt.Sprintf("ipv6=%v", n.IPv6)
	}
	for k, l := range s.Interfaces {
		want, ok := desired.Interfaces[k]
		mtu, mac := l.MTU, l.MAC
		if ok && want.MTU == 0 {
			mtu = 0
		}
		if ok && want.MAC == "" {
			mac = ""
		}
		out["link "+k.String()] = fmt.Sprintf("%s peer=%s master=%s hairpin=%v up=%v mtu=%d mac=%s snooping-off=%v", l.Kind, l.Peer, l.Master, l.Hairpin, l.Up, mtu, mac, l.SnoopingOff)
	}
	for k := range s.Addrs {
		out["addr "+k.InterfaceKey.String()+" "+k.Prefix.String()] = ""
	}
	for k, rt := range s.Routes {
		out[fmt.Sprintf("route %s %s %d", k.NS, k.To, k.Metric)] = rt.Via.String() + " " + rt.Dev
	}
	for ns, t := range s.Tables {
		out["table "+ns] = t.Script()
	}
	for k, p := range s.Processes {
		out["process "+k.NS+" "+k.Command] = fmt.Sprint(len(p.PIDs) > 0 || s == desired)
	}
	for ns, list := range s.Execs {
		for i, c := range list {
			out[fmt.Sprintf("exec %s %d", ns, i)] = c.Command + " " + c.Hash
		}
	}
	for k, v := range s.Sysctls {
		if _, ok := desired.Sysctls[k]; ok {
			out["sysctl "+k.NS+" "+k.Path] = v
		}
	}
	return out
}

func text(p *r.Plan) string {
	if p == nil {
		return "<nil>"
	}
	var b []byte
	for _, a := range p.Actions {
		b = append(b, r.Line(a)+"\n"...)
	}
	return string(b)
}

// TestFailedStepIsNamedAndNextRunConverges interrupts an apply half-way: the error
// names the step, and planning again from what the kernel holds converges.
func TestFailedStepIsNamedAndNextRunConverges(t *testing.T) {
	ctx := context.Background()
	d := fake.New()
	desired := randomState(rand.New(rand.NewPCG(7, 7)))
	plan, err := r.MakePlan(ctx, d, desired)
	if err != nil {
		t.Fatal(err)
	}
	failAt := len(plan.Actions) / 2
	d.Fail = func(a r.Action) error {
		if r.Line(a) == r.Line(plan.Actions[failAt]) {
			return fmt.Errorf("injected failure")
		}
		return nil
	}
	err = r.Apply(ctx, d, plan)
	want := fmt.Sprintf("apply step %d/%d (%s): injected failure", failAt+1, len(plan.Actions), r.Line(plan.Actions[failAt]))
	if err == nil || err.Error() != want {
		t.Fatalf("apply error:\n got %v\nwant %s", err, want)
	}
	d.Fail = nil
	converge(t, ctx, d, desired, "after failure")
}

// Verify after a plan reads again only the namespaces the plan touched, and the
// fake, like the kernel driver, answers for the others with its earlier reading:
// each step here changes a namespace only through an action that names another
// one (the far end of a veth, a namespace's deletion), so a touched set that
// missed it would fail Verify.
func TestVerifyRereadsWhatThePlanTouched(t *testing.T) {
	ctx := context.Background()
	d := fake.New()
	two := func(wired bool) *r.State {
		s := r.NewState("touch")
		for _, ns := range []string{"a", "b"} {
			s.Namespaces[ns] = &r.Netns{Name: ns, LoUp: true}
		}
		if wired {
			veth(s, r.InterfaceKey{NS: "a", Name: "x"}, r.InterfaceKey{NS: "b", Name: "y"}, "")
		}
		return s
	}
	withoutB := r.NewState("touch")
	withoutB.Namespaces["a"] = &r.Netns{Name: "a", LoUp: true}
	for i, want := range []*r.State{two(false), two(true), two(false), two(true), withoutB} {
		plan, err := r.MakePlan(ctx, d, want)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(ctx, d, plan); err != nil {
			t.Fatal(err)
		}
		if err := r.Verify(ctx, d, want, plan); err != nil {
			t.Errorf("step %d: %v\nafter applying:\n%s", i, err, text(plan))
		}
	}
}

// randomExecs is an exec: list of one to three commands from a small pool, so
// that consecutive lists share a beginning, differ in one place, or are
// shorter or longer.
func randomExecs(rng *rand.Rand) []r.ExecCommand {
	var lines []string
	for i := range 1 + rng.IntN(3) {
		lines = append(lines, fmt.Sprintf("echo %d%s", i, pick(rng, "", "", "x")))
	}
	return r.ExecList(lines)
}

// TestExecRunsOnceAndAFailureRecordsWhatSucceeded: exec commands run once over
// two ups; a failing command fails the apply, stops the namespace's later
// commands, and the record holds only those before it, so the next up runs the
// list from the failed command on.
func TestExecRunsOnceAndAFailureRecordsWhatSucceeded(t *testing.T) {
	ctx := context.Background()
	d := fake.New()
	s := r.NewState("exec")
	s.Namespaces["a"] = &r.Netns{Name: "a", LoUp: true}
	s.Execs["a"] = r.ExecList([]string{"one", "two", "three"})
	s.Execs[r.Host] = r.ExecList([]string{"host"})
	converge(t, ctx, d, s, "first up")
	converge(t, ctx, d, s, "second up")
	if diff := cmp.Diff([]string{"host: host", "a: one", "a: two", "a: three"}, d.Ran, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("run once over two ups (-want +got):\n%s", diff)
	}

	s.Execs["a"] = r.ExecList([]string{"one", "TWO", "three"})
	d.Ran = nil
	d.Fail = func(a r.Action) error {
		if e, ok := a.(r.RunExec); ok && e.Command() == "TWO" {
			return fmt.Errorf("exit status 1")
		}
		return nil
	}
	plan, err := r.MakePlan(ctx, d, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, d, plan); err == nil || !strings.Contains(err.Error(), "+ exec    a: TWO (edited)): exit status 1") {
		t.Fatalf("apply: want the failed command named, got %v", err)
	}
	if len(d.Ran) != 0 {
		t.Errorf("ran %v after the failed command", d.Ran)
	}
	observed, _ := d.Observe(ctx, r.Query{Lab: "exec"})
	if diff := cmp.Diff(r.ExecList([]string{"one"}), observed.Execs["a"]); diff != "" {
		t.Errorf("record after the failure (-want +got):\n%s", diff)
	}
	d.Fail = nil
	converge(t, ctx, d, s, "after the failure")
	if diff := cmp.Diff([]string{"a: TWO", "a: three"}, d.Ran); diff != "" {
		t.Errorf("run after the failure (-want +got):\n%s", diff)
	}
}

// TestReadyEditRestartsNothing: ready: and timeout: are how up waits for a
// process, not what runs: changing them alone plans nothing.
func TestReadyEditRestartsNothing(t *testing.T) {
	ctx := context.Background()
	d := fake.New()
	s := r.NewState("ready")
	s.Namespaces["a"] = &r.Netns{Name: "a", LoUp: true}
	k := r.ProcKey{NS: "a", Command: "python3 -m http.server 8000"}
	s.Processes[k] = &r.Process{ProcKey: k, Ready: &r.Ready{Kind: "tcp", Port: 8000, Timeout: 10 * time.Second}}
	converge(t, ctx, d, s, "up")
	s.Processes[k].Ready = &r.Ready{Kind: "http", URL: "http://127.0.0.1:8000/", Timeout: 20 * time.Second}
	plan, err := r.MakePlan(ctx, d, s)
	if err != nil || !plan.Empty() {
		t.Errorf("a change of ready: alone plans %v %s", err, text(plan))
	}
}
