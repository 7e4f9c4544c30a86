package reconcile_test

import (
	"bytes"
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
	"netlab/tests/harness"
)

var update = flag.Bool("update", false, "rewrite the plan goldens under testdata/")

// TestPlanGoldens renders the plans of real lab files against an empty fake
// kernel, in every output format, and the plan of `down` once they are up
// (after which a plan is empty: the fake models what the lab writes). The
// goldens are the readable record of what netlab prints; regenerate them with
// `go test ./reconcile -update` and read the diff.
func TestPlanGoldens(t *testing.T) {
	for _, file := range []string{"../labs/docker-bridge-lowlevel.yaml", "../labs/docker-bridge-nftables.yaml", "../labs/docker-bridge-iptables.yaml", "../tests/testdata/spine.yaml", "../tests/testdata/setup.yaml", "../tests/testdata/docker-proxy.yaml"} {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			desired := harness.Desired(t, file)
			ctx := context.Background()
			d := fake.New()
			plan, err := r.MakePlan(ctx, d, desired)
			if err != nil {
				t.Fatal(err)
			}
			plan.File = file // as `plan` sets it: the script records it
			for ext, write := range map[string]func(*r.Plan, *bytes.Buffer) error{
				"up.txt":      func(p *r.Plan, b *bytes.Buffer) error { return p.WriteText(b) },
				"up.json":     func(p *r.Plan, b *bytes.Buffer) error { return p.WriteJSON(b) },
				"up.commands": func(p *r.Plan, b *bytes.Buffer) error { return p.WriteCommands(b) },
			} {
				var b bytes.Buffer
				if err := write(plan, &b); err != nil {
					t.Fatal(err)
				}
				golden(t, name+"."+ext, b.Bytes())
			}

			if err := r.Apply(ctx, d, plan); err != nil {
				t.Fatal(err)
			}
			// The fake models every layout of the lab's rules: it converges.
			if err := r.Verify(ctx, d, desired, plan); err != nil {
				t.Fatal(err)
			}
			down, err := r.MakePlan(ctx, d, r.NewState(desired.Lab))
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			down.WriteText(&b)
			// The fake's PIDs follow the order in which processes of several
			// namespaces happened to start (a phase applies concurrently).
			golden(t, name+".down.txt", fakePIDs.ReplaceAll(b.Bytes(), []byte("(pid N)")))
		})
	}
}

var fakePIDs = regexp.MustCompile(`\(pid [0-9 ]+\)`)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./reconcile -update` to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// TestPlanGoldenAddressEdit: web's address of docker-bridge edited on a running
// lab (172.17.0.2/16 -> 172.17.0.20/16). Deleting the old address makes the
// kernel (and the fake) drop web's default route through it: the plan adds the
// route again after the addresses, and one apply converges.
func TestPlanGoldenAddressEdit(t *testing.T) {
	ctx := context.Background()
	desired, d := upOnFake(t, "../labs/docker-bridge-lowlevel.yaml")
	eth0 := r.InterfaceKey{NS: "web", Name: "eth0"}
	old := r.AddrKey{InterfaceKey: eth0, Prefix: netip.MustParsePrefix("172.17.0.2/16")}
	if !desired.Addrs[old] {
		t.Fatalf("the lab has no %v", old)
	}
	delete(desired.Addrs, old)
	desired.Addrs[r.AddrKey{InterfaceKey: eth0, Prefix: netip.MustParsePrefix("172.17.0.20/16")}] = true
	plan, err := r.MakePlan(ctx, d, desired)
	if err != nil {
		t.Fatal(err)
	}
	goldenTextAndCommands(t, "docker-bridge.readdress", plan)
	if err := r.Apply(ctx, d, plan); err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(ctx, d, desired, plan); err != nil {
		t.Fatal(err)
	}
}

// TestPlanGoldenExecEdit: the exec: list of a running lab edited (its second
// command changed, a command added at the end): the plan runs the list again
// from the changed command on, and nothing before it; the host's list removed:
// its record is forgotten, with nothing undone.
func TestPlanGoldenExecEdit(t *testing.T) {
	ctx := context.Background()
	desired, d := upOnFake(t, "../tests/testdata/setup.yaml")
	web := desired.Execs["web"]
	lines := []string{web[0].Command, "tc qdisc replace dev eth0 root netem delay 20ms", web[2].Command, "echo done >>/run/setup.log"}
	desired.Execs["web"] = r.ExecList(lines)
	delete(desired.Execs, r.Host)
	plan, err := r.MakePlan(ctx, d, desired)
	if err != nil {
		t.Fatal(err)
	}
	goldenTextAndCommands(t, "setup.edit-exec", plan)
	d.Ran = nil
	if err := r.Apply(ctx, d, plan); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web: " + lines[1], "web: " + lines[2], "web: " + lines[3]}, d.Ran); diff != "" {
		t.Errorf("commands run (-want +got):\n%s", diff)
	}
	if err := r.Verify(ctx, d, desired, plan); err != nil {
		t.Fatal(err)
	}
}

// goldenTextAndCommands compares a plan's text and its commands script with
// the goldens NAME.txt and NAME.commands.
func goldenTextAndCommands(t *testing.T, name string, plan *r.Plan) {
	t.Helper()
	for ext, write := range map[string]func(*r.Plan, *bytes.Buffer) error{
		"txt":      func(p *r.Plan, b *bytes.Buffer) error { return p.WriteText(b) },
		"commands": func(p *r.Plan, b *bytes.Buffer) error { return p.WriteCommands(b) },
	} {
		var b bytes.Buffer
		if err := write(plan, &b); err != nil {
			t.Fatal(err)
		}
		golden(t, name+"."+ext, b.Bytes())
	}
}

// upOnFake brings a lab file up on a fake kernel and returns its desired state
// (to edit) and the kernel.
func upOnFake(t *testing.T, file string) (*r.State, *fake.Driver) {
	t.Helper()
	desired := harness.Desired(t, file)
	d := fake.New()
	plan, err := r.MakePlan(context.Background(), d, desired)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(context.Background(), d, plan); err != nil {
		t.Fatal(err)
	}
	return desired, d
}
