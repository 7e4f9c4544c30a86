package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// MobyConfig is one configuration of moby's nftabler test (TestNftabler):
// the network of reconcile/testdata/moby/br-dummy.yaml with the userland proxy
// on or off (moby's hairpin false, true), icc and masquerade on or off, and
// -p 8080:80 on every address or on the loopback (moby's bindlh); or, with
// Internal, the network made internal (moby's internal=true: no masquerade,
// and its port bindings have no effect, so the lab publishes none).
type MobyConfig struct{ Proxy, ICC, Masquerade, Localhost, Internal bool }

// MobyConfigs are the configurations whose goldens reconcile/testdata/moby holds.
var MobyConfigs = []MobyConfig{
	{Proxy: true, ICC: true, Masquerade: true}, {ICC: true, Masquerade: true},
	{Proxy: true, Localhost: true}, {Localhost: true},
	{Proxy: true, ICC: true, Internal: true}, {ICC: true, Internal: true},
	{Proxy: true, Internal: true}, {Internal: true},
}

// Lab is the text of the lab of the configuration, from the file of the network.
func (c MobyConfig) Lab(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("masquerade: true", fmt.Sprintf("masquerade: %v", c.Masquerade), "icc: true", fmt.Sprintf("icc: %v", c.ICC),
		"userland-proxy: true", fmt.Sprintf("userland-proxy: %v", c.Proxy))
	text := r.Replace(string(data))
	switch {
	case c.Internal:
		text = strings.Replace(text, "firewall: nftables", "internal: true, firewall: nftables", 1)
		text = strings.Replace(text, "    publish: [\"8080:80\"]\n", "", 1)
	case c.Localhost:
		text = strings.Replace(text, `publish: ["8080:80"]`, `publish: ["127.0.0.1:8080:80", "[::1]:8080:80"]`, 1)
	}
	return text
}

// Golden is moby's golden `nft list table FAMILY docker-bridges` of the
// configuration, from dir (reconcile/testdata/moby).
func (c MobyConfig) Golden(t testing.TB, dir, family string) string {
	t.Helper()
	name := fmt.Sprintf("hairpin=%v,internal=false,icc=%v,masq=%v,snat=false,gwm=nat,bindlh=%v__%s.golden", !c.Proxy, c.ICC, c.Masquerade, c.Localhost, family)
	if c.Internal {
		name = fmt.Sprintf("hairpin=%v,internal=true,icc=%v__%s.golden", !c.Proxy, c.ICC, family)
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func (c MobyConfig) String() string {
	if c.Internal {
		return fmt.Sprintf("proxy=%v,internal,icc=%v", c.Proxy, c.ICC)
	}
	return fmt.Sprintf("proxy=%v,icc=%v,masquerade=%v,localhost=%v", c.Proxy, c.ICC, c.Masquerade, c.Localhost)
}
