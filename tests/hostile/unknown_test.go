package hostile

import (
	"strings"
	"testing"

	"netlab/tests/harness"
)

// TestUnknownLabIsAnError: status and inspect of a lab that is not running exit
// non-zero and say which labs are, instead of printing a made-up lab.
func TestUnknownLabIsAnError(t *testing.T) {
	sb := harness.NewSandbox(t)
	for _, args := range [][]string{{"status", "nosuch"}, {"inspect", "nosuch"}, {"inspect", "nosuch", "-o", "json"}} {
		res := sb.Fails(append([]string{"netlab"}, args...)...)
		if res.Code != 1 || !strings.Contains(res.Stderr, "no lab named nosuch (no labs are running)") || res.Stdout != "" {
			t.Errorf("%v with no lab up: exit %d\nstdout: %q\nstderr: %q", args, res.Code, res.Stdout, res.Stderr)
		}
	}
	sb.OK("netlab", "up", "../../labs/docker-bridge-lowlevel.yaml")
	res := sb.Fails("netlab", "status", "nosuch")
	if !strings.Contains(res.Stderr, "no lab named nosuch (running labs: docker-bridge)") {
		t.Errorf("status nosuch beside a running lab: %q", res.Stderr)
	}
	// 0, or 2 if a process of the lab was caught between start and exec.
	if res := sb.Exec("netlab", "status", "docker-bridge"); res.Code == 1 || !strings.Contains(res.Stdout, "docker-bridge") {
		t.Errorf("status of the running lab: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}
