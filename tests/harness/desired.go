package harness

import (
	"os"
	"path/filepath"
	"testing"

	"netlab/reconcile"
	"netlab/topology"
)

// Desired compiles a lab file as netlab would: what the kernel should hold.
func Desired(t testing.TB, path string) *reconcile.State {
	t.Helper()
	lab, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := reconcile.Desired(lab)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// DesiredFromText compiles a lab file's text, written to a temporary file.
func DesiredFromText(t testing.TB, text string) *reconcile.State {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return Desired(t, path)
}

// MobyGolden is moby's golden `nft list table FAMILY docker-bridges` of the
// network of its nftabler test (reconcile/testdata/moby, in dir) with the
// userland proxy on or off ("true", "false": moby's hairpin false, true).
func MobyGolden(t testing.TB, dir, proxy, family string) string {
	t.Helper()
	hairpin := map[string]string{"true": "false", "false": "true"}[proxy]
	data, err := os.ReadFile(filepath.Join(dir, "hairpin="+hairpin+",internal=false,icc=true,masq=true,snat=false,gwm=nat,bindlh=false__"+family+".golden"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
