package reconcile_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/tests/harness"
)

// TestIptablesLayoutByRelease: the compiler alone (no kernel) writes, for the
// docker-bridge scenario, what each dockerd release writes, with and without
// the userland proxy: the layout's iptables-save text is the one the kernel
// test compares the kernel with (tests/hostile/testdata/dockerd-*, each
// naming the moby source it comes from).
func TestIptablesLayoutByRelease(t *testing.T) {
	bridgeID := regexp.MustCompile(`br-[0-9a-f]{12}`)
	for _, version := range []string{"20.10", "26.1", "28", "29"} {
		for _, proxy := range []string{"true", "false"} {
			lab := `name: dipt
docker: {version: "` + version + `", firewall: iptables, userland-proxy: ` + proxy + `}
networks: {mynet: {}}
containers:
  web: {publish: ["8000:80"]}
  c2: {}
  c3: {network: mynet}
  c4: {network: mynet}
`
			s := harness.DesiredFromText(t, lab)
			got := bridgeID.ReplaceAllString(s.Iptables[r.Host].IptablesSave(), "br-NET")
			layout, mode := r.IptablesLayoutOf(version), map[string]string{"true": "proxy", "false": "noproxy"}[proxy]
			data, err := os.ReadFile("../tests/hostile/testdata/dockerd-" + layout + "-" + mode + ".iptables-save")
			if err != nil {
				t.Fatal(err)
			}
			want := regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(string(data), "")
			if got != want {
				t.Errorf("docker %s, userland-proxy %s:\n%s\nwant:\n%s", version, proxy, got, want)
			}
			if wantDockerd := strings.TrimSuffix(layout+" "+mode, " proxy"); s.Iptables[r.Host].Dockerd != wantDockerd {
				t.Errorf("docker %s, userland-proxy %s: Dockerd %q, want %q", version, proxy, s.Iptables[r.Host].Dockerd, wantDockerd)
			}
		}
	}
}
