package reconcile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	r "netlab/reconcile"
	"netlab/topology"
)

func desiredFromText(t *testing.T, text string) *r.State {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	lab, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Desired(lab)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIsolationComesFirst: a packet from an isolated network must meet its drop
// before another bridge's published-port accept, whatever order the bridges are
// written in (the accept matches any input interface but the bridge's own).
func TestIsolationComesFirst(t *testing.T) {
	s := desiredFromText(t, `
name: iso
bridges:
  docker0: {addresses: [172.17.0.1/16], isolated: true}
  mynet: {addresses: [172.18.0.1/16], isolated: true}
namespaces:
  web:
    interfaces: {eth0: {addresses: [172.17.0.2/16]}}
    publish: ["8000:80"]
  c3:
    interfaces: {eth0: {addresses: [172.18.0.2/16]}}
links:
  - [web:eth0, docker0]
  - [c3:eth0, mynet]
`)
	var forward []string
	for _, c := range s.Tables[r.Host].Chains {
		if c.Name == "forward" {
			for _, rule := range c.Rules {
				forward = append(forward, rule.Text())
			}
		}
	}
	firstAccept, lastIsolation := -1, -1
	for i, text := range forward {
		if strings.Contains(text, "isolated from") {
			lastIsolation = i
		}
		if strings.Contains(text, "accept") && firstAccept < 0 {
			firstAccept = i
		}
	}
	if lastIsolation < 0 || firstAccept < lastIsolation {
		t.Errorf("isolation drops must all come before any accept:\n%s", strings.Join(forward, "\n"))
	}
}
