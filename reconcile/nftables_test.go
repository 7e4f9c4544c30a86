package reconcile_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/reconcile/fake"
	"netlab/tests/harness"
)

// tableScript is the `nft -f` body with which plan -o commands writes one of
// Docker's tables.
func tableScript(t *testing.T, s *r.State, k r.TableKey) string {
	t.Helper()
	table := s.DockerTables[k]
	if table == nil {
		t.Fatalf("no %s", k)
	}
	cmds := r.ReplaceTable{Lab: s.Lab, Table: table}.Commands()
	_, body, _ := strings.Cut(cmds[len(cmds)-1], "<<'EOF'\n")
	return strings.TrimSuffix(body, "EOF")
}

// TestNftablesLayoutIsMobysGolden: the nftables layout of the network of
// moby's nftabler test (testdata/moby/br-dummy.yaml) is, in both families, in
// each configuration of harness.MobyConfigs (the userland proxy on and off;
// icc and masquerade on, or off with -p on the loopback), what moby's golden of
// that configuration says (testdata/moby/, copied from moby's nftabler
// testdata): the nft text of its tables as nft lists them, counters aside, and
// nat-OUTPUT's priority as nft before 1.1 writes it (-100; moby's test turns
// it into dstnat).
func TestNftablesLayoutIsMobysGolden(t *testing.T) {
	for _, c := range harness.MobyConfigs {
		s := harness.DesiredFromText(t, c.Lab(t, "testdata/moby/br-dummy.yaml"))
		for _, family := range []string{"ip", "ip6"} {
			want := strings.ReplaceAll(c.Golden(t, "testdata/moby", family), "counter packets 0 bytes 0", "counter")
			want = strings.ReplaceAll(want, "type nat hook output priority dstnat", "type nat hook output priority -100")
			if got := tableScript(t, s, r.TableKey{NS: r.Host, Family: family}); got != want {
				t.Errorf("%s, table %s docker-bridges:\n%s\nwant (moby's golden):\n%s", c, family, got, want)
			}
		}
	}
}

// TestNftablesLayoutConflicts: Docker's table of that name that is not the
// lab's is a conflict found at plan time, before any change, with the fix: a
// dockerd's, and another lab's.
func TestNftablesLayoutConflicts(t *testing.T) {
	desired := harness.Desired(t, "../labs/docker-bridge-nftables.yaml")
	d := fake.New()
	d.AddForeignDockerTable(r.TableKey{NS: r.Host, Family: "ip6"})
	_, err := r.MakePlan(context.Background(), d, desired)
	var conflict *r.ConflictError
	if !errors.As(err, &conflict) || !strings.Contains(err.Error(), "host: table ip6 docker-bridges already exists and was not written by netlab") ||
		!strings.Contains(err.Error(), "nft delete table ip6 docker-bridges") {
		t.Fatalf("plan beside a dockerd's table: %v", err)
	}

	d = fake.New()
	other := harness.DesiredFromText(t, "name: other\nbridges:\n  br1: {addresses: [10.1.0.1/24], masquerade: true, firewall: nftables}\n")
	if plan, err := r.MakePlan(context.Background(), d, other); err != nil || r.Apply(context.Background(), d, plan) != nil {
		t.Fatalf("up of the other lab: %v", err)
	}
	_, err = r.MakePlan(context.Background(), d, desired)
	if !errors.As(err, &conflict) || !strings.Contains(err.Error(), "host: table ip docker-bridges belongs to lab other") {
		t.Fatalf("plan beside another lab's tables: %v", err)
	}
}
